"""Initialisation from weights on local disk (paper 4.1: ImageNet-pretrained ResNet).

`load_init_weights(model, path)` accepts two kinds of file:

- A TF-slim `resnet_v1_50` / `resnet_v1_101` ImageNet checkpoint, the paper's starting
  point. Slim's variable `resnet_v1_101/block1/unit_1/bottleneck_v1/conv1/BatchNorm/gamma`
  is our layer `block1_unit_1_conv1_bn`, variable `gamma`: the scope with "/" -> "_",
  "bottleneck_v1" dropped, `BatchNorm` -> `_bn`, `weights` -> `kernel`. Both store
  convolution kernels as HWIO. The ImageNet classifier (`logits`), `global_step` and
  optimizer slots are skipped; the cascaded blocks 5-7 and the ASPP / logits head are not
  in an ImageNet checkpoint and keep their initialisation.
- A `.weights.h5` written by `model.save_weights` in an earlier run.

Either way the file is checked against the model first, and everything that does not
match (missing or unexpected variables, wrong shapes, a ResNet-50 checkpoint for a
ResNet-101 model) is reported in one error before any weight is touched.

TensorFlow is imported inside the slim reader only: importing `deeplab_tf.modeling` must
not import it (the GPU machine has none).
"""
import os
import re

import h5py
import numpy as np
from absl import logging

# conv1, conv1_bn, block3_unit_5_conv2, block3_unit_5_conv2_bn, block1_unit_1_shortcut(_bn).
_BACKBONE_LAYER = re.compile(
    r"^(?:conv1|block(?P<block>\d+)_unit_(?P<unit>\d+)_(?P<conv>conv[123]|shortcut))"
    r"(?P<bn>_bn)?$")
_SLIM_SCOPE = re.compile(r"^(resnet_v1_\d+)/")
IMAGENET_BLOCKS = 4  # block5-block7 are the paper's cascaded copies, not in ImageNet models
# Keras variable name -> slim variable name.
_SLIM_VARIABLE = {"kernel": "weights", "gamma": "gamma", "beta": "beta",
                  "moving_mean": "moving_mean", "moving_variance": "moving_variance"}
# Optimizer slots and moving averages that training writes next to each slim variable.
_SLOT_SUFFIX = re.compile(r"/(Momentum|Adam(_\d+)?|RMSProp(_\d+)?|Adagrad|Ftrl(_\d+)?|"
                          r"ExponentialMovingAverage)$")


class CheckpointMismatchError(ValueError):
    """The file on disk does not fit the model; the message lists every difference."""


def load_init_weights(model, path, fresh=()):
    """Initialises `model` from `path`: a TF-slim resnet_v1 checkpoint or a `.weights.h5`.

    Layers whose names start with a `fresh` prefix keep their initialisation (a new head
    for other classes); an ImageNet checkpoint never holds the head anyway.

    Args:
      model: a model from `deeplabv3` or `atrous_resnet`.
      path: a `.weights.h5` file, a slim checkpoint prefix (`.../resnet_v1_101.ckpt`, V1 or
        V2 format), or a directory holding one checkpoint.

    Returns:
      The number of variables loaded.

    Raises:
      FileNotFoundError: nothing at `path`.
      CheckpointMismatchError: the file does not fit the model; the message lists all
        missing, unexpected and wrongly shaped variables.
    """
    path = os.fspath(path)
    if path.endswith(".h5"):
        return load_weights_h5(model, path, fresh)
    return load_slim_checkpoint(model, path)


def _layers(model):
    """All leaf layers, looking inside nested models."""
    for layer in model.layers:
        if hasattr(layer, "layers"):
            yield from _layers(layer)
        else:
            yield layer


