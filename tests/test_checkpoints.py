"""Initialisation from TF-slim resnet_v1 checkpoints and .weights.h5 files (paper 4.1).

The slim checkpoints are written here with tf.compat.v1.train.Saver, as slim did, with
variable names and shapes laid out from slim's resnet_v1_50 definition (independently of
the loader's name mapping).
"""
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
import tensorflow as tf

from deeplab_tf import modeling
from deeplab_tf.modeling import checkpoints

UNITS_50 = (3, 4, 6, 3)
BASE_DEPTHS = (64, 128, 256, 512)
BN_VARIABLES = ("gamma", "beta", "moving_mean", "moving_variance")


def slim_resnet_v1_50(rng, scope="resnet_v1_50"):
    """{slim variable name: random value} for an ImageNet resnet_v1_50 checkpoint."""
    variables = {}

    def conv(name, shape):
        variables[f"{name}/weights"] = rng.standard_normal(shape).astype(np.float32)
        for bn in BN_VARIABLES:
            variables[f"{name}/BatchNorm/{bn}"] = rng.uniform(
                0.5, 1.5, shape[-1]).astype(np.float32)

    conv(f"{scope}/conv1", (7, 7, 3, 64))
    depth_in = 64
    for b, (num_units, base) in enumerate(zip(UNITS_50, BASE_DEPTHS), start=1):
        for u in range(1, num_units + 1):
            unit = f"{scope}/block{b}/unit_{u}/bottleneck_v1"
            if depth_in != 4 * base:
                conv(f"{unit}/shortcut", (1, 1, depth_in, 4 * base))
            conv(f"{unit}/conv1", (1, 1, depth_in, base))
            conv(f"{unit}/conv2", (3, 3, base, base))
            conv(f"{unit}/conv3", (1, 1, base, 4 * base))
            depth_in = 4 * base
    return variables


def imagenet_extras(rng, scope="resnet_v1_50"):
    """What an ImageNet training run leaves beside the backbone; the loader skips it."""
    return {f"{scope}/logits/weights": rng.standard_normal((1, 1, 2048, 1000)).astype(
                np.float32),
            f"{scope}/logits/biases": np.zeros(1000, np.float32),
            f"{scope}/conv1/weights/Momentum": np.zeros((7, 7, 3, 64), np.float32),
            "global_step": np.int64(600000)}


def write_slim_checkpoint(variables, prefix, version="V2"):
    """Saves `variables` under exactly their names, like a TF-slim training run."""
    os.makedirs(os.path.dirname(prefix), exist_ok=True)
    with tf.Graph().as_default():
        placeholders, var_list = {}, {}
        for name, value in variables.items():
            value = np.asarray(value)
            placeholder = tf.compat.v1.placeholder(value.dtype, value.shape)
            var_list[name] = tf.compat.v1.Variable(placeholder)
            placeholders[placeholder] = value
        saver = tf.compat.v1.train.Saver(
            var_list=var_list, write_version=getattr(tf.compat.v1.train.SaverDef, version))
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer(), feed_dict=placeholders)
            return saver.save(session, prefix, write_meta_graph=False)


def keras_name(slim_name):
    """("block1_unit_1_conv1_bn", "gamma") for resnet_v1_50/block1/unit_1/.../BatchNorm/gamma."""
    parts = slim_name.split("/")[1:]
    variable = {"weights": "kernel"}.get(parts[-1], parts[-1])
    parts = [p for p in parts[:-1] if p != "bottleneck_v1"]
    layer = "_".join(parts).replace("_BatchNorm", "_bn")
    return layer, variable


def weight(model, layer, variable):
    (match,) = [w for w in model.get_layer(layer).weights if w.name == variable]
    return np.asarray(match)


def snapshot(model):
    return {w.path: np.array(w) for w in model.weights}


