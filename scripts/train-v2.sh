#!/usr/bin/env bash
# Candidate runs for the default model v2 (issue 18; models/default/MODEL_CARD.md, "Toward
# v2"): v1's recipe (scripts/train-default.sh) plus the project's diplomatic sets
# (data/diplomatic/, converted to cameo-stance-*, written-*, written-hard-* and written-events-*).
#   python3 scripts/convert_data.py SRC CONVERTED
#   scripts/train-v2.sh CONVERTED OUT [BASE] [TRAIN OPTIONS...]
# DIPLOMATIC_WEIGHT (default 3) is the per-epoch weight of each diplomatic set; TRAIN OPTIONS
# override the recipe's (e.g. --epochs 3). 45-70 minutes on 2 CPU cores (2-3 epochs);
# interrupted runs continue with `standpoint train --resume OUT`.
set -euo pipefail
data=${1:?usage: scripts/train-v2.sh CONVERTED OUT [BASE] [TRAIN OPTIONS...]}
out=${2:?usage: scripts/train-v2.sh CONVERTED OUT [BASE] [TRAIN OPTIONS...]}
base=${3:-../shared/models/all-MiniLM-L6-v2}
shift $(($# < 3 ? $# : 3))
weight=${DIPLOMATIC_WEIGHT:-3}

exec "$(dirname "$0")/train-default.sh" "$data" "$out" "$base" \
  --train "$data/cameo-stance-train.jsonl:$weight" \
  --train "$data/written-train.jsonl:$weight" \
  --train "$data/written-hard-train.jsonl:$weight" \
  --train "$data/written-events-train.jsonl:$weight" \
  --dev "$data/cameo-stance-dev.jsonl" --dev "$data/written-dev.jsonl" \
  --dev "$data/written-hard-dev.jsonl" --dev "$data/written-events-dev.jsonl" \
  --version 0.2.1 "$@"
