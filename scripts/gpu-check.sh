#!/usr/bin/env bash
# The GPU check of issue 7, in two halves.
#
#   scripts/gpu-check.sh bundle [OUT]            on a build machine (registry, no GPU needed):
#       builds the `cuda` binaries (CLI, inference and training benches, parity tests) with the
#       CUDA 13.0 wheels of ../shared/gpu/ and gzips them into OUT (default gpu-bundle/).
#   scripts/gpu-check.sh run [BUNDLE] [DEVICE]   on the GPU machine (no registry needed), from the
#       repository root: every check below on DEVICE (default cuda:0), printing PASS/FAIL lines
#       and RESULT lines, beside PyTorch on the same device.
#
# Checks (run): 1. parity tests on DEVICE, f32 (1e-4) and bf16 (0.1); 2. default model on the bench
# corpus, DEVICE f32 and bf16 vs CPU f32, agreement of every head's labels >= 99.5%; 3. a short
# fine-tune from MiniLM on DEVICE and on the CPU, dev macro-F1 within 2 points; 4. throughput
# (inference f32/bf16, training) beside scripts/bench_torch_device.py.
# `run BUNDLE cpu` exercises everything but the GPU calls (a bundle built without cuda:
# `GPU_CHECK_FEATURES= scripts/gpu-check.sh bundle`).
#
# Inputs (env): MINILM (all-MiniLM-L6-v2 folder), CORPUS (bench corpus), FT_TRAIN / FT_DEV
# (stance JSONL for the fine-tune; default data/train-examples), FT_EPOCHS (default 2),
# PYTHON (with torch + transformers; default python3), BENCH_RUNS (default 3), BENCH_STEPS
# (timed training steps, default 20).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:?usage: gpu-check.sh bundle [OUT] | run [BUNDLE] [DEVICE]}

if [ "$mode" = bundle ]; then
  out=${2:-gpu-bundle}
  features=${GPU_CHECK_FEATURES-cuda}
  if [ -n "$features" ]; then
    export CUDA_PY=${CUDA_PY:-/tmp/cudapy}
    cargo fetch --quiet # the toolchain script reads cudarc's sources for its driver stub
    [ -x "$CUDA_PY/nvidia/cu13/bin/nvcc" ] || bash ../shared/gpu/setup-cuda-toolchain.sh
    export CUDA_HOME=$CUDA_PY/nvidia/cu13 NVCC=$CUDA_PY/nvidia/cu13/bin/nvcc
    export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90} CUDARC_CUDA_VERSION=13000 CUDAFORGE_THREADS=${CUDAFORGE_THREADS:-2}
  fi
  args=(${features:+--features "$features"} --message-format=json-render-diagnostics)
  mkdir -p "$out"
  built=$(mktemp)
  cargo build --release "${args[@]}" --bin standpoint >"$built"
  cargo bench --no-run "${args[@]}" --bench infer --bench train >>"$built"
  cargo test --release --no-run "${args[@]}" --test parity >>"$built"
  python3 - "$built" "$out" <<'EOF'
import gzip, json, shutil, sys
names = {("bin", "standpoint"): "standpoint", ("bench", "infer"): "bench-infer",
         ("bench", "train"): "bench-train", ("test", "parity"): "test-parity"}
found = {}
for line in open(sys.argv[1]):
    msg = json.loads(line)
    if msg.get("reason") == "compiler-artifact" and msg.get("executable"):
        key = (msg["target"]["kind"][0], msg["target"]["name"])
        if key in names:
            found[names[key]] = msg["executable"]
missing = set(names.values()) - set(found)
if missing:
    sys.exit(f"not built: {sorted(missing)}")
