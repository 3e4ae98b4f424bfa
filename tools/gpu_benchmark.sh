#!/usr/bin/env bash
# Issue 6's GPU figures in one call of the device tool (JAX backend, no TensorFlow there):
# training R101 OS16 crop 513 batch 16 bf16, then inference OS8 batch 1 bf16, each against
# torchvision's anchor in the same call. Wheels (keras, namex, optree) and a copy of the
# anchor go in .whl/ (see WORKSPACE_NOTES.md); figures land in $OUT/*.jsonl.
#   run(command="bash tools/gpu_benchmark.sh", carry=[".whl"], timeout_s=540)
# SIZE, TRAIN_STEPS, INFER_STEPS, DEVICE, PY and TORCH_PYTHON override the defaults (a CPU
# dry run: SIZE=65 DEVICE=cpu PY=.venv/bin/python TORCH_PYTHON=/path/to/torch/python
# OUT=/tmp/out bash tools/gpu_benchmark.sh).
set -u -o pipefail
OUT=${OUT:?set OUT to a folder for the figures}
SIZE=${SIZE:-513}
DEVICE=${DEVICE:-cuda}
TORCH_PYTHON=${TORCH_PYTHON:-python3}
if [ -d .whl ] && [ "$DEVICE" = cuda ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1
PY=${PY:-python3}
ANCHOR=${ANCHOR:-.whl/torchvision_anchor.py}
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv 2>/dev/null | tee "$OUT/gpu.txt"
common=(--device="$DEVICE" --torch_python="$TORCH_PYTHON" --anchor="$ANCHOR" --precision=bf16
        --crop_size="$SIZE" --rounds=1)
timeout 300 "$PY" -m tools.benchmark_vs_torchvision "${common[@]}" --mode=train \
  --output_stride=16 --batch_size=16 --steps="${TRAIN_STEPS:-20}" --warmup=3 2>&1 \
  | tee "$OUT/train.jsonl"
timeout 200 "$PY" -m tools.benchmark_vs_torchvision "${common[@]}" --mode=infer \
  --output_stride=8 --batch_size=1 --steps="${INFER_STEPS:-50}" --warmup=5 2>&1 \
  | tee "$OUT/infer.jsonl"