def slim_variable_name(scope, layer_name, variable_name):
    """The slim name of our variable, or None when it is not an ImageNet backbone variable.

    `slim_variable_name("resnet_v1_50", "block2_unit_1_shortcut_bn", "gamma")` is
    "resnet_v1_50/block2/unit_1/bottleneck_v1/shortcut/BatchNorm/gamma".
    """
    match = _BACKBONE_LAYER.match(layer_name)
    if not match or variable_name not in _SLIM_VARIABLE:
        return None
    if match["block"] is None:
        parts = [scope, "conv1"]
    elif int(match["block"]) <= IMAGENET_BLOCKS:
        parts = [scope, f"block{match['block']}", f"unit_{match['unit']}", "bottleneck_v1",
                 match["conv"]]
    else:
        return None
    if match["bn"]:
        parts.append("BatchNorm")
    parts.append(_SLIM_VARIABLE[variable_name])
    return "/".join(parts)


def _checkpoint_path(path):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    if os.path.isdir(path):
        latest = tf.train.latest_checkpoint(path)
        if latest is None:
            raise FileNotFoundError(f"No checkpoint in directory {path}")
        return latest
    # A V2 checkpoint is a prefix with .index/.data files, a V1 checkpoint a single file.
    path = re.sub(r"\.(index|data-\d+-of-\d+)$", "", path)
    if not (os.path.exists(path) or os.path.exists(path + ".index")):
        raise FileNotFoundError(f"No checkpoint at {path} (neither the file nor "
                                f"{path}.index exists)")
    return path


def _slim_scope(names, path):
    """The one `resnet_v1_<depth>` scope of a checkpoint's variables."""
    scopes = sorted({m.group(1) for m in map(_SLIM_SCOPE.match, names) if m})
    if len(scopes) == 1:
        return scopes[0]
    if not scopes:
        hint = ""
        if "_CHECKPOINTABLE_OBJECT_GRAPH" in names:
            hint = (" It is an object-based checkpoint (tf.train.Checkpoint); restore it with "
                    "tf.train.Checkpoint(model=model).restore(path).expect_partial().")
        raise CheckpointMismatchError(
            f"{path} holds no TF-slim resnet_v1_<depth>/... variables.{hint}")
    raise CheckpointMismatchError(f"{path} holds several ResNet scopes: {scopes}")


def load_slim_checkpoint(model, path):
    """Loads conv1 and blocks 1-4 from a TF-slim resnet_v1 ImageNet checkpoint.

    Returns the number of variables loaded; see the module docstring for the naming.
    """
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    path = _checkpoint_path(path)
    reader = tf.train.load_checkpoint(path)
    shapes = reader.get_variable_to_shape_map()
    scope = _slim_scope(list(shapes), path)

    expected, kept, problems = {}, [], []  # slim name -> Keras variable; layers kept
    for layer in _layers(model):
        if not layer.weights:
            continue
        names = [slim_variable_name(scope, layer.name, v.name) for v in layer.weights]
        if all(name is None for name in names):
            kept.append(layer.name)
            continue
        for name, variable in zip(names, layer.weights):
            if name is None:
                problems.append(f"{variable.path} has no TF-slim counterpart")
            else:
                expected[name] = variable
    if not expected:
        raise CheckpointMismatchError(
            f"Model {model.name} has no conv1 / block1-4 layers to load from {path}")

    model_depth = getattr(model, "depth", None)
    if model_depth is not None and scope != f"resnet_v1_{model_depth}":
        problems.append(f"the checkpoint is {scope}, the model is ResNet-{model_depth}")
    for name, variable in sorted(expected.items()):
        if name not in shapes:
            problems.append(f"missing in checkpoint: {name} (for {variable.path})")
        elif tuple(shapes[name]) != tuple(variable.shape):
            problems.append(f"wrong shape: {name} is {tuple(shapes[name])} in the checkpoint, "
                            f"{variable.path} needs {tuple(variable.shape)}")
    ignored = []
    for name in sorted(shapes):
        if name in expected:
            continue
        if (not name.startswith(scope + "/") or name.startswith(f"{scope}/logits/")
                or _SLOT_SUFFIX.search(name)):
            ignored.append(name)
        else:
            problems.append(f"unexpected in checkpoint: {name} {tuple(shapes[name])}")
    if problems:
        raise _mismatch(path, model, problems)

    for name, variable in expected.items():
        variable.assign(np.asarray(reader.get_tensor(name), dtype=variable.dtype))
    cascaded = [name for name in kept if name.startswith(("block5", "block6", "block7"))]
    logging.info(
        "Loaded %d variables of %s from %s. Skipped %d checkpoint variables (ImageNet "
        "logits, global_step, optimizer slots). Kept the initialisation of %d layers not in "
        "an ImageNet checkpoint: %d of cascaded blocks 5-7, %d of the head (%s).",
        len(expected), scope, path, len(ignored), len(kept), len(cascaded),
        len(kept) - len(cascaded),
        ", ".join(name for name in kept if name not in cascaded)[:400])
    return len(expected)


