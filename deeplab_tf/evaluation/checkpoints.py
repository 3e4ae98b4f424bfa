"""Restoring a trained model from a work dir at any output stride (paper 3.1, 4.1).

The paper trains at output stride 16 and evaluates the same weights at output stride 8.
Keras 3 checkpoints key each variable by the layer's position in `model.operations`
(`model/_operations/200/_kernel/...`), and the model at OS 8 has fewer layers than at OS 16
(a strided `conv2d_same` adds a padding layer), so an OS 16 checkpoint cannot be read into
an OS 8 model directly. We restore into the model at the checkpoint's own output stride,
then copy the weights layer by layer by name: the names, and the set of weights, do not
depend on the output stride.
"""
import os

import tensorflow as tf

from deeplab_tf import config as config_lib

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"


def read_config(workdir):
    """The `ExperimentConfig` a training run wrote to WORKDIR/config.json."""
    path = os.path.join(workdir, CONFIG_FILE)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"{path} not found: is {workdir!r} a training work dir?")
    with tf.io.gfile.GFile(path) as f:
        return config_lib.from_json(f.read())


def latest_checkpoint(workdir):
    """Path of the newest checkpoint in WORKDIR/checkpoints; a clear error if there is none."""
    directory = os.path.join(workdir, CHECKPOINT_DIR)
    path = tf.train.latest_checkpoint(directory)
    if path is None:
        raise FileNotFoundError(f"no checkpoint in {directory}")
    return path


def resolve_checkpoint(workdir, checkpoint=None):
    """`checkpoint` (a file prefix or a directory) or else the work dir's latest."""
    if not checkpoint:
        return latest_checkpoint(workdir)
    if tf.io.gfile.isdir(checkpoint):
        path = tf.train.latest_checkpoint(checkpoint)
        if path is None:
            raise FileNotFoundError(f"no checkpoint in {checkpoint}")
        return path
    if not tf.io.gfile.exists(checkpoint + ".index"):
        raise FileNotFoundError(f"checkpoint {checkpoint} not found ({checkpoint}.index)")
    return checkpoint


def _checkpoint_class_count(model, path):
    """Number of classes of the logits layer stored in `path`, or None if not found."""
    index = model.operations.index(model.get_layer("logits"))
    key = f"model/_operations/{index}/bias/.ATTRIBUTES/VARIABLE_VALUE"
    shapes = dict(tf.train.list_variables(path))
    return shapes[key][0] if key in shapes else None


def _restore(model, path):
    try:
        status = tf.train.Checkpoint(model=model).restore(path)
        status.expect_partial()  # the optimizer and step are not needed here
        status.assert_existing_objects_matched()
    except (ValueError, AssertionError) as error:
        classes = _checkpoint_class_count(model, path)
        if classes is not None and classes != model.num_classes:
            raise ValueError(
                f"checkpoint {path} holds a model with {classes} classes, but the config "
                f"asks for {model.num_classes} (model.num_classes)") from None
        raise ValueError(f"checkpoint {path} does not match the configured model "
                         f"(depth {model.depth}, head {model.head}, {model.num_classes} "
                         f"classes): {error}") from None


def copy_weights(source, target, fresh=()):
    """Copies every weighted layer of `source` into the same-named layer of `target`.

    Layers whose names start with one of the `fresh` prefixes are not copied: they keep
    their initialisation in `target` (fine-tuning with a new head). Returns their names.
    """
    source_layers = {layer.name: layer for layer in source.layers if layer.weights
                     and not layer.name.startswith(tuple(fresh))}
    target_layers = {layer.name: layer for layer in target.layers if layer.weights}
    kept = sorted(name for name in target_layers if name.startswith(tuple(fresh)))
    for name in kept:
        del target_layers[name]
    if source_layers.keys() != target_layers.keys():
        missing = sorted(source_layers.keys() ^ target_layers.keys())
        raise ValueError(f"the models differ in their weighted layers: {missing[:5]}")
    for name, layer in target_layers.items():  # every layer checked before any is set
        shapes = [tuple(v.shape) for v in source_layers[name].weights]
        needed = [tuple(v.shape) for v in layer.weights]
        if shapes != needed:
            raise ValueError(f"layer {name}: shapes {shapes} in the source model, {needed} "
                             f"in the target")
    for name, layer in target_layers.items():
        layer.set_weights(source_layers[name].get_weights())
    return kept


def restore_model(model_config, checkpoint, output_stride="train"):
    """A DeepLabv3 model with the weights of `checkpoint`, built at `output_stride`.

    Args:
      model_config: the `ModelConfig` the checkpoint was trained with.
      checkpoint: a checkpoint file prefix (as CheckpointManager writes them).
      output_stride: "train" (the configured one) or the stride to evaluate at, e.g. 8.
    """
    trained = config_lib.build_model(model_config)
    _restore(trained, checkpoint)
    if output_stride == "train" or output_stride == model_config.output_stride:
        return trained
    model = config_lib.build_model(model_config, output_stride=output_stride)
    copy_weights(trained, model)
    return model
