"""Batch norm's statistics as the authors' TF1 code computes them, and dropout masks that do not
depend on how the global batch is split over replicas (issue 22, items 3, 4a, 4b, 7).

* Training: output and moving-average update of `tf.compat.v1.nn.fused_batch_norm`
  (slim's fused batch norm): normalised by the biased batch variance, the moving variance
  averaging the unbiased (n - 1) one.
* Synchronised over two replicas (MirroredStrategy on two logical CPUs, in a subprocess:
  logical devices must be set before TensorFlow starts), on features whose mean is 10^4
  times their spread: the global statistics agree with float64 numpy as closely as one
  device's do.
* Dropout on the same two replicas draws, step after step, the masks one device draws
  for the same global batch.
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


TWO_REPLICAS_SCRIPT = r"""
import json
import keras
import numpy as np
import tensorflow as tf
from deeplab_tf.modeling import layers
from deeplab_tf import modeling

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
rng = np.random.default_rng(2)
report = {}


def per_replica(batch):
    half = len(batch) // 2
    return strategy.experimental_distribute_values_from_function(
        lambda context: tf.constant(batch[half * context.replica_id_in_sync_group:][:half]))


def gathered(values):
    return np.concatenate([v.numpy() for v in strategy.experimental_local_results(values)])


# Batch norm: ImageNet-like features with a large mean against their spread (10^4), one
# replica's batch shifted from the other's.
whole = np.concatenate([rng.normal(500.0 + 0.03 * i, 0.05, (3, 4, 5, 8))
                        for i in range(2)]).astype(np.float32)
