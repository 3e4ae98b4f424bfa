"""Builds one of the project's TFDS data sets from the user's local copy.

    python -m tools.build_dataset --list
    python -m tools.build_dataset --dataset=pascal_voc_seg --manual_dir=~/data/voc \
        --data_dir=~/tensorflow_datasets

One's own data, under a name of one's choosing (deeplab_tf/data/custom.py): a VOC-style
export (CVAT's "Segmentation mask 1.1": JPEGImages/, SegmentationClass/,
ImageSets/Segmentation/*.txt, labelmap.txt) or a plain folder (images/, masks/,
classes.txt):

    python -m tools.build_dataset --dataset=custom_seg/shapes --manual_dir=~/export \
        --data_dir=~/tensorflow_datasets [--classes=FILE] [--val_fraction=0.2] \
        [--split_seed=0] [--ignore_value=255] [--ignore_color=224,224,192] [--overwrite]

Each list file is a split; with one list (or none) a seeded `val` hold-out of
--val_fraction is drawn, the same on every build. Train and evaluate it with
data.dataset="custom_seg/shapes" and the same data.data_dir.

Afterwards `tfds.load(NAME, data_dir=DIR)` reads it once `deeplab_tf.data` is imported.
Every file is checked as it is read (one's own folder entirely before anything is
written); a problem (a missing or corrupt file, a mask colour that is no class, a split
list that names an image twice or a path out of the data set's folders, an image over
8192 x 8192 pixels, ...) stops the build with one line naming the file. A line of a list
file is one name, spaces included; one's own images may be JPEG, PNG or both, each stored
as its file is. With --overwrite the old build stays until the new one is completely
written.
"""
from absl import app, flags

from deeplab_tf import console

flags.DEFINE_string("dataset", None, "Builder name (see --list); custom_seg/NAME for "
                    "one's own data.")
flags.DEFINE_string("manual_dir", None, "The local copy of the data set (for custom_seg: "
                    "the export folder).")
flags.DEFINE_string("data_dir", None, "TFDS data directory to write into.")
flags.DEFINE_bool("list", False, "Print the builder names and exit.")
# custom_seg only:
flags.DEFINE_string("classes", None, "custom_seg: the class list, a CVAT labelmap.txt or a "
                    "classes file (default: MANUAL_DIR/labelmap.txt or classes.txt).")
flags.DEFINE_integer("ignore_value", 255, "custom_seg: the mask value (palette index or "
                     "grey level) that marks pixels to ignore; never a class.")
flags.DEFINE_string("ignore_color", "224,224,192", "custom_seg: r,g,b of the colour that "
                    "marks pixels to ignore in RGB colour masks; never a class's.")
flags.DEFINE_float("val_fraction", 0.2, "custom_seg: the fraction held out as `val` when "
                   "the export has one split list or none (0: no hold-out).")
flags.DEFINE_integer("split_seed", 0, "custom_seg: the seed of the `val` hold-out.")
flags.DEFINE_bool("overwrite", False, "custom_seg: replace an existing build of the same "
                  "name; the old one stays until the new one is completely written "
                  "(a failed or interrupted rebuild leaves it as it was).")
FLAGS = flags.FLAGS

DESCRIPTIONS = {
    "pascal_voc_seg": "PASCAL VOC 2012 (+ SBD train_aug), 21 classes",
    "synthetic_voc": "the generated VOC-layout set of tools.make_synthetic",
    "cityscapes_seg": "Cityscapes fine (+ coarse train_extra), 19 train ids",
    "coco_voc_seg": "COCO instances kept to the 20 VOC classes",
    "custom_seg": "one's own data, any classes: --dataset=custom_seg/NAME",
}
OPTIONS = {"classes": "class_file", "ignore_value": "ignore_value",
           "ignore_color": "ignore_color", "val_fraction": "val_fraction",
           "split_seed": "split_seed"}


def parse_color(text):
    parts = text.split(",")
    if len(parts) != 3 or not all(p.strip().isdigit() and int(p) <= 255 for p in parts):
        raise ValueError(f"--ignore_color={text!r} is not r,g,b with each 0..255")
    return tuple(int(p) for p in parts)


def main(argv):
    del argv
    from deeplab_tf import data
    if FLAGS.list:
        print("\n".join(f"{name:<16} {DESCRIPTIONS[name]}" for name in data.BUILDERS))
        return
    if not FLAGS.dataset or not FLAGS.manual_dir:
        raise app.UsageError("--dataset and --manual_dir are required (or --list)")
    # Options the user gave: a built-in data set refuses them; one's own gets the defaults
    # for the rest.
    options = {key: FLAGS[flag].value for flag, key in OPTIONS.items()
               if FLAGS[flag].present}
    if "ignore_color" in options:
        options["ignore_color"] = parse_color(options["ignore_color"])
    builder = data.build(FLAGS.dataset, FLAGS.manual_dir, FLAGS.data_dir,
                         overwrite=FLAGS.overwrite, **options)
    line = f"built {FLAGS.dataset} in {builder.data_dir}: {data.count_report(builder)}"
    if data.custom.is_custom(FLAGS.dataset):
        table = data.class_table(FLAGS.dataset, FLAGS.data_dir)
        line += (f"; {table.num_classes} classes: {', '.join(table.names)} "
                 f"(ignore label {table.ignore_label})")
    print(line)


if __name__ == "__main__":
    console.run(main)
