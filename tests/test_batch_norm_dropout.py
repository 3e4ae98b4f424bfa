"""Batch norm's statistics as the authors' TF1 code computes them (issue 22, items 4a, 4b, 7).

* Training: output and moving-average update of `tf.compat.v1.nn.fused_batch_norm`
  (slim's fused batch norm): normalised by the biased batch variance, the moving variance
  averaging the unbiased (n - 1) one.
* Synchronised over two replicas (MirroredStrategy on two logical CPUs, in a subprocess:
  logical devices must be set before TensorFlow starts), on features whose mean is 10^4
  times their spread: the global statistics agree with float64 numpy as closely as one
  device's do.
* Freezing and synchronising reach batch norms inside nested models, and refuse Keras'
  own batch norm by name.
"""
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from deeplab_tf import config as config_lib
from deeplab_tf import modeling
from deeplab_tf.train import loop

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("shape", [(16, 1, 1, 6), (3, 5, 4, 6), (1, 1, 1, 6)])
def test_training_step_is_the_authors_fused_batch_norm(shape):
    """(16, 1, 1): the image-pooling branch, where n is the batch and the moving variance
    gets 16/15 of the biased one; n = 1 keeps the batch variance (0) as TF does."""
    rng = np.random.default_rng(1)
    x = rng.normal(3.0, 2.0, shape).astype(np.float32)
    gamma, beta = rng.uniform(0.5, 1.5, 6), rng.normal(size=6)
    moving_mean, moving_variance = rng.normal(size=6), rng.uniform(0.5, 2.0, 6)
    layer = modeling.BatchNormalization(momentum=0.9, epsilon=1e-5)
    layer.build(shape)
    layer.set_weights([gamma, beta, moving_mean, moving_variance])
    y = layer(x, training=True)
    expected, batch_mean, batch_variance = tf.compat.v1.nn.fused_batch_norm(
        x, gamma.astype(np.float32), beta.astype(np.float32), epsilon=1e-5,
        is_training=True)
    # Normalised by the biased variance: the unbiased one would be off by 1-3% here. (The
    # fused op's own rounding: x * scale + offset with scale ~ 300 when n = 1.)
    np.testing.assert_allclose(y.numpy(), expected.numpy(), rtol=1e-5, atol=2e-4)
    # slim.batch_norm: moving = decay * moving + (1 - decay) * the op's batch statistic.
    np.testing.assert_allclose(layer.moving_mean.numpy(),
                               0.9 * moving_mean + 0.1 * batch_mean.numpy(), rtol=1e-6)
    np.testing.assert_allclose(layer.moving_variance.numpy(),
                               0.9 * moving_variance + 0.1 * batch_variance.numpy(),
                               rtol=1e-6)
    # Inference normalises with the moving statistics.
    inferred = layer(x, training=False).numpy()
    np.testing.assert_allclose(
        inferred, gamma * (x - layer.moving_mean.numpy()) /
        np.sqrt(layer.moving_variance.numpy() + 1e-5) + beta, rtol=1e-5, atol=1e-5)


SYNCHRONISED_SCRIPT = r"""
import json
import numpy as np
import keras
import tensorflow as tf
from deeplab_tf import modeling

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
rng = np.random.default_rng(2)
# ImageNet-like features with a large mean against their spread (10^4), one replica's
# batch shifted from the other's.
halves = [rng.normal(500.0 + 0.03 * i, 0.05, (3, 4, 5, 8)).astype(np.float32)
          for i in range(2)]
whole = np.concatenate(halves).astype(np.float64)
n = whole.size // 8
report = dict(whole=whole.tolist(), mean=whole.mean((0, 1, 2)).tolist(),
              variance=whole.var((0, 1, 2)).tolist())


def run(layer_class):
    with strategy.scope():
        layer = layer_class(momentum=0.0, epsilon=1e-5, synchronized=True)
        layer.build(whole.shape)
    data = strategy.experimental_distribute_values_from_function(
        lambda context: tf.constant(halves[context.replica_id_in_sync_group]))
    outputs = strategy.run(tf.function(lambda x: layer(x, training=True)), args=(data,))
    y = np.concatenate([v.numpy() for v in strategy.experimental_local_results(outputs)])
    return dict(y=y.tolist(), moving_mean=layer.moving_mean.numpy().tolist(),
                moving_variance=layer.moving_variance.numpy().tolist())


report["synchronized"] = run(modeling.BatchNormalization)
# Keras' own synchronised statistics (one pass, biased), for the record.
report["keras_one_pass"] = run(keras.layers.BatchNormalization)
one = modeling.BatchNormalization(momentum=0.0, epsilon=1e-5)
y = one(tf.constant(whole.astype(np.float32)), training=True)
report["one_device"] = dict(y=y.numpy().tolist(), moving_mean=one.moving_mean.numpy().tolist(),
                            moving_variance=one.moving_variance.numpy().tolist())
report["n"] = n
print(json.dumps(report))
"""


