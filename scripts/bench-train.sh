#!/usr/bin/env bash
# Training throughput, standpoint beside PyTorch, same model, corpus, protocol and machine.
#   scripts/bench-train.sh [PYTHON]   (PYTHON: an interpreter with torch + transformers;
#                                      default ../venv/bin/python, see ../shared/bench/README.md)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-../venv/bin/python}
MODEL=${STANDPOINT_MINILM_DIR:-../shared/models/all-MiniLM-L6-v2}
CORPUS=${STANDPOINT_BENCH_CORPUS:-../shared/bench/corpus.txt}

ours=$(cargo bench --quiet --bench train -- --model "$MODEL" --corpus "$CORPUS" 2>/dev/null | grep '^RESULT')
theirs=$(HF_HUB_OFFLINE=1 "$PY" ../shared/bench/bench_torch.py train --model "$MODEL" --corpus "$CORPUS" 2>/dev/null | grep '^RESULT')
echo "$ours"
echo "$theirs"
rate() { sed -n 's/.* examples_per_s=\([0-9.]*\).*/\1/p' <<<"$1"; }
awk -v a="$(rate "$ours")" -v b="$(rate "$theirs")" \
    'BEGIN { printf "standpoint / PyTorch training examples/s: %.2f / %.2f = %.2fx\n", a, b, a / b }'
