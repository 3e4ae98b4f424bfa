"""Trains an experiment (experiments/NAME.py) in a work dir.

    python -m tools.train --experiment=voc_stage1 --workdir=runs/voc_stage1
    python -m tools.train --experiment=smoke --workdir=/tmp/smoke \
        --set train.steps=400 --set train.checkpoint_every=20
    python -m tools.train --flagfile=run.flags

--strategy picks one device (default), this machine's devices (mirrored), synchronous
workers (multi_worker) or asynchronous parameter servers (parameter_server); the cluster
comes from TF_CONFIG, and every task of a cluster runs this same command: `chief` and
`worker` tasks train (under parameter_server the workers and `ps` tasks serve the chief),
an `evaluator` task evaluates each new checkpoint into WORKDIR/eval. The work dir must be
one directory every task sees at the same path. Running it again on the same work dir
resumes from the latest checkpoint (docs/clusters.md: what resumes how under each
strategy).
"""
import sys

from absl import app, flags, logging

from deeplab_tf import cluster, console
from deeplab_tf import config as config_lib  # no TensorFlow either
from deeplab_tf import recipe  # nor this

flags.DEFINE_string("experiment", None, "Module name in experiments/, e.g. voc_stage1.")
flags.DEFINE_string("workdir", None, "Work dir: config.json, checkpoints/, train/ events.")
flags.DEFINE_multi_string("set", [], "Config override key=value, e.g. train.steps=400.")
flags.DEFINE_enum("strategy", "default", cluster.STRATEGIES, "tf.distribute strategy.")
flags.DEFINE_bool("allow_config_change", False, "Resume a run although this command changes "
                  "its model, data or classes (refused otherwise; deeplab_tf/train/"
                  "run_records.py).")
flags.DEFINE_bool("recipe_only", False, "Print the run's departures from the paper's recipe "
                  "(deeplab_tf/recipe.py) and exit: no training, no files written.")
flags.mark_flags_as_required(["experiment", "workdir"])
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    # What can be refused without TensorFlow is refused before it loads (a second, not ten)
    # and before any cluster is joined.
    try:
        if FLAGS.recipe_only:  # checks a planned run: no cluster, TensorFlow or files
            config = config_lib.load_experiment(FLAGS.experiment, FLAGS.set)
            print(recipe.format_table(recipe.report(config)), flush=True)
            return
        role = cluster.task_role(FLAGS.strategy)
        if role != "serve":
            config = config_lib.load_experiment(FLAGS.experiment, FLAGS.set)
        if role == "train":
            config_lib.init_checkpoint_path(config)  # refuses an unset ImageNet start
            cluster.check_supported(config.train, FLAGS.strategy)
            recipe.report(config)  # refuses a bad paper section before TensorFlow loads
    except ValueError as error:
        raise app.UsageError(str(error)) from None
    tf = console.load_tensorflow(FLAGS.verbosity)
    from deeplab_tf import train
    from deeplab_tf.train import strategy as strategy_lib
    if role == "serve":
        strategy_lib.run_server()  # ps and worker tasks serve the chief until killed
        return
    if role == "train":
        try:
            config_lib.model_builder(config.model.builder)  # refuses one that cannot load
        except ValueError as error:
            raise app.UsageError(str(error)) from None
    if role == "evaluate":
        from deeplab_tf.evaluation import continuous
        logging.info("evaluator: evaluating each new checkpoint of %s", FLAGS.workdir)
        continuous.watch(config, FLAGS.workdir, skip_evaluated=True)
        return
    strategy = strategy_lib.make_strategy(FLAGS.strategy)
    # The strategy as the user named it, not its class (_DefaultDistributionStrategy).
    replicas = strategy.num_replicas_in_sync
    logging.info("training %s in %s with --strategy=%s (%d replica%s)", config.name,
                 FLAGS.workdir, FLAGS.strategy, replicas, "" if replicas == 1 else "s")
    recipe.announce(config)  # printed; the trainer keeps it in WORKDIR and TensorBoard
    try:
        train.train(config, FLAGS.workdir, strategy,
                    allow_config_change=FLAGS.allow_config_change)
    except train.NonFiniteLossError as error:
        logging.error("%s", error)
        sys.exit(3)
    except train.WorkersDisagreeError as error:
        logging.error("%s", error)
        sys.exit(5)
    except (tf.errors.UnavailableError, tf.errors.AbortedError) as error:
        if strategy_lib.kind(strategy) == "multi_worker":
            # A peer died: TensorFlow's heartbeats abort this worker's collectives.
            lost = cluster.lost_task(str(error), cluster.task_from_tf_config()) or "a worker"
            logging.error("lost %s: a worker of the multi_worker cluster stopped (%s), so "
                          "this one stops too. Restart every worker with the same command "
                          "(a cluster manager restarts the whole job): they resume from the "
                          "latest checkpoint in %s/checkpoints.", lost, type(error).__name__,
                          FLAGS.workdir)
            sys.exit(6)
        if not strategy_lib.is_parameter_server(strategy):
            raise
        logging.error("a parameter server is unreachable (%s: %s). Training stopped; "
                      "restart the parameter server(s) and this command: it resumes from "
                      "the latest checkpoint in %s/checkpoints.", type(error).__name__,
                      str(error).splitlines()[0][:200], FLAGS.workdir)
        sys.exit(4)


if __name__ == "__main__":
    console.run(main, tensorflow=False)  # loaded in main, after the refusals