report.update(whole=whole.tolist(), mean=whole.astype(np.float64).mean((0, 1, 2)).tolist(),
              variance=whole.astype(np.float64).var((0, 1, 2)).tolist(), n=whole.size // 8)


def batch_norm(layer_class):
    with strategy.scope():
        layer = layer_class(momentum=0.0, epsilon=1e-5, synchronized=True)
        layer.build(whole.shape)
    y = gathered(strategy.run(tf.function(lambda x: layer(x, training=True)),
                              args=(per_replica(whole),)))
    return dict(y=y.tolist(), moving_mean=layer.moving_mean.numpy().tolist(),
                moving_variance=layer.moving_variance.numpy().tolist())


report["synchronized"] = batch_norm(modeling.BatchNormalization)
# Keras' own synchronised statistics (one pass, biased), for the record.
report["keras_one_pass"] = batch_norm(keras.layers.BatchNormalization)
one = modeling.BatchNormalization(momentum=0.0, epsilon=1e-5)
y = one(tf.constant(whole), training=True)
report["one_device"] = dict(y=y.numpy().tolist(), moving_mean=one.moving_mean.numpy().tolist(),
                            moving_variance=one.moving_variance.numpy().tolist())

# Dropout: three training calls (steps) on a global batch of 4, on one device and on two
# replicas, from the same seed; then Keras' own dropout on the two replicas.
ones = np.ones((4, 3, 3, 5), np.float32)


def dropout_masks(layer_class, replicated):
    with strategy.scope() if replicated else tf.distribute.get_strategy().scope():
        layer = layer_class(0.5, seed=7)
    call = tf.function(lambda x: layer(x, training=True))
    if not replicated:
        return [call(ones).numpy().tolist() for _ in range(3)]
    return [gathered(strategy.run(call, args=(per_replica(ones),))).tolist()
            for _ in range(3)]


report["dropout"] = dict(one_device=dropout_masks(layers.Dropout, False),
                         replicas=dropout_masks(layers.Dropout, True),
                         keras_replicas=dropout_masks(keras.layers.Dropout, True))
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def two_replicas():
    """What the layers do on MirroredStrategy over two logical CPUs (a subprocess: logical
    devices must be set before TensorFlow starts)."""
    done = subprocess.run([sys.executable, "-c", TWO_REPLICAS_SCRIPT], cwd=REPO,
                          env=dict(os.environ, PYTHONPATH=REPO), capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_synchronised_statistics_are_as_exact_as_one_devices(two_replicas):
    report = two_replicas
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


def test_dropout_masks_depend_on_the_example_not_on_the_replica(two_replicas):
    """Mask of (seed, step, index in the global batch): two replicas drop what one device
    drops, step after step; Keras' own dropout gave both replicas the same mask."""
    masks = {name: np.array(value) for name, value in two_replicas["dropout"].items()}
    one, replicas = masks["one_device"], masks["replicas"]
    assert one.shape == (3, 4, 3, 3, 5)
    np.testing.assert_array_equal(replicas, one)
    assert set(np.unique(one)) == {0.0, 2.0}  # dropped, or kept and scaled by 1 / 0.5
    assert 0.4 < np.mean(one == 0) < 0.6
    assert not np.array_equal(one[0], one[1])  # a new mask each step
    assert not np.array_equal(one[0, :2], one[0, 2:])  # and for each example
    keras_own = masks["keras_replicas"]
    np.testing.assert_array_equal(keras_own[:, :2], keras_own[:, 2:])  # the issue


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


JAX_SCRIPT = r"""
import json
import types
import jax
import keras
import numpy as np
from tests import small_models

config = types.SimpleNamespace(num_classes=3, batch_norm_decay=0.9, batch_norm_epsilon=1e-5,
                               aspp_dropout_rate=0.5)
keras.utils.set_random_seed(0)
model = small_models.mini_deeplab(config)
image = np.random.default_rng(3).uniform(0, 255, (2, 17, 17, 3)).astype("float32")
pooling_bn = model.get_layer("image_pooling_bn")
# Its input in training mode (the batch norms before it normalise by the batch): (2, 1, 1, 256).
pooled = np.asarray(keras.Model(model.input, pooling_bn.input)(image, training=True))
before = np.asarray(pooling_bn.moving_variance)
training = [np.asarray(model(image, training=True))]
after = np.asarray(pooling_bn.moving_variance)
training.append(np.asarray(model(image, training=True)))
inference = [np.asarray(model(image, training=False)) for _ in range(2)]
# The compiled training step of a JAX trainer: stateless_call under jax.jit.
compiled = jax.jit(lambda t, n, x: model.stateless_call(t, n, x, training=True))
non_trainable = [v.value for v in model.non_trainable_variables]
_, updated = compiled([v.value for v in model.trainable_variables], non_trainable, image)
seed = [np.asarray(new) for old, new in zip(model.non_trainable_variables, updated)
        if "seed_generator_state" in old.path]
print(json.dumps(dict(
    backend=keras.backend.backend(),
    expected_variance=(0.9 * before + 0.1 * pooled.var((0, 1, 2), ddof=1)).tolist(),
    moving_variance=after.tolist(),
    training_differs=bool(np.any(training[0] != training[1])),
    inference_equal=bool(np.array_equal(inference[0], inference[1])),
    seed_advanced=[s.tolist() for s in seed])))
"""


@pytest.mark.jax
def test_batch_norm_and_dropout_on_jax():
    """On the JAX backend (TensorFlow unimportable, as on the GPU machine): the image-pooling
    batch norm of a batch of 2 averages the unbiased variance (twice the biased one), the
    dropout draws a new mask each training call and none in inference, and both trace in
    a jitted stateless training call."""
    import jax  # noqa: F401  (a test extra: a broken install fails here, never skips)
    shim = os.path.join(REPO, "tests", "no_tensorflow")
    done = subprocess.run([sys.executable, "-c", JAX_SCRIPT], cwd=REPO,
                          env=dict(os.environ, KERAS_BACKEND="jax",
                                   PYTHONPATH=os.pathsep.join([shim, REPO])),
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["backend"] == "jax"
    np.testing.assert_allclose(result["moving_variance"], result["expected_variance"],
                               rtol=1e-4)
    assert result["training_differs"] and result["inference_equal"]
    # Two eager training calls, then the jitted one: the dropout's third mask.
    assert len(result["seed_advanced"]) == 1 and result["seed_advanced"][0][1] == 3
