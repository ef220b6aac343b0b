#!/usr/bin/env bash
# Adds the directed head that chooses holders (issue 21; models/default/MODEL_CARD.md,
# "Holders") to a trained model: one short epoch over the directed sentiment pairs (both
# directions) and the holders of the diplomatic sets, with the stance, sentiment and relation
# data replayed at small weights so those heads keep their scores.
#   python3 scripts/convert_data.py SRC CONVERTED
#   scripts/train-holder.sh CONVERTED BASE OUT [TRAIN OPTIONS...]
# BASE is a trained standpoint model (e.g. the output of scripts/train-v2.sh). About 12
# minutes on 2 CPU cores; TRAIN OPTIONS override the recipe's.
set -euo pipefail
data=${1:?usage: scripts/train-holder.sh CONVERTED BASE OUT [TRAIN OPTIONS...]}
base=${2:?usage: scripts/train-holder.sh CONVERTED BASE OUT [TRAIN OPTIONS...]}
out=${3:?usage: scripts/train-holder.sh CONVERTED BASE OUT [TRAIN OPTIONS...]}
shift 3
bin=${STANDPOINT:-target/release/standpoint}

"$bin" train --base "$base" --output "$out" \
  --head stance:pair --head sentiment:text --head relation:text --head direction:directed \
  --train "$data/directed-holder-train.jsonl:0.35" \
  --train "$data/diplomatic-holder-train.jsonl:1.0" \
  --train "$data/cameo-stance-train.jsonl:1.0" \
  --train "$data/written-train.jsonl:1.0" \
  --train "$data/written-hard-train.jsonl:1.0" \
  --train "$data/written-events-train.jsonl:1.0" \
  --train "$data/newsmtsc-train.jsonl:0.3" \
  --train "$data/tweeteval-stance-train.jsonl:0.3" \
  --train "$data/pstance-train.jsonl:0.05" \
  --train "$data/vast-train.jsonl:0.03" \
  --train "$data/ruw-train.jsonl:0.1" \
  --train "$data/directed-sentiment-train.jsonl:0.05" \
  --train "$data/cameo-train.jsonl:0.3" \
  --train "$data/sentiment-train.jsonl:0.03" \
  --dev "$data/directed-holder-dev.jsonl" --dev "$data/diplomatic-holder-dev.jsonl" \
  --epochs 1 --batch-size 32 --lr 2e-5 --warmup-ratio 0.1 --max-length 128 \
  --label-smoothing 0.1 --class-weights --mark-mentions --seed 42 "$@"
