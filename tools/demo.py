"""The main job end to end on the embedded default: synthetic data, CPU, a few minutes.

    python -m tools.demo --workdir=runs/demo

Runs, each as its own command (printed first, so every step can be rerun by hand):
make the synthetic VOC-layout set, build it as a TFDS data set, train the `demo`
experiment, evaluate it (mIoU), export a SavedModel, and predict coloured masks for a few
validation images with the checkpoint the export was made from. Then draws two pictures:
  WORKDIR/contact_sheet.png    image | ground truth | prediction for those validation
                               images, with a legend of the class colours
  WORKDIR/training_curves.png  loss, learning rate, train mIoU and the val mIoU
(and tools.evaluate's WORKDIR/train_run/eval/per_class_iou_STEP.png).
"""
import os
import shlex
import subprocess
import sys
import time

import numpy as np
from absl import flags, logging
from PIL import Image

from deeplab_tf import console

flags.DEFINE_string("workdir", "runs/demo", "Where everything is written.")
flags.DEFINE_string("experiment", "demo", "Experiment to train.")
flags.DEFINE_multi_string("set", [], "Overrides for the training run, e.g. train.steps=50.")
flags.DEFINE_integer("num_predict", 4, "Validation images to predict and show at the end.")
flags.DEFINE_integer("num_train", 300, "Synthetic training images.")
flags.DEFINE_integer("num_val", 60, "Synthetic validation images.")
flags.DEFINE_integer("min_size", 56, "Smallest synthetic image side (the demo experiment's "
                     "97x97 evaluation crop holds up to 96).")
flags.DEFINE_integer("max_size", 96, "Largest synthetic image side.")
FLAGS = flags.FLAGS


def run(*args):
    command = [sys.executable, "-m", *args]
    if FLAGS["verbosity"].present:  # the tools are quiet unless the user asks
        command.append(f"--verbosity={FLAGS.verbosity}")
    print(f"\n$ {shlex.join(['python', '-m', *args])}", flush=True)
    start = time.time()
    process = subprocess.run(command, check=False)
    if process.returncode:
        sys.exit(f"tools.demo: error: the step above failed (exit status "
                 f"{process.returncode}); its output says why")
    print(f"  ({time.time() - start:.0f} s)", flush=True)


def contact_sheet(source, names, predictions, class_table, path):
    """The validation images, their ground truth and the predicted labels, in one PNG."""
    from deeplab_tf import plots
    rows = []
    for name in names:
        image = np.asarray(Image.open(os.path.join(source, "JPEGImages", f"{name}.jpg")))
        label = np.asarray(Image.open(os.path.join(source, "SegmentationClass",
                                                   f"{name}.png")))
        prediction = np.asarray(Image.open(os.path.join(predictions, "labels",
                                                        f"{name}.png")))
        rows.append((name, image, label, prediction))
    return plots.contact_sheet(path, rows, class_table)


def training_curves(train_dir, path):
    """Loss, learning rate and mIoU of the run's TensorBoard scalars, in one PNG."""
    console.load_tensorflow(FLAGS.verbosity)  # TensorBoard's reader imports TensorFlow
    from deeplab_tf import plots
    train = plots.read_scalars(os.path.join(train_dir, "train"))
    evaluated = plots.read_scalars(os.path.join(train_dir, "eval"))
    return plots.training_curves(path, train, evaluated, title=f"{FLAGS.experiment}")


def main(argv):
    del argv
    workdir = os.path.abspath(FLAGS.workdir)
    source = os.path.join(workdir, "synthetic_src")
    data_dir = os.path.join(workdir, "tfds")
    train_dir = os.path.join(workdir, "train_run")
    predictions = os.path.join(workdir, "predictions")
    sets = [f"--set=data.data_dir={data_dir}"] + [f"--set={s}" for s in FLAGS.set]
    start = time.time()
    run("tools.make_synthetic", f"--output_dir={source}", f"--num_train={FLAGS.num_train}",
        f"--num_val={FLAGS.num_val}", f"--min_size={FLAGS.min_size}",
        f"--max_size={FLAGS.max_size}")
    run("tools.build_dataset", "--dataset=synthetic_voc", f"--manual_dir={source}",
        f"--data_dir={data_dir}")
    run("tools.train", f"--experiment={FLAGS.experiment}", f"--workdir={train_dir}", *sets)
    run("tools.evaluate", f"--experiment={FLAGS.experiment}", f"--workdir={train_dir}",
        f"--set=data.data_dir={data_dir}")
    run("tools.export", f"--workdir={train_dir}", f"--export_dir={train_dir}/export")
    with open(os.path.join(source, "ImageSets", "Segmentation", "val.txt")) as f:
        names = f.read().split()[:FLAGS.num_predict]
    inputs = ",".join(os.path.join(source, "JPEGImages", f"{n}.jpg") for n in names)
    run("tools.predict", f"--workdir={train_dir}", f"--input={inputs}",
        f"--output={predictions}")
    from deeplab_tf import classes
    sheet = contact_sheet(source, names, predictions, classes.read(train_dir),  # the run's
                          os.path.join(workdir, "contact_sheet.png"))
    curves = training_curves(train_dir, os.path.join(workdir, "training_curves.png"))
    logging.info("pictures: %s, %s", sheet, curves)
    print(f"\ndemo finished in {time.time() - start:.0f} s: TensorBoard logs in {train_dir}, "
          f"evaluation in {train_dir}/eval, SavedModel in {train_dir}/export, "
          f"masks in {predictions}, pictures {sheet} and {curves}")


if __name__ == "__main__":
    console.run(main, tensorflow=False)
