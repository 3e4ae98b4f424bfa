"""The shifted-taps atrous convolution equals TensorFlow's own dilated convolution."""
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from deeplab_tf.modeling import atrous_conv


def _reference(x, kernel, rate):
    return tf.nn.convolution(x, kernel, padding="SAME", dilations=rate)


@pytest.mark.parametrize("size,rate", [
    ((9, 9), (3, 3)),      # every tap inside the map
    ((7, 5), (6, 6)),      # the outer columns read only padding: skipped
    ((5, 11), (4, 8)),     # unequal rates
    ((4, 4), (18, 18)),    # only the centre tap is left: a 1x1 convolution
    ((12, 10), (2, 2)),
])
@pytest.mark.parametrize("convolution", [atrous_conv.atrous_conv_by_taps,
                                         atrous_conv.atrous_conv_by_output_taps])
def test_taps_equal_dilated_convolution_and_its_gradients(convolution, size, rate):
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(2, *size, 5)), tf.float32)
    kernel = tf.constant(rng.normal(size=(3, 3, 5, 4)), tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([x, kernel])
        ours = convolution(x, kernel, rate)
        theirs = _reference(x, kernel, rate)
        weights = tf.constant(rng.normal(size=theirs.shape), tf.float32)
        loss_ours = tf.reduce_sum(ours * weights)
        loss_theirs = tf.reduce_sum(theirs * weights)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)
    for a, b in zip(tape.gradient(loss_ours, [x, kernel]),
                    tape.gradient(loss_theirs, [x, kernel])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)


def test_taps_with_unknown_spatial_size_in_a_graph():
    rate = (6, 6)
    kernel = tf.constant(np.random.default_rng(1).normal(size=(3, 3, 3, 2)), tf.float32)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    def run(x):
        return atrous_conv.atrous_conv_by_taps(x, kernel, rate)

    for size in [(4, 9), (13, 7)]:
        x = tf.random.stateless_normal((1, *size, 3), seed=(1, 2))
        np.testing.assert_allclose(run(x), _reference(x, kernel, rate), rtol=1e-5, atol=1e-5)


def test_layer_takes_the_taps_route_only_at_large_rates(monkeypatch):
    calls = []
    original = atrous_conv.atrous_conv_by_taps
    monkeypatch.setattr(atrous_conv, "atrous_conv_by_taps",
                        lambda *args: calls.append(args[2]) or original(*args))
    x = tf.random.stateless_normal((1, 8, 8, 3), seed=(3, 4))
    for rate in (1, 2, 3, 12):
        layer = atrous_conv.AtrousConv2D(4, 3, padding="same", dilation_rate=rate,
                                         use_bias=False)
        plain = keras.layers.Conv2D(4, 3, padding="same", dilation_rate=rate,
                                       use_bias=False)
        layer.build(x.shape)
        plain.build(x.shape)
        plain.set_weights(layer.get_weights())
        np.testing.assert_allclose(layer(x), plain(x), rtol=1e-5, atol=1e-5)
    assert calls == [(3, 3), (12, 12)]


