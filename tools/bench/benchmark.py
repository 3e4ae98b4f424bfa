r"""Training throughput, inference latency, memory and FLOPs of DeepLabv3, as one JSON line.

Synthetic inputs; warm-up steps (which hold the compile) are not timed. Runs on whatever
Keras backend is active: TensorFlow here, JAX on the GPU machine (which has no TensorFlow).

    python -m tools.bench.benchmark --mode=train --depth=101 --output_stride=16 \
        --batch_size=16 --crop_size=513 --precision=bf16
    python -m tools.bench.benchmark --mode=infer --depth=101 --output_stride=16 \
        --batch_size=1 --crop_size=513 --precision=fp32

Prints: images_per_s (train), ms_median and ms_min per batch (infer), peak_memory_gib
(device peak on a GPU, host peak RSS on a CPU: peak_memory_kind says which),
gflops_forward_per_image (counted from the layer list: tools/bench/benchmarking.py), and
achieved TFLOP/s and model FLOP utilisation (mfu) where the chip's peak is known.
Inference serves the batch-norm-folded copy of the model (--nofold_batch_norm: as trained)
and returns logits at the image size, as torchvision's DeepLabV3 does.
Compare with the peer in the same session: ../shared/bench/torchvision_anchor.py, and
tools/bench/benchmark_vs_torchvision.py runs both alternately on a CPU.
"""
import json

from absl import app
from absl import flags

flags.DEFINE_enum("mode", "train", ["train", "infer"], "What to time.")
flags.DEFINE_integer("depth", 101, "ResNet depth: 50 or 101.")
flags.DEFINE_integer("output_stride", 16, "Output stride of the model.")
flags.DEFINE_integer("batch_size", 16, "Images per step.")
flags.DEFINE_integer("crop_size", 513, "Square input size.")
flags.DEFINE_enum("precision", "fp32", ["fp32", "bf16", "fp16"],
                  "fp32, or mixed precision with bf16 / fp16 compute (fp16 with loss scaling).")
flags.DEFINE_bool("xla", False, "TensorFlow: compile with XLA (jit_compile). JAX always is.")
flags.DEFINE_bool("fold_batch_norm", True, "Inference: fold batch norm into the convs.")
flags.DEFINE_integer("steps", 10, "Timed steps.")
flags.DEFINE_integer("warmup", 3, "Untimed steps before timing (the first compiles).")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    # Imported here so that --help answers without starting a backend.
    from tools.bench import benchmarking
    result = benchmarking.measure(
        FLAGS.mode, depth=FLAGS.depth, output_stride=FLAGS.output_stride,
        batch_size=FLAGS.batch_size, crop_size=FLAGS.crop_size, precision=FLAGS.precision,
        xla=FLAGS.xla, steps=FLAGS.steps, warmup=FLAGS.warmup,
        fold_batch_norm=FLAGS.fold_batch_norm)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    app.run(main)