@pytest.fixture(scope="module")
def model():
    # One block5 copy as well: cascaded blocks are not in ImageNet checkpoints.
    return modeling.deeplabv3(num_classes=3, depth=50, extra_blocks=1, output_stride=16,
                              image_shape=(33, 33, 3))


@pytest.fixture(scope="module")
def imagenet_variables():
    return slim_resnet_v1_50(np.random.default_rng(0))


def test_slim_checkpoint_initialises_every_backbone_weight(model, imagenet_variables,
                                                           tmp_path):
    # Released slim ImageNet checkpoints are in the V1 format (one file).
    rng = np.random.default_rng(1)
    prefix = write_slim_checkpoint({**imagenet_variables, **imagenet_extras(rng)},
                                   str(tmp_path / "resnet_v1_50.ckpt"), version="V1")
    before = snapshot(model)
    loaded = checkpoints.load_init_weights(model, prefix)

    assert loaded == len(imagenet_variables) == 53 * 5  # 53 convs, each with BN
    for name, value in imagenet_variables.items():
        np.testing.assert_array_equal(weight(model, *keras_name(name)), value, err_msg=name)
    # Every variable of conv1 and blocks 1-4 came from the checkpoint ...
    backbone = {w.path for layer in model.layers for w in layer.weights
                if layer.name.startswith(("conv1", "block1", "block2", "block3", "block4"))}
    assert backbone == {"/".join(keras_name(name)) for name in imagenet_variables}
    # ... and nothing else changed: block5, ASPP and logits keep their initialisation.
    after = snapshot(model)
    untouched = set(before) - backbone
    assert any(p.startswith("block5") for p in untouched)
    assert any(p.startswith("logits") for p in untouched)
    for path in untouched:
        np.testing.assert_array_equal(after[path], before[path], err_msg=path)


def test_checkpoint_directory_is_read_through_its_latest_checkpoint(model, imagenet_variables,
                                                                    tmp_path):
    write_slim_checkpoint(imagenet_variables, str(tmp_path / "ckpt" / "model.ckpt"))
    assert checkpoints.load_init_weights(model, tmp_path / "ckpt") == 265


def test_mismatched_checkpoint_lists_every_problem_and_loads_nothing(model,
                                                                     imagenet_variables,
                                                                     tmp_path):
    variables = dict(imagenet_variables)
    missing = "resnet_v1_50/block3/unit_2/bottleneck_v1/conv2/BatchNorm/moving_variance"
    del variables[missing]
    wrong_shape = "resnet_v1_50/block2/unit_1/bottleneck_v1/shortcut/weights"
    variables[wrong_shape] = np.zeros((1, 1, 256, 256), np.float32)
    extra = "resnet_v1_50/block3/unit_7/bottleneck_v1/conv1/weights"
    variables[extra] = np.zeros((1, 1, 1024, 256), np.float32)
    prefix = write_slim_checkpoint(variables, str(tmp_path / "bad" / "resnet_v1_50.ckpt"))

    before = snapshot(model)
    with pytest.raises(checkpoints.CheckpointMismatchError) as error:
        checkpoints.load_init_weights(model, prefix)
    message = str(error.value)
    assert "(3 differences)" in message
    assert f"missing in checkpoint: {missing}" in message
    assert f"wrong shape: {wrong_shape} is (1, 1, 256, 256)" in message
    assert "needs (1, 1, 256, 512)" in message
    assert f"unexpected in checkpoint: {extra}" in message
    after = snapshot(model)
    assert all(np.array_equal(after[p], before[p]) for p in before)


def test_checkpoint_of_another_depth_is_refused(model, imagenet_variables, tmp_path):
    # Variables under resnet_v1_101 for a ResNet-50 model: even where every name the
    # model needs is there, the depths differ and the error says so.
    renamed = {name.replace("resnet_v1_50", "resnet_v1_101"): value
               for name, value in imagenet_variables.items()}
    prefix = write_slim_checkpoint(renamed, str(tmp_path / "101" / "resnet_v1_101.ckpt"))
    with pytest.raises(checkpoints.CheckpointMismatchError,
                       match="the checkpoint is resnet_v1_101, the model is ResNet-50"):
        checkpoints.load_init_weights(model, prefix)


