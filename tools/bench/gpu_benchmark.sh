#!/usr/bin/env bash
# Issue 14's comparison on one GPU in one or two calls of the device tool (JAX backend: no
# TensorFlow there): for each precision, training R101 OS 16 crop 513 batch 16, then
# inference OS 8 batch 1 and OS 16 batch 16, each against torchvision's anchor in the same
# call; speed and like-for-like memory (tools/bench/benchmark_vs_torchvision.py says which peak
# each side reports). Wheels (keras, namex, optree) and a copy of the anchor go in .whl/
# (see WORKSPACE_NOTES.md); figures land in $OUT/<part>_<precision>*.jsonl.
#   run(command="PARTS=train bash tools/bench/gpu_benchmark.sh", carry=[".whl"], timeout_s=560)
#   run(command="PARTS=infer bash tools/bench/gpu_benchmark.sh", carry=[".whl"], timeout_s=560)
# PARTS (train infer), PRECISIONS (bf16 fp32), ROUNDS, SIZE, TRAIN_STEPS, INFER_STEPS,
# DEVICE, PY, TORCH_PYTHON and XLA_VARIANT (extra XLA_FLAGS for one more fp32 training run
# of ours alone) override the defaults. A CPU dry run at a tiny size:
#   SIZE=65 DEPTH=50 DEVICE=cpu TRAIN_BATCH=2 TRAIN_STEPS=1 INFER_STEPS=1 \
#   PY=.venv/bin/python TORCH_PYTHON=/path/to/torch/python OUT=/tmp/out \
#   bash tools/bench/gpu_benchmark.sh
set -u -o pipefail
OUT=${OUT:?set OUT to a folder for the figures}
SIZE=${SIZE:-513}
DEPTH=${DEPTH:-101}
DEVICE=${DEVICE:-cuda}
PARTS=${PARTS:-train infer}
PRECISIONS=${PRECISIONS:-bf16 fp32}
ROUNDS=${ROUNDS:-1}
TRAIN_BATCH=${TRAIN_BATCH:-16}
SERVE_BATCH=${SERVE_BATCH:-16}
TORCH_PYTHON=${TORCH_PYTHON:-python3}
if [ -d .whl ] && [ "$DEVICE" = cuda ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1
PY=${PY:-python3}
ANCHOR=${ANCHOR:-.whl/torchvision_anchor.py}
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,driver_version --format=csv \
  2>/dev/null | tee "$OUT/gpu.txt"
"$PY" -c "import jax, keras; print('jax', jax.__version__, 'keras', keras.__version__)" \
  2>&1 | tee -a "$OUT/gpu.txt"

side_by_side() {  # name, timeout, then tools.bench.benchmark_vs_torchvision flags
  local name=$1 limit=$2
  shift 2
  echo "== $name" >&2
  timeout "$limit" "$PY" -m tools.bench.benchmark_vs_torchvision --device="$DEVICE" \
    --torch_python="$TORCH_PYTHON" --anchor="$ANCHOR" --depth="$DEPTH" \
    --crop_size="$SIZE" --rounds="$ROUNDS" "$@" 2>&1 | tee "$OUT/$name.jsonl"
}

for part in $PARTS; do
  for precision in $PRECISIONS; do
    if [ "$part" = train ]; then
      side_by_side "train_$precision" 280 --mode=train --precision="$precision" \
        --output_stride=16 --batch_size="$TRAIN_BATCH" --steps="${TRAIN_STEPS:-20}" --warmup=3
    else
      side_by_side "infer_os8_b1_$precision" 150 --mode=infer --precision="$precision" \
        --output_stride=8 --batch_size=1 --steps="${INFER_STEPS:-50}" --warmup=5
      side_by_side "infer_os16_b${SERVE_BATCH}_$precision" 150 --mode=infer \
        --precision="$precision" --output_stride=16 --batch_size="$SERVE_BATCH" \
        --steps="${INFER_STEPS:-20}" --warmup=3
    fi
  done
done
if [ -n "${XLA_VARIANT:-}" ]; then
  echo "== ours, fp32 training with XLA_FLAGS=$XLA_VARIANT" >&2
  XLA_FLAGS="$XLA_VARIANT" timeout 200 "$PY" -m tools.bench.benchmark --mode=train \
    --precision=fp32 --depth="$DEPTH" --output_stride=16 --batch_size="$TRAIN_BATCH" \
    --crop_size="$SIZE" --steps="${TRAIN_STEPS:-20}" --warmup=3 2>&1 \
    | tee "$OUT/train_fp32_variant.jsonl"
fi