def _mismatch(path, model, problems):
    count = f"{len(problems)} difference{'s' if len(problems) > 1 else ''}"
    return CheckpointMismatchError(
        f"{path} does not match model {model.name} ({count}):\n  " + "\n  ".join(problems))


def _snake_case(name):
    # Keras' own rule for a layer's key in a weights file (keras.src.utils.naming).
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _h5_groups(model, prefix="layers/"):
    """{h5 group: layer} for every layer with variables, as `model.save_weights` writes.

    Keras keys a layer by its class name, numbered in `model.layers` order
    (`layers/conv2d_57/vars/0`), and stores the layer's name as an attribute of the group.
    """
    groups, used = {}, {}
    for layer in model.layers:
        base = _snake_case(type(layer).__name__)
        used[base] = used.get(base, -1) + 1
        group = prefix + (f"{base}_{used[base]}" if used[base] else base)
        if hasattr(layer, "layers"):
            groups.update(_h5_groups(layer, group + "/layers/"))
        elif layer.weights:
            groups[group] = layer
    return groups


def _read_h5(path):
    """{h5 group: (stored layer name or None, [arrays of vars/0, vars/1, ...])}."""
    contents = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Group) and name.endswith("/vars") and len(obj):
            contents[name[:-len("/vars")]] = (
                obj.attrs.get("name"), [obj[str(i)][()] for i in range(len(obj))])

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return contents


def load_weights_h5(model, path, fresh=()):
    """Loads a `.weights.h5` written by `model.save_weights`, layer by layer name.

    Keras itself matches layers by position; a file from a model whose layers differ would
    then fail deep inside Keras or, with equal shapes, load into the wrong layers. Here
    every layer is matched by the name Keras stores with it (by position only in files
    without names), and all differences are reported before anything is assigned.
    Returns the number of variables loaded.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No weights file at {path}")
    try:
        contents = _read_h5(path)
    except (OSError, KeyError) as error:
        raise CheckpointMismatchError(f"{path} is not a Keras .weights.h5 file: {error}")
    groups = _h5_groups(model)
    if all(name is not None for name, _ in contents.values()):
        stored = {str(name): (name, values) for name, values in contents.values()
                  if not str(name).startswith(tuple(fresh))}
        layers = {layer.name: layer for layer in groups.values()}
    else:
        stored = contents
        layers = groups
    # The layers that start fresh: not loaded, and their stored values not expected.
    for key in [k for k, layer in layers.items() if layer.name.startswith(tuple(fresh))]:
        del layers[key]
        stored.pop(key, None)
    problems = []
    for key, layer in layers.items():
        needed = [tuple(v.shape) for v in layer.weights]
        if key not in stored:
            problems.append(f"layer {layer.name}: missing in file (needs shapes {needed})")
            continue
        found = [tuple(a.shape) for a in stored[key][1]]
        if found != needed:
            problems.append(f"layer {layer.name}: file has shapes {found}, the model needs "
                            f"{needed}")
    for key in sorted(set(stored) - set(layers)):
        problems.append(f"unexpected in file: layer {key} with shapes "
                        f"{[tuple(a.shape) for a in stored[key][1]]}")
    if problems:
        raise _mismatch(path, model, problems)
    count = 0
    for key, layer in layers.items():
        for variable, value in zip(layer.weights, stored[key][1]):
            variable.assign(np.asarray(value, dtype=variable.dtype))
            count += 1
    logging.info("Loaded %d variables of %d layers from %s.", count, len(layers), path)
    return count
