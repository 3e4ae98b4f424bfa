"""Checkpoints of a training run: WORKDIR/checkpoints via tf.train.CheckpointManager.

A checkpoint holds `model`, `optimizer` (momentum slots), `step` (the loop's int64 step
counter) and, where the strategy allows it, `iterator` (the tf.data iterator: the shuffle
buffer and the element counter that seeds the stateless augmentation), so a restarted job
continues with the exact data stream it would have seen.

Why a crash cannot leave a half checkpoint as the latest (read from TF 2.21's sources):
`Checkpoint.write` saves the shards into `ckpt-N_temp/` and `MergeV2Checkpoints` then
moves them to `ckpt-N.data-*` and writes `ckpt-N.index`; only after that write returns does
CheckpointManager's write callback rewrite the `checkpoint` state file, with
`file_io.atomic_write_string_to_file` (a temp file renamed over the old one). Restores go
through that state file (`manager.latest_checkpoint`), never through a directory listing,
so files of an interrupted save are ignored (tests/test_train_checkpoint.py checks this).
"""
import importlib
import os

import tensorflow as tf
from absl import logging

CHECKPOINT_DIR = "checkpoints"


def checkpoint_dir(workdir):
    return os.path.join(workdir, CHECKPOINT_DIR)


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


def make_manager(directory, model, optimizer, step, iterator=None, max_to_keep=5):
    objects = dict(model=model, optimizer=optimizer, step=step)
    if iterator is not None:
        objects["iterator"] = iterator
    checkpoint = tf.train.Checkpoint(**objects)
    return tf.train.CheckpointManager(checkpoint, directory, max_to_keep=max_to_keep,
                                      checkpoint_name="ckpt")


def restore_latest(manager):
    """Restores everything from the manager's latest checkpoint; returns its path or None."""
    latest = manager.latest_checkpoint
    if latest:
        manager.checkpoint.restore(latest).assert_existing_objects_matched()
    return latest


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
