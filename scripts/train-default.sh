#!/usr/bin/env bash
# Reproduce the shipped default model (models/default/) from the public datasets.
#   scripts/fetch-data.sh SRC        # or use a folder already in that layout
#   python3 scripts/convert_data.py SRC CONVERTED
#   scripts/train-default.sh CONVERTED OUT [BASE] [TRAIN OPTIONS...]
# TRAIN OPTIONS go to `standpoint train` after the recipe's own: more --train/--dev files add
# to it, a later --lr, --epochs, --version, ... replaces the recipe's value.
# then export it f16 and calibrated into models/default (MODEL_CARD.md, "Training"):
#   standpoint export --model OUT --output models/default --dtype f16 --calibrate DEV.jsonl ...
# BASE defaults to ../shared/models/all-MiniLM-L6-v2 (sentence-transformers/all-MiniLM-L6-v2).
# About 80 minutes on 2 CPU cores; interrupted runs continue with
#   standpoint train --resume OUT
# NEWSMTSC_WEIGHT and RUW_WEIGHT (default 1.0 and 0.35, v1's) reweight those two sets.
set -euo pipefail
data=${1:?usage: scripts/train-default.sh CONVERTED OUT [BASE]}
out=${2:?usage: scripts/train-default.sh CONVERTED OUT [BASE]}
base=${3:-../shared/models/all-MiniLM-L6-v2}
shift $(($# < 3 ? $# : 3))
bin=${STANDPOINT:-target/release/standpoint}

# Per-epoch sampling weights (fraction of each file drawn afresh every epoch), sized to
# ~28k examples per epoch so two epochs fit the CPU budget; news data in full.
"$bin" train --base "$base" --output "$out" \
  --head stance:pair --head sentiment:text --head relation:text \
  --train "$data/newsmtsc-train.jsonl:${NEWSMTSC_WEIGHT:-1.0}" \
  --train "$data/tweeteval-stance-train.jsonl:1.0" \
  --train "$data/pstance-train.jsonl:0.2" \
  --train "$data/vast-train.jsonl:0.12" \
  --train "$data/ruw-train.jsonl:${RUW_WEIGHT:-0.35}" \
  --train "$data/directed-sentiment-train.jsonl:0.15" \
  --train "$data/cameo-train.jsonl:1.0" \
  --train "$data/sentiment-train.jsonl:0.12" \
  --dev "$data/newsmtsc-rw-dev.jsonl" --dev "$data/newsmtsc-mt-dev.jsonl" \
  --dev "$data/tweeteval-stance-dev.jsonl" --dev "$data/pstance-dev.jsonl" \
  --dev "$data/vast-dev.jsonl" --dev "$data/ruw-dev.jsonl" \
  --dev "$data/directed-sentiment-dev.jsonl" --dev "$data/cameo-dev.jsonl" \
  --dev "$data/tweeteval-sentiment-dev.jsonl" \
  --epochs 2 --batch-size 32 --lr 8e-5 --warmup-ratio 0.06 --max-length 80 \
  --select mean.macro_f1 --seed 42 \
  --name standpoint-default --version 0.1.0 "$@"
