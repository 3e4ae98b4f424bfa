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


# Architecture fields that decide which weighted layers a DeepLabv3 has; atrous rates and
# the output stride add no weights, so they may differ between the runs.
_WEIGHT_FIELDS = ("builder", "depth", "head", "extra_blocks", "image_pooling")
FRESH_OPTION = "train.initialize_last_layer=false"


def last_layers(train_config):
    """The layer-name prefixes that start fresh instead of loading init_checkpoint: none
    by default; with initialize_last_layer=False the head, or only the logits with
    last_layers_contain_logits_only (the authors' train.py options)."""
    from deeplab_tf.train import optimizer
    if train_config.initialize_last_layer:
        return ()
    if train_config.last_layers_contain_logits_only:
        return (optimizer.LOGITS_LAYER,)
    return optimizer.HEAD_LAYER_PREFIXES


def class_count(model):
    """The number of classes of a model: the filters of its `logits` layer."""
    return int(model.get_layer("logits").weights[0].shape[-1])


def _refuse_other_classes(source_classes, model, path):
    if source_classes != class_count(model):
        raise ValueError(
            f"train.init_checkpoint={path} holds a model of {source_classes} classes, this "
            f"run's has {class_count(model)}: --set {FRESH_OPTION} starts the head (with "
            f"train.last_layers_contain_logits_only=true only the logits) fresh and loads "
            f"the rest")


def _load_run_weights(model, workdir, prefix, fresh, model_config=None):
    """The model weights of a training run's checkpoint, whatever its output stride.

    Keras 3 keys a model's variables by layer position, and the layer list depends on the
    output stride (a strided conv2d_same adds a padding layer), so the stage 1 model (OS
    16) is rebuilt from the run's config.json, restored, and copied by layer name; the
    layers named by the `fresh` prefixes keep their initialisation. Returns their names.
    """
    from deeplab_tf.evaluation import checkpoints as run_checkpoints
    if tf.io.gfile.exists(os.path.join(workdir, "config.json")):
        trained_config = run_checkpoints.read_config(workdir)
        if model_config is not None:
            differ = [f"model.{f}={getattr(trained_config.model, f)!r}" for f in _WEIGHT_FIELDS
                      if getattr(trained_config.model, f) != getattr(model_config, f)]
            if differ:
                raise ValueError(f"train.init_checkpoint={workdir} was trained with "
                                 f"{', '.join(differ)}; this run differs: --set those values")
        source = run_checkpoints.restore_model(trained_config.model, prefix)
        if not fresh:
            _refuse_other_classes(class_count(source), model, workdir)
        return run_checkpoints.copy_weights(source, model, fresh)
    if fresh:  # a bare checkpoint directory: it must be of this very model
        raise ValueError(f"train.init_checkpoint={workdir}: {FRESH_OPTION} needs the run's "
                         f"work dir (with its config.json) to rebuild the trained model")
    status = tf.train.Checkpoint(model=model).restore(prefix).expect_partial()
    status.assert_existing_objects_matched()
    return []


def _run_of(prefix):
    """The work dir of an object-based checkpoint prefix WORKDIR/checkpoints/ckpt-N, or
    None for any other file (a TF-slim checkpoint)."""
    names = dict(tf.train.list_variables(prefix))
    if "_CHECKPOINTABLE_OBJECT_GRAPH" not in names:
        return None
    directory = os.path.dirname(prefix)
    if os.path.basename(directory.rstrip("/")) == CHECKPOINT_DIR:
        return os.path.dirname(directory.rstrip("/"))
    return directory


def load_init_weights(model, path, train_config=None, model_config=None):
    """Initialises the model from `path` before step 0 (config `train.init_checkpoint`).

    A work dir (or a directory of tf.train checkpoints) gives the model weights of its
    latest checkpoint, a checkpoint prefix in one (WORKDIR/checkpoints/ckpt-N) that
    checkpoint's: stage 2 of the protocol (OS 8) starts from stage 1 (OS 16) this way;
    atrous rates add no weights. Other paths (a TF-slim ImageNet checkpoint, a
    .weights.h5) go to `deeplab_tf.modeling.checkpoints`. With `train_config`'s
    initialize_last_layer=False the last layers (`last_layers`) start fresh, and the log
    names them; without it a checkpoint of another class count is refused.
    """
    fresh = last_layers(train_config) if train_config is not None else ()
    prefix = None
    if tf.io.gfile.isdir(path):
        prefix = latest_checkpoint(path)
        if prefix is None:
            raise FileNotFoundError(f"train.init_checkpoint={path!r}: a directory without "
                                    f"checkpoints (looked in {checkpoint_dir(path)})")
        workdir = path
    elif not (tf.io.gfile.exists(path) or tf.io.gfile.exists(path + ".index")):
        raise FileNotFoundError(f"train.init_checkpoint={path!r} does not exist")
    elif not path.endswith(".h5") and tf.io.gfile.exists(path + ".index"):
        workdir = _run_of(path)
        prefix = path if workdir else None
    if prefix is not None:
        started_fresh = _load_run_weights(model, workdir, prefix, fresh, model_config)
    else:
        checkpoints = importlib.import_module("deeplab_tf.modeling.checkpoints")
        try:
            checkpoints.load_init_weights(model, path, fresh=fresh)
        except checkpoints.CheckpointMismatchError as error:
            if not fresh and "layer logits: file has shapes" in str(error):
                raise ValueError(f"train.init_checkpoint={path} holds logits of another "
                                 f"class count than this run's {class_count(model)}: --set "
                                 f"{FRESH_OPTION} starts the head fresh") from None
            raise
        started_fresh = [layer.name for layer in model.layers
                         if layer.weights and fresh and layer.name.startswith(fresh)]
        prefix = path
    logging.info("initialised the model from %s", prefix)
    if started_fresh:
        logging.info("started fresh (%s): %s", FRESH_OPTION, ", ".join(started_fresh))
    return prefix, list(started_fresh)
