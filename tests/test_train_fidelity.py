"""Training as the authors' code does it where the paper is silent (paper 4.1; issue 10):
TF1 momentum, gradient multipliers, the frozen-batch-norm stage, the ImageNet start."""
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from deeplab_tf import config as config_lib
from deeplab_tf.train import loop
from deeplab_tf.train import optimizer as optimizer_lib
from deeplab_tf.train import schedule as schedule_lib

import small_models

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def smoke(data_dir, *overrides):
    return config_lib.load_experiment("smoke", [f"data.data_dir={data_dir}", *overrides])


# ---------------------------------------------------------------- TF1 momentum

def test_tf1_momentum_two_steps_by_hand():
    """a <- 0.9 a + g; w <- w - lr_t a, with lr_t the poly rate of each step (it changes:
    Keras' SGD, which folds lr into the velocity, ends elsewhere)."""
    w0 = np.array([1.0, -2.0, 0.5], np.float32)
    b0 = np.array([0.25], np.float32)
    g1, g2 = np.array([0.3, -0.1, 2.0], np.float32), np.array([-0.5, 0.4, 1.0], np.float32)
    h1, h2 = np.array([1.5], np.float32), np.array([-0.5], np.float32)
    lr = [0.1 * (1.0 - k / 4.0) ** 0.9 for k in (0, 1)]  # poly, base 0.1, 4 steps
    # By hand; the bias ("b") has gradient multiplier 2.
    w_expected = w0 - lr[0] * g1 - lr[1] * (0.9 * g1 + g2)
    b_expected = b0 - lr[0] * 2 * h1 - lr[1] * (0.9 * 2 * h1 + 2 * h2)

    def run(optimizer_class, **kwargs):
        step = tf.Variable(0, dtype=tf.int64)
        rate = schedule_lib.learning_rate_fn(schedule_lib.poly_schedule(0.1, 4), step)
        w, b = keras.Variable(w0, name="w"), keras.Variable(b0, name="b")
        optimizer = optimizer_class(learning_rate=rate, momentum=0.9, **kwargs)
        for gw, gb in ((g1, h1), (g2, h2)):
            optimizer.apply([tf.constant(gw), tf.constant(gb)], [w, b])
            step.assign_add(1)
        return w.numpy(), b.numpy()

    w, b = run(optimizer_lib.MomentumOptimizer, gradient_multipliers={"b": 2.0})
    np.testing.assert_allclose(w, w_expected, rtol=1e-6)
    np.testing.assert_allclose(b, b_expected, rtol=1e-6)
    keras_w, _ = run(keras.optimizers.SGD)
    # Keras: w0 - lr0 g1 - lr1 g2 - 0.9 lr0 g1: off by 0.9 (lr0 - lr1) g1.
    np.testing.assert_allclose(keras_w - w, -0.9 * (lr[0] - lr[1]) * g1, rtol=1e-4)
    assert np.abs(keras_w - w).max() > 1e-3


def test_adam_option_is_keras_adam_on_multiplied_gradients():
    """train.optimizer=adam (the CPU demo's): two steps equal Keras' Adam fed the gradient
    times its multiplier; any other name is refused."""
    w0, b0 = np.array([1.0, -2.0], np.float32), np.array([0.25], np.float32)
    steps = [(np.array([0.3, -0.1], np.float32), np.array([1.5], np.float32)),
             (np.array([-0.5, 0.4], np.float32), np.array([-0.2], np.float32))]

    def run(optimizer, bias_multiplier):
        w, b = keras.Variable(w0, name="w"), keras.Variable(b0, name="b")
        for gw, gb in steps:
            optimizer.apply([tf.constant(gw), tf.constant(bias_multiplier * gb)], [w, b])
        return w.numpy(), b.numpy()

    w, b = run(optimizer_lib.AdamOptimizer(0.1, gradient_multipliers={"b": 3.0}), 1.0)
    keras_w, keras_b = run(keras.optimizers.Adam(0.1), 3.0)
    np.testing.assert_allclose(w, keras_w, rtol=1e-6)
    np.testing.assert_allclose(b, keras_b, rtol=1e-6)
    assert np.abs(w - w0).min() > 0.01  # it moved

    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(1, name="logits")(inputs))
    train = config_lib.TrainConfig(optimizer="adam")
    adam = optimizer_lib.make_optimizer(train, model, 0.01)
    assert isinstance(adam, optimizer_lib.AdamOptimizer)
    assert adam.gradient_multipliers == {"logits/bias": 2.0}
    with pytest.raises(ValueError, match="train.optimizer must be one of .* got 'sgd'"):
        optimizer_lib.make_optimizer(config_lib.TrainConfig(optimizer="sgd"), model, 0.01)


# ---------------------------------------------------------------- gradient multipliers

def _head(name):
    return name.startswith(("aspp_", "image_pooling", "logits"))


def test_gradient_multipliers_follow_the_authors_rule(data_dir):
    model = config_lib.build_model(smoke(data_dir).model)
    paths = [v.path for v in model.trainable_variables]
    biases = [p for p in paths if p.endswith("/bias")]
    assert biases == ["logits/bias"]  # every other convolution feeds a batch norm
    # Defaults (train_utils with last_layer_gradient_multiplier=1): biases learn at 2x.
    assert optimizer_lib.gradient_multipliers(model) == {"logits/bias": 2.0}
    # A last-layer multiplier of 10 reaches the whole head (ASPP, image pooling,
    # projection, logits), its bias 2 x 10; the backbone never.
    tenfold = optimizer_lib.gradient_multipliers(model, last_layer_multiplier=10.0)
    expected = {p: (20.0 if p.endswith("/bias") else 10.0)
                for p in paths if _head(p.split("/")[0])}
    assert tenfold == expected
    assert "aspp_projection_bn/gamma" in tenfold and "image_pooling/kernel" in tenfold
    assert not any(p.startswith(("block", "conv1")) for p in tenfold)
    logits_only = optimizer_lib.gradient_multipliers(
        model, last_layer_multiplier=10.0, last_layers_contain_logits_only=True)
    assert logits_only == {"logits/kernel": 10.0, "logits/bias": 20.0}


