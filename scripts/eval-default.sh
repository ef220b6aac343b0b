#!/usr/bin/env bash
# Score a model on every dev split with each dataset's official metric, as a Markdown
# table (the one in models/default/MODEL_CARD.md comes from this script).
#   scripts/eval-default.sh CONVERTED [MODEL] [EVAL OPTIONS...]   # MODEL defaults to models/default
# CONVERTED is the output folder of scripts/convert_data.py; EVAL OPTIONS go to every
# `standpoint eval` (e.g. --dtype int8).
set -euo pipefail
data=${1:?usage: scripts/eval-default.sh CONVERTED [MODEL]}
model=${2:-models/default}
shift $(($# < 2 ? $# : 2))
extra=("$@")
bin=${STANDPOINT:-target/release/standpoint}

# score LABEL FILE METRIC [--per-target]
score() {
  local label=$1 file=$2 metric=$3
  shift 3
  local value
  value=$("$bin" eval --model "$model" --data "$data/$file" --metric "$metric" "$@" ${extra[@]+"${extra[@]}"} | tail -n 1 | cut -d' ' -f2)
  awk -v l="$label" -v f="$file" -v m="$metric" -v v="$value" \
    'BEGIN { printf "| %s | `%s` | %s | %.1f |\n", l, f, m, 100 * v }'
}

echo '| dataset | dev file | metric | score |'
echo '|---|---|---|---|'
score "TweetEval stance (5 targets pooled)" tweeteval-stance-dev.jsonl stance.favor_against_f1
score "TweetEval sentiment" tweeteval-sentiment-dev.jsonl sentiment.macro_recall
score "NewsMTSC rw" newsmtsc-rw-dev.jsonl stance.macro_f1
score "NewsMTSC mt" newsmtsc-mt-dev.jsonl stance.macro_f1
score "P-Stance (per-target mean, two-way reading)" pstance-dev.jsonl stance.favor_against_f1 --per-target \
  --only-labels stance=against,favor
score "P-Stance (per-target mean, three-way)" pstance-dev.jsonl stance.favor_against_f1 --per-target
score "VAST (carved dev, by post)" vast-dev.jsonl stance.macro_f1
score "RUW (Russia and Ukraine)" ruw-dev.jsonl stance.macro_f1
score "Directed sentiment (receiver)" directed-sentiment-dev.jsonl stance.macro_f1
score "CAMEO cooperation/conflict (carved dev)" cameo-dev.jsonl relation.macro_f1
score "Diplomatic: CAMEO sentences, per actor" cameo-stance-dev.jsonl stance.macro_f1
score "Diplomatic: CAMEO sentences, per actor" cameo-stance-dev.jsonl stance.accuracy
score "Diplomatic: written pairs" written-dev.jsonl stance.macro_f1
score "Diplomatic: written pairs" written-dev.jsonl stance.accuracy
score "Diplomatic: written hard cases" written-hard-dev.jsonl stance.macro_f1
score "Diplomatic: written hard cases" written-hard-dev.jsonl stance.accuracy
score "Diplomatic: written event reports" written-events-dev.jsonl stance.macro_f1
score "Diplomatic: written event reports" written-events-dev.jsonl stance.accuracy
# The directed head that picks holders, where the model has one (scripts/eval_holder.py
# scores the holder choice itself).
if grep -q '"direction"' "$model/config.json"; then
  score "Holders: directed sentiment pairs, both directions" directed-holder-dev.jsonl direction.macro_f1
  score "Holders: diplomatic sets, every actor toward the target" diplomatic-holder-dev.jsonl direction.macro_f1
fi