def test_synchronised_statistics_are_as_exact_as_one_devices():
    done = subprocess.run([sys.executable, "-c", SYNCHRONISED_SCRIPT], cwd=REPO,
                          env=dict(os.environ, PYTHONPATH=REPO), capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    mean, variance, n = (np.array(report["mean"]), np.array(report["variance"]),
                         report["n"])
    unbiased = variance * n / (n - 1)

    def errors(run):
        return (np.max(np.abs(np.array(run["moving_mean"]) - mean)),
                np.max(np.abs(np.array(run["moving_variance"]) / unbiased - 1)))

    one_mean, one_variance = errors(report["one_device"])
    sync_mean, sync_variance = errors(report["synchronized"])
    keras_variance = np.max(np.abs(np.array(report["keras_one_pass"]["moving_variance"]) /
                                   variance - 1))
    print("relative variance error: one device", one_variance, "synchronised",
          sync_variance, "Keras one pass", keras_variance)
    assert one_variance < 1e-4  # float32 two-pass moments on one device
    assert sync_mean <= 1e-4 and sync_variance <= max(2 * one_variance, 1e-5)
    # The normalised output against float64 (its float32 rounding: x ~ 500 has an ulp of
    # 3e-5, which is 6e-4 after division by the spread of 0.05).
    whole = np.array(report["whole"])
    expected = (whole - mean) / np.sqrt(variance + 1e-5)
    one_y, sync_y = (np.max(np.abs(np.array(report[run]["y"]) - expected))
                     for run in ("one_device", "synchronized"))
    print("output error: one device", one_y, "synchronised", sync_y)
    assert sync_y <= max(2 * one_y, 1e-3)


def _model_config(builder):
    return config_lib.load_experiment("smoke", [f"model.builder={builder}"])


def test_freezing_and_synchronising_reach_nested_models():
    """A custom builder's batch norms one and two models deep are frozen (stage 2) or
    synchronised (several replicas) like the top-level one."""
    config = _model_config("tests.small_models:nested")
    model = loop._build_model(config, num_replicas=2)
    names = sorted(layer.name for layer in modeling.batch_norm_layers(model))
    assert names == ["block_bn", "head_bn", "stem_bn"]
    assert all(layer.synchronized and not layer.frozen_statistics
               for layer in modeling.batch_norm_layers(model))
    config.train.freeze_batch_norm = True
    model = loop._build_model(config, num_replicas=2)
    assert all(layer.frozen_statistics and not layer.synchronized
               for layer in modeling.batch_norm_layers(model))
    # Frozen means frozen in the nested block too: training=True leaves its statistics.
    block_bn = model.get_layer("stem").get_layer("block").get_layer("block_bn")
    before = block_bn.moving_mean.numpy().copy()
    model(np.full((2, 9, 9, 3), 50.0, np.float32), training=True)
    np.testing.assert_array_equal(block_bn.moving_mean.numpy(), before)
    assert loop._build_model(_model_config("tests.small_models:nested"), 1).get_layer(
        "stem").get_layer("block").get_layer("block_bn").synchronized is False


def test_keras_own_batch_norm_is_refused_by_name_even_when_nested():
    inner_input = keras.Input((None, None, 4))
    inner = keras.Model(inner_input, keras.layers.BatchNormalization(name="plain_bn")(
        inner_input), name="inner")
    image = keras.Input((None, None, 4))
    model = keras.Model(image, inner(image))
    for action in (modeling.freeze_batch_norm, modeling.synchronize_batch_norm):
        with pytest.raises(ValueError, match=r"^plain_bn: plain keras BatchNormalization"):
            action(model)
