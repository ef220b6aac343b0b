#!/usr/bin/env bash
# Candidate runs for the default model v2 (issue 18; models/default/MODEL_CARD.md, "Toward
# v2"): v1's recipe (scripts/train-default.sh) plus the project's diplomatic sets
# (data/diplomatic/, converted to cameo-stance-*, written-*, written-hard-* and written-events-*).
#   python3 scripts/convert_data.py SRC CONVERTED
#   scripts/train-v2.sh CONVERTED OUT [BASE] [TRAIN OPTIONS...]
# DIPLOMATIC_WEIGHT (default 5) is the per-epoch weight of each diplomatic set; NEWSMTSC_WEIGHT
# (default 2.0) and RUW_WEIGHT (default 0.6) reweight those sets. The recipe of the shipped
# 0.2.2: three epochs, label smoothing 0.1, class weights, 128 tokens, the target's mention
# marked. TRAIN OPTIONS override the recipe's. About 65 minutes on 2 CPU cores; interrupted
# runs continue with `standpoint train --resume OUT`.
set -euo pipefail
data=${1:?usage: scripts/train-v2.sh CONVERTED OUT [BASE] [TRAIN OPTIONS...]}
out=${2:?usage: scripts/train-v2.sh CONVERTED OUT [BASE] [TRAIN OPTIONS...]}
base=${3:-../shared/models/all-MiniLM-L6-v2}
shift $(($# < 3 ? $# : 3))
weight=${DIPLOMATIC_WEIGHT:-5}
export NEWSMTSC_WEIGHT=${NEWSMTSC_WEIGHT:-2.0} RUW_WEIGHT=${RUW_WEIGHT:-0.6}

exec "$(dirname "$0")/train-default.sh" "$data" "$out" "$base" \
  --train "$data/cameo-stance-train.jsonl:$weight" \
  --train "$data/written-train.jsonl:$weight" \
  --train "$data/written-hard-train.jsonl:$weight" \
  --train "$data/written-events-train.jsonl:$weight" \
  --dev "$data/cameo-stance-dev.jsonl" --dev "$data/written-dev.jsonl" \
  --dev "$data/written-hard-dev.jsonl" --dev "$data/written-events-dev.jsonl" \
  --epochs 3 --label-smoothing 0.1 --class-weights --max-length 128 --mark-mentions \
  --version 0.2.2 "$@"
