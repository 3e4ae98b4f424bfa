"""Builds one of the project's TFDS data sets from the user's local copy.

    python -m tools.build_dataset --list
    python -m tools.build_dataset --dataset=pascal_voc_seg --manual_dir=~/data/voc \
        --data_dir=~/tensorflow_datasets

Afterwards `tfds.load(NAME, data_dir=DIR)` reads it once `deeplab_tf.data` is imported.
"""
import os

from absl import app, flags
import tensorflow_datasets as tfds

import deeplab_tf.data

flags.DEFINE_string("dataset", None, "Builder name (see --list).")
flags.DEFINE_string("manual_dir", None, "The local copy of the data set.")
flags.DEFINE_string("data_dir", None, "TFDS data directory to write into.")
flags.DEFINE_bool("list", False, "Print the builder names and exit.")
FLAGS = flags.FLAGS


def build(dataset, manual_dir, data_dir=None):
    """Builds `dataset` from `manual_dir`; returns the builder."""
    if dataset not in deeplab_tf.data.BUILDERS:
        raise ValueError(f"unknown dataset {dataset!r}; one of {deeplab_tf.data.BUILDERS}")
    manual_dir = os.path.expanduser(manual_dir)
    if not os.path.isdir(manual_dir):
        raise FileNotFoundError(f"--manual_dir {manual_dir}: directory does not exist")
    builder = tfds.builder(dataset, data_dir=data_dir and os.path.expanduser(data_dir))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=manual_dir))
    return builder


def main(argv):
    del argv
    if FLAGS.list:
        print("\n".join(deeplab_tf.data.BUILDERS))
        return
    if not FLAGS.dataset or not FLAGS.manual_dir:
        raise app.UsageError("--dataset and --manual_dir are required (or --list)")
    builder = build(FLAGS.dataset, FLAGS.manual_dir, FLAGS.data_dir)
    splits = ", ".join(f"{name} {info.num_examples}"
                       for name, info in sorted(builder.info.splits.items()))
    print(f"built {builder.name} in {builder.data_dir}: {splits}")


if __name__ == "__main__":
    app.run(main)
