"""Times one 3x3 atrous convolution: TensorFlow's dilated kernel against the shifted taps.

    python -m tools.bench.benchmark_atrous_conv --size=21 --channels_in=2048 \
        --channels_out=256 --rate=18 --batch_size=8 --mode=train

The figures behind `deeplab_tf.modeling.atrous_conv.TAPS_MIN_RATE` (WORKSPACE_NOTES.md,
"Speed on this CPU"). Prints one JSON line: ms per call (median of --steps after one
warm-up call) for `tf.nn.convolution` with dilations (SpaceToBatch) and for
`atrous_conv_by_taps`, forward only (--mode=infer) or forward and both gradients
(--mode=train), and the largest relative difference of the two outputs.
"""
import json
import time

from absl import app, flags
import numpy as np
import tensorflow as tf

from deeplab_tf.modeling import atrous_conv
from tools.bench import cpu

flags.DEFINE_integer("size", 33, "Height and width of the feature map.")
flags.DEFINE_integer("channels_in", 2048, "Input channels.")
flags.DEFINE_integer("channels_out", 256, "Output channels.")
flags.DEFINE_integer("rate", 12, "Atrous rate.")
flags.DEFINE_integer("batch_size", 8, "Batch size.")
flags.DEFINE_enum("mode", "train", ["train", "infer"], "Forward only, or forward + gradients.")
flags.DEFINE_integer("steps", 3, "Timed calls.")
FLAGS = flags.FLAGS


def _timed(fn, *args):
    fn(*args)  # traces and warms up
    times = []
    for _ in range(FLAGS.steps):
        start = time.perf_counter()
        tf.nest.map_structure(lambda t: t.numpy(), fn(*args))
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def _function(conv):
    if FLAGS.mode == "infer":
        return tf.function(conv)

    @tf.function
    def forward_backward(x, kernel):
        with tf.GradientTape() as tape:
            tape.watch([x, kernel])
            y = conv(x, kernel)
            loss = tf.reduce_sum(y * y)
        return tape.gradient(loss, [x, kernel])
    return forward_backward


def main(argv):
    del argv
    rate = (FLAGS.rate, FLAGS.rate)
    x = tf.random.stateless_normal(
        (FLAGS.batch_size, FLAGS.size, FLAGS.size, FLAGS.channels_in), seed=(0, 1))
    kernel = tf.random.stateless_normal(
        (3, 3, FLAGS.channels_in, FLAGS.channels_out), seed=(0, 2)) * 0.01

    def space_to_batch(x, kernel):
        return tf.nn.convolution(x, kernel, padding="SAME", dilations=rate)

    def taps(x, kernel):
        return atrous_conv.atrous_conv_by_taps(x, kernel, rate)

    reference, ours = space_to_batch(x, kernel), taps(x, kernel)
    difference = float(tf.reduce_max(tf.abs(reference - ours)) /
                       tf.reduce_max(tf.abs(reference)))
    print(json.dumps({
        "cpu": cpu.line(), "mode": FLAGS.mode, "size": FLAGS.size, "channels_in": FLAGS.channels_in,
        "channels_out": FLAGS.channels_out, "rate": FLAGS.rate,
        "batch_size": FLAGS.batch_size,
        "space_to_batch_ms": _timed(_function(space_to_batch), x, kernel),
        "taps_ms": _timed(_function(taps), x, kernel),
        "max_relative_difference": difference,
    }))


if __name__ == "__main__":
    app.run(main)
