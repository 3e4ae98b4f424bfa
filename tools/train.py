"""Trains an experiment (experiments/NAME.py) in a work dir.

    python -m tools.train --experiment=voc_stage1 --workdir=runs/voc_stage1
    python -m tools.train --experiment=smoke --workdir=/tmp/smoke \
        --set train.steps=400 --set train.checkpoint_every=20
    python -m tools.train --flagfile=run.flags

--strategy picks one device (default), this machine's devices (mirrored), synchronous
workers (multi_worker) or asynchronous parameter servers (parameter_server); the cluster
comes from TF_CONFIG, and every task of a cluster runs this same command. Running it again
on the same work dir resumes from the latest checkpoint.
"""
import sys

from absl import app, flags, logging

from deeplab_tf.train import strategy as strategy_lib

flags.DEFINE_string("experiment", None, "Module name in experiments/, e.g. voc_stage1.")
flags.DEFINE_string("workdir", None, "Work dir: config.json, checkpoints/, train/ events.")
flags.DEFINE_multi_string("set", [], "Config override key=value, e.g. train.steps=400.")
flags.DEFINE_enum("strategy", "default", strategy_lib.STRATEGIES, "tf.distribute strategy.")
flags.mark_flags_as_required(["experiment", "workdir"])
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if strategy_lib.is_server_task(FLAGS.strategy):
        strategy_lib.run_server()  # ps and worker tasks serve the chief until killed
        return
    # Imports after the server branch: a server task needs none of the model code.
    import tensorflow as tf
    from deeplab_tf import config as config_lib
    from deeplab_tf import train
    try:
        config = config_lib.load_experiment(FLAGS.experiment, FLAGS.set)
        config_lib.init_checkpoint_path(config)  # refuses an unset ImageNet start
    except ValueError as error:
        raise app.UsageError(str(error)) from None
    strategy = strategy_lib.make_strategy(FLAGS.strategy)
    logging.info("training %s in %s with %s (%d replicas)", config.name, FLAGS.workdir,
                 type(strategy).__name__, strategy.num_replicas_in_sync)
    try:
        train.train(config, FLAGS.workdir, strategy)
    except train.NonFiniteLossError as error:
        logging.error("%s", error)
        sys.exit(3)
    except (tf.errors.UnavailableError, tf.errors.AbortedError) as error:
        if not strategy_lib.is_parameter_server(strategy):
            raise
        logging.error("a parameter server is unreachable (%s: %s). Training stopped; "
                      "restart the parameter server(s) and this command: it resumes from "
                      "the latest checkpoint in %s/checkpoints.", type(error).__name__,
                      str(error).splitlines()[0][:200], FLAGS.workdir)
        sys.exit(4)


if __name__ == "__main__":
    app.run(main)
