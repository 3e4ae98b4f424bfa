"""The main job end to end on the embedded default: synthetic data, CPU, a few minutes.

    python -m tools.demo --workdir=runs/demo

Runs, each as its own command (printed first, so every step can be rerun by hand):
make the synthetic VOC-layout set, build it as a TFDS data set, train the `demo`
experiment, evaluate it (mIoU), export a SavedModel, and predict coloured masks for a few
validation images with the exported model's weights.
"""
import os
import shlex
import subprocess
import sys
import time

from absl import app, flags

flags.DEFINE_string("workdir", "runs/demo", "Where everything is written.")
flags.DEFINE_string("experiment", "demo", "Experiment to train.")
flags.DEFINE_multi_string("set", [], "Overrides for the training run, e.g. train.steps=50.")
flags.DEFINE_integer("num_predict", 4, "Validation images to predict at the end.")
FLAGS = flags.FLAGS


def run(*args):
    command = [sys.executable, "-m", *args]
    print(f"\n$ {shlex.join(['python', '-m', *args])}", flush=True)
    start = time.time()
    subprocess.run(command, check=True)
    print(f"  ({time.time() - start:.0f} s)", flush=True)


def main(argv):
    del argv
    workdir = os.path.abspath(FLAGS.workdir)
    source = os.path.join(workdir, "synthetic_src")
    data_dir = os.path.join(workdir, "tfds")
    train_dir = os.path.join(workdir, "train_run")
    sets = [f"--set=data.data_dir={data_dir}"] + [f"--set={s}" for s in FLAGS.set]
    start = time.time()
    run("tools.make_synthetic", f"--output_dir={source}")
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
        f"--output={workdir}/predictions")
    print(f"\ndemo finished in {time.time() - start:.0f} s: TensorBoard logs in {train_dir}, "
          f"evaluation in {train_dir}/eval, SavedModel in {train_dir}/export, "
          f"masks in {workdir}/predictions")


if __name__ == "__main__":
    app.run(main)
