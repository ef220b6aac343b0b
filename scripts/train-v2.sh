#!/usr/bin/env bash
# Candidate runs for the default model v2 (issue 18; models/default/MODEL_CARD.md, "Toward
# v2"): v1's recipe (scripts/train-default.sh) plus the project's diplomatic sets.
#   scripts/fetch-data.sh SRC        # or use a folder already in that layout
#   python3 scripts/convert_data.py SRC CONVERTED
#   scripts/train-v2.sh CONVERTED OUT [BASE] [TRAIN OPTIONS...]
# TRAIN OPTIONS go to `standpoint train` after the recipe's own (a later --lr, --epochs,
# --pooling, ... overrides it); DIPLOMATIC_WEIGHT (default 3) weights the project's
# diplomatic sets (data/diplomatic/, converted to cameo-stance-*, written-* and
# written-hard-*).
# BASE defaults to ../shared/models/all-MiniLM-L6-v2 (sentence-transformers/all-MiniLM-L6-v2).
# 45-70 minutes on 2 CPU cores (2-3 epochs); interrupted runs continue with
#   standpoint train --resume OUT
set -euo pipefail
data=${1:?usage: scripts/train-v2.sh CONVERTED OUT [BASE]}
out=${2:?usage: scripts/train-v2.sh CONVERTED OUT [BASE]}
base=${3:-../shared/models/all-MiniLM-L6-v2}
shift $(($# < 3 ? $# : 3))
bin=${STANDPOINT:-target/release/standpoint}
diplomatic=${DIPLOMATIC_WEIGHT:-3}

# Per-epoch sampling weights (fraction of each file drawn afresh every epoch), sized to
# ~28k examples per epoch so two epochs fit the CPU budget; news data in full.
"$bin" train --base "$base" --output "$out" \
  --head stance:pair --head sentiment:text --head relation:text \
  --train "$data/newsmtsc-train.jsonl:1.0" \
  --train "$data/tweeteval-stance-train.jsonl:1.0" \
  --train "$data/pstance-train.jsonl:0.2" \
  --train "$data/vast-train.jsonl:0.12" \
  --train "$data/ruw-train.jsonl:0.35" \
  --train "$data/directed-sentiment-train.jsonl:0.15" \
  --train "$data/cameo-train.jsonl:1.0" \
  --train "$data/sentiment-train.jsonl:0.12" \
  --train "$data/cameo-stance-train.jsonl:$diplomatic" \
  --train "$data/written-train.jsonl:$diplomatic" \
  --train "$data/written-hard-train.jsonl:$diplomatic" \
  --dev "$data/newsmtsc-rw-dev.jsonl" --dev "$data/newsmtsc-mt-dev.jsonl" \
  --dev "$data/tweeteval-stance-dev.jsonl" --dev "$data/pstance-dev.jsonl" \
  --dev "$data/vast-dev.jsonl" --dev "$data/ruw-dev.jsonl" \
  --dev "$data/directed-sentiment-dev.jsonl" --dev "$data/cameo-dev.jsonl" \
  --dev "$data/tweeteval-sentiment-dev.jsonl" \
  --dev "$data/cameo-stance-dev.jsonl" --dev "$data/written-dev.jsonl" \
  --dev "$data/written-hard-dev.jsonl" \
  --epochs 2 --batch-size 32 --lr 8e-5 --warmup-ratio 0.06 --max-length 80 \
  --select mean.macro_f1 --seed 42 \
  --name standpoint-default --version 0.2.0 "$@"