for name, path in found.items():
    with open(path, "rb") as src, gzip.open(f"{sys.argv[2]}/{name}.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    print(f"{sys.argv[2]}/{name}.gz  <- {path}")
EOF
  rm -f "$built"
  exit 0
fi

[ "$mode" = run ] || { echo "unknown mode $mode (bundle or run)" >&2; exit 2; }
bundle=${2:-gpu-bundle}
device=${3:-cuda:0}
first() { for p in "$@"; do [ -e "$p" ] && { echo "$p"; return; }; done; echo "$1"; }
MINILM=${MINILM:-$(first ../shared/models/all-MiniLM-L6-v2 shared/models/all-MiniLM-L6-v2)}
CORPUS=${CORPUS:-$(first ../shared/bench/corpus.txt shared/bench/corpus.txt)}
FT_TRAIN=${FT_TRAIN:-data/train-examples/stance-train.jsonl}
FT_DEV=${FT_DEV:-data/train-examples/stance-dev.jsonl}
FT_EPOCHS=${FT_EPOCHS:-2}
PYTHON=${PYTHON:-python3}
RUNS=${BENCH_RUNS:-3}
STEPS=${BENCH_STEPS:-20}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for f in standpoint bench-infer bench-train test-parity; do
  gunzip -c "$bundle/$f.gz" >"$work/$f"
  chmod +x "$work/$f"
done
# The CUDA runtime libraries of the machine's PyTorch wheels (see ../shared/gpu/README.md).
if [ "$device" != cpu ]; then
  nv=$("$PYTHON" -c 'import nvidia.cu13 as m,os; print(os.path.join(list(m.__path__)[0],"lib"))' 2>/dev/null ||
    dirname "$(find / -name libcublas.so.13 -print -quit 2>/dev/null)")
  export LD_LIBRARY_PATH=$nv:/usr/local/nvidia/lib64:/usr/local/nvidia/lib:${LD_LIBRARY_PATH:-}
  nvidia-smi -L 2>/dev/null || true
fi
# Binaries built elsewhere: point them at this checkout's fixtures and default model.
export CARGO_MANIFEST_DIR=$PWD STANDPOINT_MODEL=$PWD/models/default HF_HUB_OFFLINE=1
status=0
verdict() { if [ "$2" = 0 ]; then echo "PASS $1"; else echo "FAIL $1"; status=1; fi; }

echo "== 1. parity with transformers on $device"
for dtype in f32 bf16; do
  rc=0
  STANDPOINT_TEST_DEVICE=$device STANDPOINT_TEST_DTYPE=$dtype "$work/test-parity" matches_transformers \
    >"$work/parity-$dtype.log" 2>&1 || rc=$?
  grep -E "test result|panicked|differs" "$work/parity-$dtype.log" || true
  verdict "parity $dtype" $rc
done

echo "== 2. default model on the corpus: $device vs cpu f32"
"$PYTHON" -c 'import json,sys; [print(json.dumps({"id": i, "text": l.strip(), "target": "NATO"})) for i, l in enumerate(open(sys.argv[1])) if l.strip()]' \
  "$CORPUS" >"$work/corpus.jsonl"
"$work/standpoint" classify -i "$work/corpus.jsonl" -o "$work/cpu.jsonl"
for dtype in f32 bf16; do
  "$work/standpoint" classify -i "$work/corpus.jsonl" -o "$work/$device-$dtype.jsonl" --device "$device" --dtype "$dtype"
  rc=0
  "$PYTHON" scripts/compare-labels.py "$work/cpu.jsonl" "$work/$device-$dtype.jsonl" 0.995 |
    sed "s/agreement/agreement dtype=$dtype/" || rc=$?
  verdict "agreement $dtype >= 99.5%" $rc
done

echo "== 3. short fine-tune from MiniLM: $device vs cpu"
for where in cpu "$device"; do
  "$work/standpoint" train --base "$MINILM" --train "$FT_TRAIN" --dev "$FT_DEV" --head stance:pair \
    --epochs "$FT_EPOCHS" --seed 7 --device "$where" --output "$work/ft-$where" 2>"$work/ft-$where.log"
  "$work/standpoint" eval --model "$work/ft-$where" --data "$FT_DEV" --metric stance.macro_f1 \
    | tail -1 | tee "$work/ft-$where.metric"
done
rc=0
"$PYTHON" - "$work/ft-cpu.metric" "$work/ft-$device.metric" <<'EOF' || rc=$?
import sys
cpu, dev = (float(open(p).read().split()[-1]) for p in sys.argv[1:3])
print(f"RESULT finetune dev macro_f1 cpu={cpu:.4f} device={dev:.4f} diff={dev - cpu:+.4f}")
sys.exit(0 if abs(dev - cpu) <= 0.02 else 1)
EOF
verdict "fine-tune dev macro-F1 within 2 points of the CPU run" $rc

echo "== 4. throughput on $device beside PyTorch"
sizes=32,64,128,256
for dtype in f32 bf16; do
  "$work/bench-infer" --model "$MINILM" --corpus "$CORPUS" --device "$device" --dtype "$dtype" --modes f32 \
    --bs $sizes --runs "$RUNS" | sed "s/mode=f32/dtype=$dtype/" | grep RESULT | tee -a "$work/ours.txt"
done
"$work/bench-train" --model "$MINILM" --corpus "$CORPUS" --device "$device" --steps "$STEPS" 2>/dev/null | grep RESULT | tee -a "$work/ours.txt"
torch_device=${device/cuda:*/cuda}
"$PYTHON" scripts/bench_torch_device.py --model "$MINILM" --corpus "$CORPUS" --device "$torch_device" \
  --dtype f32,bf16 --bs $sizes --runs "$RUNS" --steps "$STEPS" | grep RESULT | tee "$work/theirs.txt"
"$PYTHON" - "$work/ours.txt" "$work/theirs.txt" <<'EOF'
import re, sys
def grab(path, pattern):
    for line in open(path):
        m = re.search(pattern, line)
        if m:
            return float(m.group(1))
print("| what | standpoint | PyTorch | ratio |\n|---|---|---|---|")
for dtype in ("f32", "bf16"):
    for bs in (32, 64, 128, 256):
        ours = grab(sys.argv[1], rf"dtype={dtype} bs={bs} order=sorted median_sent_per_s=([0-9.]+)")
        theirs = grab(sys.argv[2], rf"dtype={dtype} bs={bs} order=sorted median_sent_per_s=([0-9.]+)")
        if ours and theirs:
            print(f"| inference {dtype} bs {bs} (sent/s) | {ours:.0f} | {theirs:.0f} | {ours / theirs:.2f}x |")
ours = grab(sys.argv[1], r"train .* examples_per_s=([0-9.]+)")
theirs = grab(sys.argv[2], r"train precision=f32 .* examples_per_s=([0-9.]+)")
if ours and theirs:
    print(f"| training f32 bs 32 (examples/s) | {ours:.1f} | {theirs:.1f} | {ours / theirs:.2f}x |")
EOF
exit $status
