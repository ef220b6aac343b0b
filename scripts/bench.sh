#!/usr/bin/env bash
# The CPU speed table of issue 6 in one run, on one machine, one system after the other:
# PyTorch, ONNX Runtime fp32 and int8 (../shared/bench/bench_torch.py) and standpoint f32 and
# int8 (cargo bench --bench infer / train), on all-MiniLM-L6-v2 + a 3-label head and the
# 2,048-sentence corpus; batches sorted by length, medians of 3 passes; training at batch 32;
# time to the first prediction and peak RSS of a labelling run; the physical limit (work per
# sentence over the machine's peak matrix multiply, measured in the same run) and how close
# each system gets. Prints a Markdown table with standpoint's ratios to each reference.
#   scripts/bench.sh [PYTHON]   (PYTHON: torch + transformers + onnxruntime; default ../venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-../venv/bin/python}
MODEL=${STANDPOINT_MINILM_DIR:-../shared/models/all-MiniLM-L6-v2}
CORPUS=${STANDPOINT_BENCH_CORPUS:-../shared/bench/corpus.txt}
SIZES=${BENCH_SIZES:-1,8,32,64}
REF=../shared/bench/bench_torch.py
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export HF_HUB_OFFLINE=1

# The machine and the CPU features that pick kernels, printed beside the table.
cpu=$(grep -m1 '^model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//')
flags=" $(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | cut -d: -f2-) "
features=""
for f in avx2 avx512f avx512_vnni avx512_bf16 amx_tile amx_int8 amx_bf16; do
  [[ $flags == *" $f "* ]] && features+="$f "
done
cores=$(lscpu -p=core 2>/dev/null | grep -v '^#' | sort -u | wc -l)
machine="${cpu:-unknown CPU}, $(nproc) CPUs usable, $cores cores; features: ${features:-none found}; STANDPOINT_NO_AMX=${STANDPOINT_NO_AMX:-unset}"
echo "machine: $machine" >&2

cargo build --release --quiet
cargo bench --no-run --quiet --bench infer --bench train 2>/dev/null
log=$WORK/results.txt
echo "== standpoint inference (f32, int8)" >&2
cargo bench --quiet --bench infer -- --model "$MODEL" --corpus "$CORPUS" --bs "$SIZES" --keep "$WORK/model" 2>/dev/null |
  grep '^RESULT' | tee -a "$log" >&2
"$PY" -c 'import json,sys; [print(json.dumps({"text": l.strip()})) for l in open(sys.argv[1]) if l.strip()]' "$CORPUS" >"$WORK/corpus.jsonl"
for mode in f32 int8; do
  /usr/bin/time -f "RESULT system=standpoint mode=$mode label_run_max_rss_kb=%M" \
    target/release/standpoint classify --model "$WORK/model" --dtype "$mode" -i "$WORK/corpus.jsonl" \
    -o "$WORK/out-$mode.jsonl" 2>&1 | grep '^RESULT' | tee -a "$log" >&2
done
echo "== PyTorch inference, latency, RSS" >&2
"$PY" "$REF" infer --model "$MODEL" --corpus "$CORPUS" --bs "$SIZES" --runs 3 2>/dev/null | grep '^RESULT' | tee -a "$log" >&2
"$PY" "$REF" latency --model "$MODEL" --corpus "$CORPUS" 2>/dev/null | grep '^RESULT' | tee -a "$log" >&2
"$PY" "$REF" rss --model "$MODEL" --corpus "$CORPUS" 2>/dev/null | grep '^RESULT' | tee -a "$log" >&2
if "$PY" -c 'import onnxruntime' 2>/dev/null; then
  echo "== ONNX Runtime fp32 and int8" >&2
  "$PY" "$REF" export --model "$MODEL" --onnx "$WORK/onnx/model.onnx" >/dev/null 2>&1
  for f in model model.int8; do
    "$PY" "$REF" ort --model "$MODEL" --corpus "$CORPUS" --onnx "$WORK/onnx/$f.onnx" --bs "$SIZES" --runs 3 2>/dev/null |
      grep '^RESULT' | tee -a "$log" >&2
  done
fi
echo "== training" >&2
cargo bench --quiet --bench train -- --model "$MODEL" --corpus "$CORPUS" 2>/dev/null | grep '^RESULT' | tee -a "$log" >&2
"$PY" "$REF" train --model "$MODEL" --corpus "$CORPUS" 2>/dev/null | grep '^RESULT' | tee -a "$log" >&2

