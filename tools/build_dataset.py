"""Builds one of the project's TFDS data sets from the user's local copy.

    python -m tools.build_dataset --list
    python -m tools.build_dataset --dataset=pascal_voc_seg --manual_dir=~/data/voc \
        --data_dir=~/tensorflow_datasets

Afterwards `tfds.load(NAME, data_dir=DIR)` reads it once `deeplab_tf.data` is imported.
Every file is checked as it is read; a problem (a missing or corrupt file, a split list
that names an image twice, ...) stops the build with one line naming the file.
"""
from absl import app, flags

from deeplab_tf import console

flags.DEFINE_string("dataset", None, "Builder name (see --list).")
flags.DEFINE_string("manual_dir", None, "The local copy of the data set.")
flags.DEFINE_string("data_dir", None, "TFDS data directory to write into.")
flags.DEFINE_bool("list", False, "Print the builder names and exit.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    from deeplab_tf import data
    if FLAGS.list:
        print("\n".join(data.BUILDERS))
        return
    if not FLAGS.dataset or not FLAGS.manual_dir:
        raise app.UsageError("--dataset and --manual_dir are required (or --list)")
    builder = data.build(FLAGS.dataset, FLAGS.manual_dir, FLAGS.data_dir)
    print(f"built {builder.name} in {builder.data_dir}: {data.count_report(builder)}")


if __name__ == "__main__":
    console.run(main)
