#!/usr/bin/env bash
# Inference throughput, standpoint beside PyTorch, same model, corpus and machine:
# the model alone at batch 32 and 64 (sorted, median of 3), the public API at its defaults,
# and `standpoint label` end to end on the corpus.
#   scripts/bench-infer.sh [PYTHON]   (PYTHON: an interpreter with torch + transformers)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-../venv/bin/python}
MODEL=${STANDPOINT_MINILM_DIR:-../shared/models/all-MiniLM-L6-v2}
CORPUS=${STANDPOINT_BENCH_CORPUS:-../shared/bench/corpus.txt}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

cargo build --release --quiet
ours=$(cargo bench --quiet --bench infer -- --model "$MODEL" --corpus "$CORPUS" --bs 32,64 --keep "$WORK/model" 2>/dev/null | grep '^RESULT')
label=$(./target/release/standpoint label --model "$WORK/model" "$CORPUS" --actor NATO --output "$WORK/rows.jsonl" 2>&1 | grep labelled)
theirs=$(HF_HUB_OFFLINE=1 "$PY" ../shared/bench/bench_torch.py infer --model "$MODEL" --corpus "$CORPUS" --bs 32,64 --runs 3 2>/dev/null | grep '^RESULT')
echo "$ours"; echo "standpoint label: $label"; echo "$theirs"
rate() { grep "$1" <<<"$2" | sed -n 's/.*median_sent_per_s=\([0-9.]*\).*/\1/p' | head -1; }
for bs in 32 64; do
  awk -v a="$(rate "bs=$bs order=sorted" "$ours")" -v b="$(rate "bs=$bs order=sorted" "$theirs")" -v bs=$bs \
      'BEGIN { printf "batch %s sorted, standpoint / PyTorch: %.1f / %.1f = %.2fx\n", bs, a, b, a / b }'
done