"$PY" - "$log" "$SIZES" "$machine" <<'EOF'
import re, sys
lines = open(sys.argv[1]).read().splitlines()
sizes = sys.argv[2].split(",")
print(f"Machine: {sys.argv[3]}")
kernels = [re.search(r"mode=(\S+) kernel=(\S+)", l) for l in lines]
kernels = [f"{m.group(1)} {m.group(2)}" for m in kernels if m]
if kernels:
    print("standpoint kernels: " + ", ".join(kernels))
print()
def find(system_pattern, pattern):
    for line in lines:
        if re.search(system_pattern, line):
            m = re.search(pattern, line)
            if m:
                return float(m.group(1))
    return None
systems = [
    ("PyTorch fp32", r"system=torch-fp32 "),
    ("ONNX Runtime fp32", r"system=ort-fp32 "),
    ("ONNX Runtime int8", r"system=ort-int8 "),
    ("standpoint f32", r"system=standpoint mode=f32 "),
    ("standpoint int8", r"system=standpoint mode=int8 "),
]
rows = {}
print("| system | " + " | ".join(f"batch {b}" for b in sizes) + " | training, batch 32 |")
print("|---" * (len(sizes) + 2) + "|")
for name, sp in systems:
    rates = [find(sp, rf"bs={b} order=sorted median_sent_per_s=([0-9.]+)") for b in sizes]
    train = None
    if name == "PyTorch fp32":
        train = find(r"system=torch train", r" examples_per_s=([0-9.]+)")
    if name == "standpoint f32":
        train = find(r"system=standpoint train", r" examples_per_s=([0-9.]+)")
    rows[name] = rates + [train]
    if all(r is None for r in rates):
        continue
    cells = [f"{r:.0f} sent/s" if r else "—" for r in rates] + [f"{train:.1f} ex/s" if train else "—"]
    print(f"| {name} | " + " | ".join(cells) + " |")
for ours in ("standpoint f32", "standpoint int8"):
    for ref in ("PyTorch fp32", "ONNX Runtime fp32", "ONNX Runtime int8"):
        pairs = [(a, b) for a, b in zip(rows[ours], rows[ref]) if a and b]
        if pairs and any(rows[ref]):
            cells = [f"{a / b:.2f}x" if a and b else "—" for a, b in zip(rows[ours], rows[ref])]
            print(f"| {ours} / {ref} | " + " | ".join(cells) + " |")
agree = find(r"int8_vs_f32_label_agreement", r"agreement=([0-9.]+)")
first = find(r"system=standpoint mode=f32 first_prediction", r"first_prediction_s=([0-9.]+)")
first8 = find(r"system=standpoint mode=int8 first_prediction", r"first_prediction_s=([0-9.]+)")
torch_first = find(r"system=torch latency", r"first_prediction_done=([0-9.]+)")
rss = find(r"system=standpoint mode=f32 label_run", r"rss_kb=([0-9]+)")
rss8 = find(r"system=standpoint mode=int8 label_run", r"rss_kb=([0-9]+)")
torch_rss = find(r"system=torch rss", r"after_bs64_pass=([0-9]+)")
print()
if agree is not None:
    print(f"int8 vs f32 labels on the corpus (random head): {100 * agree:.2f}%")
if first is not None:
    print(f"first prediction: standpoint f32 {first:.3f} s"
          + (f", int8 {first8:.3f} s" if first8 is not None else "")
          + (f", PyTorch {torch_first:.2f} s" if torch_first else ""))
if rss:
    print(f"peak RSS labelling the corpus: standpoint f32 {rss / 1024:.0f} MB, int8 {rss8 / 1024:.0f} MB"
          + (f"; PyTorch after passes at batch 32 and 64: {torch_rss / 1024:.0f} MB" if torch_rss else ""))
for mode, ours, refs in (("f32", "standpoint f32", ["PyTorch fp32", "ONNX Runtime fp32"]),
                         ("int8", "standpoint int8", ["ONNX Runtime int8"])):
    limit = find(rf"^RESULT limit mode={mode} ", r"limit_sent_per_s=([0-9.]+)")
    if limit is None:
        continue
    peak = find(rf"^RESULT limit mode={mode} ", r"peak_gflops=([0-9.]+)")
    work = find(rf"^RESULT limit mode={mode} ", r"gflop_per_sentence=([0-9.]+)")
    best = []
    for system in [ours] + refs:
        rates = [r for r in rows.get(system, [])[:-1] if r]
        if rates:
            best.append(f"{system} {max(rates):.0f} ({100 * max(rates) / limit:.0f}%)")
    print(f"physical limit, {mode}: {limit:.0f} sent/s ({work:.3f} GFLOP per sentence over a measured "
          f"{peak:.0f} GFLOP/s peak matrix multiply); best batch size: " + ", ".join(best))
EOF