def test_checkpoint_without_resnet_variables(model, tmp_path):
    prefix = write_slim_checkpoint({"vgg_16/conv1/conv1_1/weights": np.zeros((3, 3, 3, 64),
                                                                             np.float32)},
                                   str(tmp_path / "vgg" / "vgg_16.ckpt"))
    with pytest.raises(checkpoints.CheckpointMismatchError, match="no TF-slim resnet_v1"):
        checkpoints.load_init_weights(model, prefix)
    with pytest.raises(FileNotFoundError, match="nothing_here"):
        checkpoints.load_init_weights(model, tmp_path / "nothing_here.ckpt")


def test_weights_h5_round_trip_and_mismatch(model, tmp_path):
    rng = np.random.default_rng(2)
    for w in model.weights:
        w.assign(rng.standard_normal(w.shape).astype(np.float32))
    path = str(tmp_path / "run.weights.h5")
    model.save_weights(path)

    same = modeling.deeplabv3(num_classes=3, depth=50, extra_blocks=1, output_stride=8,
                              image_shape=(33, 33, 3))
    assert checkpoints.load_init_weights(same, path) == len(model.weights)
    for a, b in zip(model.weights, same.weights):
        assert a.path == b.path
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)

    other = modeling.deeplabv3(num_classes=5, depth=50, extra_blocks=1,
                               image_shape=(33, 33, 3))
    with pytest.raises(checkpoints.CheckpointMismatchError) as error:
        checkpoints.load_init_weights(other, path)
    message = str(error.value)
    assert "(1 difference)" in message
    assert ("layer logits: file has shapes [(1, 1, 256, 3), (3,)], "
            "the model needs [(1, 1, 256, 5), (5,)]") in message


def test_weights_h5_of_a_model_without_block5(model, tmp_path):
    path = str(tmp_path / "with_block5.weights.h5")
    model.save_weights(path)
    smaller = modeling.deeplabv3(num_classes=3, depth=50, image_shape=(33, 33, 3))
    with pytest.raises(checkpoints.CheckpointMismatchError) as error:
        checkpoints.load_init_weights(smaller, path)
    # Keras would match layers by position and put block5 weights into the ASPP head;
    # matched by name, the 18 block5 layers (3 units x 3 convs with BN) are the difference.
    message = str(error.value)
    assert "(18 differences)" in message
    assert ("unexpected in file: layer block5_unit_1_conv1 with shapes [(1, 1, 2048, 512)]"
            in message)
    assert "aspp" not in message and "logits" not in message


def test_weights_h5_without_layer_names_is_matched_by_position(model, tmp_path):
    # Files whose groups carry no layer name are read the way Keras reads them: by the
    # class-name key of each layer in model.layers order.
    path = str(tmp_path / "unnamed.weights.h5")
    model.save_weights(path)
    groups = []
    with h5py.File(path, "r+") as f:
        f.visititems(lambda name, obj: groups.append(obj) if "name" in obj.attrs else None)
        for group in groups:
            del group.attrs["name"]
    assert len(groups) == len(model.layers) + 1  # and the model's own (empty) vars
    expected = snapshot(model)
    for w in model.weights:
        w.assign(np.zeros(w.shape, np.float32))
    assert checkpoints.load_init_weights(model, path) == len(expected)
    after = snapshot(model)
    assert all(np.array_equal(after[p], expected[p]) for p in expected)


def test_importing_the_loader_does_not_import_tensorflow():
    shim = os.path.join(os.path.dirname(__file__), "no_tensorflow")
    env = dict(os.environ, KERAS_BACKEND="jax",
               PYTHONPATH=os.pathsep.join([shim, os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run(
        [sys.executable, "-c", "import deeplab_tf.modeling.checkpoints"],
        env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
