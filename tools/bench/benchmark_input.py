"""Measures the training input pipeline (paper 4.1 augmentation) in examples per second.

    python -m tools.bench.benchmark_input                # generated VOC-sized JPEGs
    python -m tools.bench.benchmark_input --dataset=pascal_voc_seg \
        --data_dir=~/tensorflow_datasets

Without --data_dir it generates --num_images scenes of 375-500 pixel sides (VOC images
are about 500x375), builds them as `synthetic_voc` in a temporary directory and times
`train_input` at --crop_size. It prints one JSON line per run: examples/s with every core
(and that divided by the core count) and with one thread (the per-core figure), and the
same per CPU-second of this process (robust when other jobs share the cores), for
`train_input` and for a straightforward decode-resize-pad-crop-flip pipeline run in the
same conditions as the reference. By default
it re-runs itself under `pipeline.MALLOC_TUNABLES`; --nomalloc_tuning measures without.
"""
import itertools
import json
import os
import sys
import tempfile
import time

from absl import app, flags
import numpy as np
import tensorflow as tf

from deeplab_tf import config as config_lib
from deeplab_tf import data
from deeplab_tf import synthetic
from deeplab_tf.data import pipeline
from deeplab_tf.modeling import MEAN_PIXEL
from tools.bench import cpu

flags.DEFINE_string("dataset", "synthetic_voc", "Builder to read.")
flags.DEFINE_string("data_dir", None, "TFDS data_dir holding --dataset; none: generate.")
flags.DEFINE_string("split", "train", "Split to read.")
flags.DEFINE_integer("num_images", 200, "Generated images (without --data_dir).")
flags.DEFINE_integer("jpeg_quality", 90, "JPEG quality of the generated images.")
flags.DEFINE_integer("crop_size", 513, "Training crop.")
flags.DEFINE_integer("batch_size", 16, "Batch size.")
flags.DEFINE_integer("batches", 40, "Timed batches per run (after 5 warm-up batches).")
flags.DEFINE_bool("malloc_tuning", True, "Re-run this process with GLIBC_TUNABLES set to "
                  "deeplab_tf.data.pipeline.MALLOC_TUNABLES (huge pages, no per-batch mmap).")
flags.DEFINE_integer("repeats", 3, "Timed runs per setting; best and spread are printed.")
FLAGS = flags.FLAGS


def generate(directory, num_images, jpeg_quality):
    """VOC-sized generated scenes in the VOC layout, built as synthetic_voc."""
    source = os.path.join(directory, "source")
    names = [f"bench_{i:05d}" for i in range(num_images)]
    scenes = ((n, *synthetic.make_scene(1, i, 375, 500)) for i, n in enumerate(names))
    synthetic.write_voc_layout(source, scenes, {"train": names, "val": names[:1],
                                                "trainval": names}, jpeg_quality,
                               chroma_subsampling=2)  # 4:2:0 like VOC
    data.build("synthetic_voc", source, os.path.join(directory, "tfds"))
    sizes = [os.path.getsize(os.path.join(source, "JPEGImages", n + ".jpg")) for n in names]
    return os.path.join(directory, "tfds"), float(np.mean(sizes))


def straightforward_input(data_config, batch_size):
    """The reference point: decode, resize the whole image, pad, crop, flip (float32)."""
    crop = data_config.crop_size
    mean = tf.constant(MEAN_PIXEL, tf.float32)

    def augment(example):
        image = tf.cast(tf.io.decode_jpeg(example["image"], channels=3), tf.float32)
        label = tf.cast(tf.io.decode_png(example["label"], channels=1), tf.float32)
        scale = tf.random.uniform([], data_config.min_scale, data_config.max_scale)
        size = tf.cast(tf.cast(tf.shape(image)[:2], tf.float32) * scale, tf.int32)
        image = tf.image.resize(image, size)
        label = tf.image.resize(label, size, method="nearest")
        padded = tf.maximum(size, crop)
        image = tf.image.pad_to_bounding_box(image - mean, 0, 0, padded[0], padded[1]) + mean
        label = tf.image.pad_to_bounding_box(label - 255, 0, 0, padded[0], padded[1]) + 255
        both = tf.image.random_crop(tf.concat([image, label], -1), [crop, crop, 4])
        both = tf.image.random_flip_left_right(both)
        return both[..., :3], tf.cast(both[..., 3], tf.int32)

    dataset = pipeline.training_examples(data_config).shuffle(
        data_config.shuffle_buffer).repeat()
    return dataset.map(augment, num_parallel_calls=tf.data.AUTOTUNE).batch(
        batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def examples_per_second(data_config, threads, baseline=False):
    dataset = (straightforward_input if baseline else data.train_input)(
        data_config, FLAGS.batch_size)
    if threads:
        options = tf.data.Options()
        options.threading.private_threadpool_size = threads
        options.threading.max_intra_op_parallelism = 1
        dataset = dataset.with_options(options)
    iterator = iter(dataset)
    for _ in range(5):
        next(iterator)
    start, start_cpu = time.perf_counter(), time.process_time()
    for _ in range(FLAGS.batches):
        next(iterator)
    examples = FLAGS.batches * FLAGS.batch_size
    return (examples / (time.perf_counter() - start),
            examples / (time.process_time() - start_cpu))


def main(argv):
    del argv
    if FLAGS.malloc_tuning and os.environ.get("GLIBC_TUNABLES") != pipeline.MALLOC_TUNABLES:
        os.execve(sys.executable, [sys.executable, "-m", "tools.bench.benchmark_input"] +
                  sys.argv[1:], dict(os.environ, GLIBC_TUNABLES=pipeline.MALLOC_TUNABLES))
    with tempfile.TemporaryDirectory() as directory:
        data_config = config_lib.DataConfig(dataset=FLAGS.dataset, train_split=FLAGS.split,
                                            crop_size=FLAGS.crop_size)
        if FLAGS.dataset == "cityscapes_seg":
            data_config.num_classes = 19
        mean_jpeg_bytes = None
        if FLAGS.data_dir:
            data_config.data_dir = os.path.expanduser(FLAGS.data_dir)
        else:
            data_config.data_dir, mean_jpeg_bytes = generate(
                directory, FLAGS.num_images, FLAGS.jpeg_quality)
        cores = os.cpu_count()
        for threads, baseline in itertools.product((0, 1), (False, True)):
            runs = [examples_per_second(data_config, threads, baseline)
                    for _ in range(FLAGS.repeats)]
            rates, cpu_rates = [r[0] for r in runs], [r[1] for r in runs]
            print(json.dumps({
                "cpu": cpu.line(),
                "pipeline": "straightforward" if baseline else "train_input",
                "dataset": FLAGS.dataset, "crop_size": FLAGS.crop_size,
                "threads": threads or cores, "cores": cores,
                "examples_per_s_best": round(max(rates), 1),
                "examples_per_s_runs": [round(r, 1) for r in rates],
                "per_core_best": round(max(rates) / (threads or cores), 1),
                "examples_per_cpu_s_runs": [round(r, 1) for r in cpu_rates],
                "mean_jpeg_bytes": mean_jpeg_bytes,
                "glibc_tunables": os.environ.get("GLIBC_TUNABLES")}), flush=True)


if __name__ == "__main__":
    app.run(main)
