"""Checkpoints of a training run: WORKDIR/checkpoints via tf.train.CheckpointManager.

A checkpoint ckpt-N holds `model`, `optimizer` (momentum slots; the loss scale under
mixed_float16) and `step` = N (the loop's int64 step counter), and what each strategy can
add to resume its data:

  default           `iterator`: the tf.data iterator, checkpointed symbolically (the
                    shuffle buffer's encoded examples and each stage's position; the
                    decoded crops in flight are recomputed on restore). The run resumes
                    exactly: its later losses equal those of an uninterrupted run.
  mirrored,         no iterator (tf.distribute's distributed iterators are not
  multi_worker      trackable): the weights, momentum and step resume exactly; the data
                    stream is drawn afresh, seeded by train.seed and the restored step.
  parameter_server  `data_streams`, the counter that gives each worker dataset its own
                    stream id; the weights, momentum and step resume exactly as saved
                    (the loop saves only with no step in flight), each worker then draws
                    a stream never used before.

Every task restores from the chief's directory, so the work dir must be one directory
that every task reads and writes at the same path (a network file system, GCS, ...), as
TensorFlow's multi-worker guide assumes. Under multi_worker, the non-chief workers also
save (TensorFlow requires every worker to take part in a save) into a scratch directory
they delete at once, and after a restore the workers compare the steps they restored and
stop with an error naming the work dir when they differ.

Why a crash cannot leave a half checkpoint as the latest (read from TF 2.21's sources):
`Checkpoint.write` saves the shards into `ckpt-N_temp/` and `MergeV2Checkpoints` then
moves them to `ckpt-N.data-*` and writes `ckpt-N.index`; only after that write returns does
CheckpointManager's write callback rewrite the `checkpoint` state file, with
`file_io.atomic_write_string_to_file` (a temp file renamed over the old one). Restores go
through that state file (`latest_checkpoint`), never through a directory listing, so files
of an interrupted save are ignored (tests/test_train.py checks this).
"""
import importlib
import os

import tensorflow as tf
from absl import logging

CHECKPOINT_DIR = "checkpoints"
SCRATCH_DIR = "replicas"


class WorkersDisagreeError(RuntimeError):
    """The workers of a synchronous cluster restored different checkpoints."""


def checkpoint_dir(workdir):
    return os.path.join(workdir, CHECKPOINT_DIR)


def save_dir(workdir, is_chief, task_index):
    """Where a task saves: the chief in WORKDIR/checkpoints, another multi_worker task in
    a scratch directory of its own, deleted after each save (`remove_scratch`)."""
    if is_chief:
        return checkpoint_dir(workdir)
    return os.path.join(workdir, SCRATCH_DIR, f"worker_{task_index}")


def remove_scratch(manager):
    tf.io.gfile.rmtree(manager.directory)


def symbolic(dataset):
    """`dataset` with symbolic iterator checkpoints: buffered decoded batches are not
    stored but recomputed from the input positions on restore (the same elements)."""
    options = tf.data.Options()
    options.experimental_symbolic_checkpoint = True
    return dataset.with_options(options)


def latest_checkpoint(path):
    """The latest checkpoint prefix of a work dir (or of a checkpoint directory), or None."""
    for directory in (checkpoint_dir(path), path):
        if tf.io.gfile.isdir(directory):
            latest = tf.train.latest_checkpoint(directory)
            if latest:
                return latest
    return None


def checkpoint_step(prefix):
    """The step number N of a `.../ckpt-N` prefix (the manager numbers saves by step)."""
    return int(prefix.rsplit("-", 1)[1])


def make_manager(directory, model, optimizer, step, iterator=None, data_streams=None,
                 max_to_keep=5):
    objects = dict(model=model, optimizer=optimizer, step=step, iterator=iterator,
                   data_streams=data_streams)
    checkpoint = tf.train.Checkpoint(**{k: v for k, v in objects.items() if v is not None})
    return tf.train.CheckpointManager(checkpoint, directory, max_to_keep=max_to_keep,
                                      checkpoint_name="ckpt")


def restore_latest(checkpoint, workdir):
    """Restores `checkpoint` from the work dir's latest (the chief's); returns its path or
    None."""
    latest = tf.train.latest_checkpoint(checkpoint_dir(workdir))
    if latest:
        checkpoint.restore(latest).assert_existing_objects_matched()
    return latest


def check_workers_agree(strategy, step, latest, workdir, task_index):
    """Gathers the step every worker restored; raises WorkersDisagreeError on all of them
    when they differ (they would otherwise train different step ranges and hang in the
    collectives, or silently hold different weights)."""
    local = tf.constant([step], tf.int64)
    per_replica = strategy.experimental_distribute_values_from_function(lambda _: local)
    steps = strategy.gather(per_replica, axis=0).numpy().tolist()
    if len(set(steps)) > 1:
        raise WorkersDisagreeError(
            f"the workers restored different steps {steps} (one per replica); this "
            f"worker (task {task_index}) found {latest or 'no checkpoint'} in "
            f"{checkpoint_dir(workdir)}. Every worker reads the chief's checkpoints there: "
            f"the work dir must be one shared directory (a network file system, GCS, ...) "
            f"at the same path on every worker.")
    return steps[0]


def _load_run_weights(model, workdir, prefix):
    """The model weights of a training run's checkpoint, whatever its output stride.

    Keras 3 keys a model's variables by layer position, and the layer list depends on the
    output stride (a strided conv2d_same adds a padding layer), so the stage 1 model (OS
    16) is rebuilt from the run's config.json, restored, and copied by layer name.
    """
    from deeplab_tf.evaluation import checkpoints as run_checkpoints
    if tf.io.gfile.exists(os.path.join(workdir, "config.json")):
        trained_config = run_checkpoints.read_config(workdir)
        source = run_checkpoints.restore_model(trained_config.model, prefix)
        run_checkpoints.copy_weights(source, model)
    else:  # a bare checkpoint directory: it must be of this very model
        status = tf.train.Checkpoint(model=model).restore(prefix).expect_partial()
        status.assert_existing_objects_matched()


def load_init_weights(model, path):
    """Initialises the model from `path` before step 0 (config `train.init_checkpoint`).

    A work dir (or a directory of tf.train checkpoints) gives the model weights of its
    latest checkpoint: stage 2 of the protocol (OS 8) starts from stage 1 (OS 16) this
    way; atrous rates add no weights. Other paths (a TF-slim
    ImageNet checkpoint, a .weights.h5) go to `deeplab_tf.modeling.checkpoints`.
    """
    if tf.io.gfile.isdir(path):
        latest = latest_checkpoint(path)
        if latest is None:
            raise FileNotFoundError(f"train.init_checkpoint={path!r}: a directory without "
                                    f"checkpoints (looked in {checkpoint_dir(path)})")
        _load_run_weights(model, path, latest)
        logging.info("initialised the model from %s", latest)
        return latest
    if not (tf.io.gfile.exists(path) or tf.io.gfile.exists(path + ".index")):
        raise FileNotFoundError(f"train.init_checkpoint={path!r} does not exist")
    checkpoints = importlib.import_module("deeplab_tf.modeling.checkpoints")
    checkpoints.load_init_weights(model, path)
    logging.info("initialised the model from %s", path)
    return path
