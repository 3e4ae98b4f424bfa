"""Evaluates a training run's checkpoint: mIoU as in the paper (Section 4, Tables 4-7).

    python -m tools.evaluate --experiment=voc_stage1 --workdir=runs/voc_stage1 \
        --eval_output_stride=8 --eval_scales=0.5,0.75,1.0,1.25,1.5,1.75 --add_flipped_images
    python -m tools.evaluate --workdir=runs/demo --watch        # alongside training

The model is the one the run trained (WORKDIR/config.json; --experiment is needed only
when the work dir has none); OS / scales / flip default to the config's `eval` section.
Writes WORKDIR/eval/results.json, results_<step>.json and .txt (per-class table), the
per-class IoU as a bar chart (per_class_iou_<step>.png), and TensorBoard scalars in
WORKDIR/eval. Beside the mIoU it prints the paper's figure for the experiment's row at the
evaluated output stride, scales and flip, where the paper has one, and the run's
departures from the paper's recipe (deeplab_tf/recipe.py), e.g.
    Table 6, OS 8 + MS + flip: paper 79.77, this run 78.90, -0.87; departures: batch 8
"""
import os

from absl import app, flags, logging

from deeplab_tf import console

flags.DEFINE_string("experiment", None, "Experiment name; used when WORKDIR has no config.json.")
flags.DEFINE_string("workdir", None, "Training work dir (config.json, checkpoints/).")
flags.DEFINE_multi_string("set", [], "Config override key=value, e.g. data.data_dir=/data.")
flags.DEFINE_integer("eval_output_stride", None, "Output stride to evaluate at (paper: 8).")
flags.DEFINE_list("eval_scales", None, "Input scales, e.g. 0.5,0.75,1.0,1.25,1.5,1.75.")
flags.DEFINE_bool("add_flipped_images", None, "Also average left-right flipped inputs.")
flags.DEFINE_string("checkpoint", None, "A checkpoint prefix or directory (default: latest).")
flags.DEFINE_string("model_file", None, "Evaluate this exported .tflite/.onnx file instead "
                    "of a checkpoint (its own size; single scale, no flip).")
flags.DEFINE_bool("watch", False, "Keep evaluating each new checkpoint until the last step.")
flags.DEFINE_integer("watch_timeout", 3600, "--watch stops after this many seconds without "
                     "a new checkpoint.")
flags.mark_flag_as_required("workdir")
FLAGS = flags.FLAGS


def load_config():
    from deeplab_tf import config as config_lib
    from deeplab_tf import recipe
    from deeplab_tf.evaluation import checkpoints
    if os.path.exists(os.path.join(FLAGS.workdir, checkpoints.CONFIG_FILE)):
        config = checkpoints.read_config(FLAGS.workdir)
        recipe.paper_from_experiment(config, os.path.join(FLAGS.workdir,
                                                          checkpoints.CONFIG_FILE))
        if FLAGS.experiment and config.name and FLAGS.experiment != config.name:
            logging.warning("--experiment=%s, but %s was trained as %r; using its config.json",
                            FLAGS.experiment, FLAGS.workdir, config.name)
        config_lib.override(config, FLAGS.set)
    elif FLAGS.experiment:
        config = config_lib.load_experiment(FLAGS.experiment, FLAGS.set)
    else:
        raise FileNotFoundError(f"{FLAGS.workdir} has no config.json: name the --experiment "
                                f"it was trained with, or give its training work dir")
    config_lib.override_eval(config, FLAGS.eval_output_stride, FLAGS.eval_scales,
                             FLAGS.add_flipped_images)
    return config


def evaluate_checkpoint(config, checkpoint):
    from deeplab_tf.evaluation import run
    step, _, table = run.evaluate_checkpoint(config, FLAGS.workdir, checkpoint)
    print(table, flush=True)
    return step


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = load_config()
    from deeplab_tf import config as config_lib
    from deeplab_tf.evaluation import checkpoints
    if FLAGS.model_file:
        from deeplab_tf import classes
        from deeplab_tf.export import deploy
        table = classes.of_run(FLAGS.workdir, config)
        result, printed = deploy.evaluate_file(config, FLAGS.model_file, class_table=table)
        from deeplab_tf.evaluation import run
        config_lib.override_eval(config, scales=[1.0], flip=False)  # how a file runs
        print(printed + "\n" + run.paper_lines(config, result), flush=True)
        return
    if not FLAGS.watch:
        evaluate_checkpoint(config, checkpoints.resolve_checkpoint(FLAGS.workdir,
                                                                   FLAGS.checkpoint))
        return
    from deeplab_tf.evaluation import continuous
    continuous.watch(config, FLAGS.workdir, lambda c: evaluate_checkpoint(config, c),
                     timeout=FLAGS.watch_timeout, min_interval_secs=10)


if __name__ == "__main__":
    console.run(main)