def test_bias_gradient_is_doubled_in_the_update(data_dir):
    """One step without momentum history: the logits bias moves lr * 2g, its kernel lr * g."""
    model = config_lib.build_model(smoke(data_dir).model)
    optimizer = optimizer_lib.make_optimizer(smoke(data_dir).train, model, 0.5)
    assert optimizer.gradient_multipliers == {"logits/bias": 2.0}
    variables = model.trainable_variables
    optimizer.build(variables)
    layer = model.get_layer("logits")
    kernel, bias = layer.kernel.numpy(), layer.bias.numpy()
    optimizer.apply([tf.ones_like(v) for v in variables], variables)
    np.testing.assert_allclose(layer.kernel.numpy(), kernel - 0.5, rtol=1e-6)
    np.testing.assert_allclose(layer.bias.numpy(), bias - 2 * 0.5, rtol=1e-6)


# ---------------------------------------------------------------- frozen batch norm

def test_frozen_batch_norm_stage_keeps_statistics_while_gamma_and_beta_move(data_dir,
                                                                             tmp_path):
    """Stage 2 / Table 8 "no BN fine-tuning" as the authors' fine_tune_batch_norm=False.
    On the mini DeepLab (the library's conv + batch norm and ASPP layers): the trainer
    freezes the batch norms of whatever model it trains."""
    trainer = loop.Trainer(smoke(data_dir, "train.freeze_batch_norm=True",
                                 f"model.builder={small_models.MINI_DEEPLAB}"), str(tmp_path))
    trainable = {v.path for v in trainer.trainable}
    layers = [layer for layer in trainer.model.layers
              if isinstance(layer, keras.layers.BatchNormalization)]
    assert [layer.name for layer in layers[:2]] == ["stem_bn", "atrous_bn"]
    assert len(layers) == 7 and layers[-1].name == "aspp_projection_bn"
    statistics = [(l.moving_mean.numpy().copy(), l.moving_variance.numpy().copy())
                  for l in layers]
    parameters = [(l.gamma.numpy().copy(), l.beta.numpy().copy()) for l in layers]
    for layer in layers:
        assert {layer.gamma.path, layer.beta.path} <= trainable
    trainer._step_fn()(trainer.iterator)
    for layer, (mean, variance), (gamma, beta) in zip(layers, statistics, parameters):
        np.testing.assert_array_equal(layer.moving_mean.numpy(), mean, err_msg=layer.name)
        np.testing.assert_array_equal(layer.moving_variance.numpy(), variance,
                                      err_msg=layer.name)
        assert np.any(layer.gamma.numpy() != gamma), layer.name
        assert np.any(layer.beta.numpy() != beta), layer.name


# ---------------------------------------------------------------- the ImageNet start

IMAGENET_STARTS = {"voc_stage1": 101, "coco_pretrain": 101, "table1": 50, "table2": 50,
                   "table3": 101, "table5": 101, "table8": 101, "table9": 101,
                   "table10": 101, "cityscapes_fine": 101, "cityscapes_coarse": 101}


def test_experiments_that_start_from_imagenet_refuse_to_start_without_it():
    for name, depth in IMAGENET_STARTS.items():
        config = config_lib.load_experiment(name)
        with pytest.raises(ValueError) as error:
            config_lib.init_checkpoint_path(config)
        message = str(error.value)
        assert "\n" not in message
        assert "--set=train.init_checkpoint=" in message, name
        assert f"resnet_v1_{depth}.ckpt" in message and f"experiment {name} " in message
        assert "train.init_checkpoint=none" in message
    for name in ("demo", "smoke"):  # from scratch, said explicitly
        config = config_lib.load_experiment(name)
        assert config.train.init_checkpoint == "none"
        assert config_lib.init_checkpoint_path(config) is None
    for name, run in (("voc_stage2", "runs/voc_stage1"),
                      ("voc_finetune_from_coco", "runs/coco_pretrain"),
                      ("voc_trainval_bootstrap", "runs/voc_finetune_from_coco")):
        assert config_lib.init_checkpoint_path(config_lib.load_experiment(name)) == run
    config = config_lib.load_experiment("voc_stage1", ["train.init_checkpoint=/w/r.ckpt"])
    assert config_lib.init_checkpoint_path(config) == "/w/r.ckpt"
    for scratch in ("none", "None"):  # a bare word, or Python's None
        config = config_lib.load_experiment("voc_stage1", [f"train.init_checkpoint={scratch}"])
        assert config_lib.init_checkpoint_path(config) is None


def test_train_tool_refuses_in_one_line(tmp_path):
    workdir = tmp_path / "run"
    result = subprocess.run([sys.executable, "-m", "tools.train", "--experiment=voc_stage1",
                             f"--workdir={workdir}"], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode != 0
    lines = [l for l in result.stderr.splitlines() if "train.init_checkpoint is not set" in l]
    assert len(lines) == 1, result.stderr[-2000:]
    assert "resnet_v1_101.ckpt" in lines[0] and "train.init_checkpoint=none" in lines[0]
    assert not workdir.exists()