def test_tensorflow_on_a_gpu_takes_the_output_taps_route(monkeypatch):
    # The input-taps form answers slow CPU gradients; on a GPU TensorFlow would still go
    # through SpaceToBatch, so it takes the form measured fastest there (output taps).
    assert atrous_conv.route("tensorflow", "cpu") == (3, atrous_conv.atrous_conv_by_taps)
    assert atrous_conv.route("tensorflow", "gpu") == (2, atrous_conv.atrous_conv_by_output_taps)
    assert atrous_conv.route("torch", "gpu") == (None, None)
    with tf.device("/CPU:0"):
        assert atrous_conv.tensorflow_device_kind(tf.zeros([1])) == "cpu"
    calls = []
    original = atrous_conv.atrous_conv_by_output_taps
    monkeypatch.setattr(atrous_conv, "tensorflow_device_kind", lambda tensor: "gpu")
    monkeypatch.setattr(atrous_conv, "atrous_conv_by_output_taps",
                        lambda *args: calls.append(args[2]) or original(*args))
    x = tf.random.stateless_normal((1, 8, 8, 3), seed=(5, 6))
    for rate in (1, 2, 6):
        layer = atrous_conv.AtrousConv2D(4, 3, padding="same", dilation_rate=rate,
                                         use_bias=False)
        plain = keras.layers.Conv2D(4, 3, padding="same", dilation_rate=rate, use_bias=False)
        layer.build(x.shape)
        plain.build(x.shape)
        plain.set_weights(layer.get_weights())
        np.testing.assert_allclose(layer(x), plain(x), rtol=1e-5, atol=1e-5)
    assert calls == [(2, 2), (6, 6)]


def test_benchmark_tool_prints_both_timings_as_json():
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run(
        [sys.executable, "-m", "tools.bench.benchmark_atrous_conv", "--size=5",
         "--channels_in=4", "--channels_out=3", "--rate=6", "--batch_size=2", "--steps=1"],
        cwd=repo, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"), capture_output=True,
        text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1, done.stdout
    result = json.loads(lines[0])
    assert result["rate"] == 6 and result["mode"] == "train"
    assert result["space_to_batch_ms"] > 0 and result["taps_ms"] > 0
    assert result["max_relative_difference"] < 1e-5


JAX_ROUTE_SCRIPT = r"""
import json
import numpy as np
import jax
import keras
from deeplab_tf.modeling import atrous_conv

calls = []
original = atrous_conv.atrous_conv_by_output_taps
atrous_conv.atrous_conv_by_output_taps = lambda *a: calls.append(a[2]) or original(*a)
rng = np.random.default_rng(0)
x = rng.normal(size=(2, 9, 7, 5)).astype("float32")
report = {}
for rate in (1, 2, 3, 8):
    ours = atrous_conv.AtrousConv2D(4, 3, padding="same", dilation_rate=rate, use_bias=False)
    plain = keras.layers.Conv2D(4, 3, padding="same", dilation_rate=rate, use_bias=False)
    ours.build(x.shape)
    plain.build(x.shape)
    plain.set_weights(ours.get_weights())
    kernel = np.asarray(ours.kernel)
    weights = rng.normal(size=(2, 9, 7, 4)).astype("float32")

    def loss(layer, kernel, x):
        return (layer.convolution_op(x, kernel) * weights).sum()

    grads_ours = jax.grad(lambda k, x: loss(ours, k, x), argnums=(0, 1))(kernel, x)
    grads_plain = jax.grad(lambda k, x: loss(plain, k, x), argnums=(0, 1))(kernel, x)
    report[rate] = {
        "output": float(np.abs(np.asarray(ours(x)) - np.asarray(plain(x))).max()),
        "grads": max(float(np.abs(np.asarray(a) - np.asarray(b)).max())
                     for a, b in zip(grads_ours, grads_plain))}
print(json.dumps({"backend": keras.backend.backend(), "calls": calls, "diff": report}))
"""


@pytest.mark.jax
def test_output_taps_route_on_jax_equals_dilated_convolution_and_gradients():
    import jax  # noqa: F401  (a test extra: a broken install fails here, never skips)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-c", JAX_ROUTE_SCRIPT], cwd=repo,
                          env=dict(os.environ, KERAS_BACKEND="jax"), capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["backend"] == "jax"
    # Rate 1 keeps XLA's own convolution; every dilated rate takes the output-taps route
    # (twice per rate: the forward call and the gradient's trace).
    assert sorted(set(map(tuple, result["calls"]))) == [(2, 2), (3, 3), (8, 8)]
    for rate, diff in result["diff"].items():
        assert diff["output"] < 1e-4 and diff["grads"] < 1e-3, (rate, diff)

