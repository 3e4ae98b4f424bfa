r"""Where a training or inference step's time goes: a profiler trace of a few steps.

Builds the same model and step as tools/bench/benchmark.py, runs the warm-up (the compile), then
traces --steps steps with the active backend's profiler (jax.profiler on JAX,
tf.profiler on TensorFlow) and copies the trace to --output as one .xplane.pb file, which
`python -m tools.bench.summarize_trace` turns into a table of device time per kernel family.

    KERAS_BACKEND=jax python -m tools.bench.profile_step --mode=train --precision=bf16 \
        --batch_size=16 --crop_size=513 --output=/tmp/train.xplane.pb
"""
import glob
import os
import shutil
import tempfile

from absl import app
from absl import flags

flags.DEFINE_enum("mode", "train", ["train", "infer"], "What to trace.")
flags.DEFINE_integer("depth", 101, "ResNet depth: 50 or 101.")
flags.DEFINE_integer("output_stride", 16, "Output stride of the model.")
flags.DEFINE_integer("batch_size", 16, "Images per step.")
flags.DEFINE_integer("crop_size", 513, "Square input size.")
flags.DEFINE_enum("precision", "bf16", ["fp32", "bf16", "fp16"], "Compute precision.")
flags.DEFINE_integer("warmup", 3, "Untraced steps first (the first compiles).")
flags.DEFINE_integer("steps", 3, "Traced steps.")
flags.DEFINE_string("output", None, "Where the .xplane.pb trace goes.")
flags.mark_flag_as_required("output")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    import keras
    from tools.bench import benchmarking

    run, sync, images, labels, _ = benchmarking.build_step(
        FLAGS.mode, depth=FLAGS.depth, output_stride=FLAGS.output_stride,
        batch_size=FLAGS.batch_size, crop_size=FLAGS.crop_size, precision=FLAGS.precision)
    for _ in range(FLAGS.warmup):
        sync(run(images, labels))
    trace_dir = tempfile.mkdtemp(prefix="deeplab_tf_trace_")
    if keras.backend.backend() == "jax":
        import jax
        with jax.profiler.trace(trace_dir):
            for _ in range(FLAGS.steps):
                out = run(images, labels)
            sync(out)
    else:
        import tensorflow as tf
        tf.profiler.experimental.start(trace_dir)
        for _ in range(FLAGS.steps):
            out = run(images, labels)
        sync(out)
        tf.profiler.experimental.stop()
    traces = glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True)
    if len(traces) != 1:
        raise RuntimeError(f"expected one .xplane.pb under {trace_dir}, found {traces}")
    shutil.copyfile(traces[0], FLAGS.output)
    print(f"trace of {FLAGS.steps} {FLAGS.mode} steps: {FLAGS.output} "
          f"({os.path.getsize(FLAGS.output) / 2**20:.1f} MiB)")


if __name__ == "__main__":
    app.run(main)
