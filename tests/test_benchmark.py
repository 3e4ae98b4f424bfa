"""The benchmark runs on a tiny setting and reports well-formed JSON (no timing asserts).

Its training step is a ResNet-50 DeepLabv3 step on the TensorFlow (in this process) and on
the JAX Keras backend (the tool in a process where TensorFlow is unimportable, as on the
GPU machine); every trainable weight must move and the loss stay finite on both.
"""
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from tools.bench import benchmarking
from deeplab_tf import modeling

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Batch 2: the image-pooling branch's batch norm normalises over the batch of pooled
# vectors, so with one image its kernel would get no gradient.
TINY = ["--depth=50", "--output_stride=32", "--crop_size=33", "--batch_size=2",
        "--steps=1", "--warmup=1"]
COMMON_KEYS = {"impl", "backend", "device", "mode", "precision", "xla", "depth",
               "output_stride", "batch_size", "crop_size", "num_params", "trainable_params",
               "peak_memory_gib", "peak_memory_kind", "gflops_forward_per_image",
               "gflops_method", "achieved_tflops", "peak_tflops", "mfu"}

# Runs the tool with TensorFlow made unimportable, as on the GPU machine which has none.
# (A finder that refuses it, not sys.modules["tensorflow"] = None: Keras takes a name in
# sys.modules to mean that TensorFlow is loaded.)
NO_TENSORFLOW = (
    "import runpy, sys\n"
    "class NoTensorFlow:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name.split('.')[0] == 'tensorflow':\n"
    "            raise ImportError('no tensorflow on this machine')\n"
    "sys.meta_path.insert(0, NoTensorFlow())\n"
    "sys.argv = ['benchmark'] + sys.argv[1:]\n"
    "runpy.run_module('tools.bench.benchmark', run_name='__main__')\n")


def _run_jax(args):
    """The tool on JAX in a process where TensorFlow is unimportable; its one JSON line.

    XLA's CPU code generation without LLVM's optimisations: the same programs, compiled in
    39 instead of 52 s for the training step (its numbers are not timed)."""
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="2")
    env["XLA_FLAGS"] = " ".join(filter(None, [env.get("XLA_FLAGS"),
                                              "--xla_backend_optimization_level=0"]))
    command = [sys.executable, "-c", NO_TENSORFLOW]
    done = subprocess.run(command + args, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1, done.stdout
    return json.loads(lines[0])


def _check(result, backend, mode):
    assert COMMON_KEYS <= set(result)
    assert result["backend"] == backend and result["mode"] == mode
    # On a CPU the utilisation is against its physical limit at that precision, and the
    # vector ISA that limit comes from is named (tools/bench/cpu.py).
    assert result["device"] == "cpu"
    assert result["cpu"]["vector_isa"].split(" + ")[0] in {"AVX-512", "AVX2", "AVX", "SSE"}
    peak = result["cpu"]["peak_gops"][result["precision"]]
    assert result["peak_tflops"] == peak / 1e3
    assert result["mfu"] == pytest.approx(result["achieved_tflops"] / result["peak_tflops"])
    assert result["peak_memory_kind"] == "host peak RSS of the process"
    assert result["peak_memory_gib"] > 0
    assert result["trainable_params"] == 39_048_533  # ResNet-50, SPEC.md
    if mode == "train":
        assert result["images_per_s"] > 0
        # The timed step trains, on either backend: a finite loss, and every trainable
        # array moved. ResNet-50: 53 convs, each with batch norm (kernel, gamma, beta); ASPP
        # (1x1, three atrous, image pooling, projection): 6 more; logits kernel and bias.
        assert np.isfinite(result["final_loss"])
        assert result["weights_total"] == 3 * 53 + 3 * 6 + 2
        assert result["weights_unchanged"] == 0
    else:
        assert 0 < result["ms_min"] <= result["ms_median"]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["train", "infer"])
def test_measure_on_tensorflow(mode):
    # In this process (TensorFlow is its backend); the tool's command line and JSON line
    # are checked by the JAX runs below, which start the tool as on the GPU machine.
    assert keras.backend.backend() == "tensorflow"
    result = benchmarking.measure(mode, depth=50, output_stride=32, crop_size=33,
                                  batch_size=2, steps=1, warmup=1)
    _check(json.loads(json.dumps(result)), "tensorflow", mode)
    assert result["xla"] is False


@pytest.mark.jax
@pytest.mark.slow
@pytest.mark.parametrize("mode", ["train", "infer"])
def test_tool_prints_json_on_jax_without_tensorflow(mode):
    result = _run_jax([f"--mode={mode}", "--precision=bf16"] + TINY)
    _check(result, "jax", mode)
    assert result["precision"] == "bf16" and result["xla"] is True
    # XLA's buffer assignment of the compiled step is reported (issue 14's memory hunt).
    # Training: the arguments hold the float32 weights and their momentum (4 + 4 bytes
    # per parameter); inference: the batch-norm-folded weights, 2 bytes each at least.
    xla = result["xla_memory"]
    bytes_per_parameter = 8 if mode == "train" else 2
    assert xla["argument_gib"] * 2**30 >= bytes_per_parameter * 39_048_533
    assert xla["temp_gib"] > 0


def test_conv_flops_of_one_layer():
    image = keras.Input((17, 17, 3))
    model = keras.Model(image, keras.layers.Conv2D(8, 3, strides=2, padding="same",
                                                   dilation_rate=1)(image))
    assert benchmarking.conv_flops_per_image(model) == 2 * 9 * 9 * (3 * 3 * 3) * 8


def _layer_list_flops(output_stride, depth=101, crop=513, num_classes=21):
    """2 x multiply-adds of every convolution, counted from the paper's layer list by hand:
    slim ResNet (stride in the 3x3 conv of the last unit of blocks 1-3 until the output
    stride is reached), ASPP (1x1, three 3x3, image pooling on a 1x1 map, projection of
    1280 channels), logits. Every 3x3 tap counts, also where an atrous tap reads padding."""
    conv = lambda k, cin, cout, size: 2 * k * k * cin * cout * size * size
    size = (crop + 1) // 2  # conv1, 7x7 / 2
    total = conv(7, 3, 64, size)
    size, stride, depth_in = (size + 1) // 2, 4, 64  # pool1, 3x3 / 2
    for block, (units, base) in enumerate(zip({50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}[depth],
                                              (64, 128, 256, 512))):
        for unit in range(units):
            strided = unit == units - 1 and block < 3 and stride < output_stride
            out = (size + 1) // 2 if strided else size
            if depth_in != 4 * base:
                total += conv(1, depth_in, 4 * base, out)  # projection shortcut
            total += conv(1, depth_in, base, size) + conv(3, base, base, out) + \
                conv(1, base, 4 * base, out)
            depth_in, size, stride = 4 * base, out, stride * (2 if strided else 1)
    total += conv(1, 2048, 256, size) + 3 * conv(3, 2048, 256, size) + conv(1, 2048, 256, 1)
    return total + conv(1, 1280, 256, size) + conv(1, 256, num_classes, size)


@pytest.mark.parametrize("output_stride,gflops", [(16, 137.8), (8, 490.2)])
def test_conv_flops_of_resnet101_equal_the_layer_list(output_stride, gflops):
    # The figures of docs/benchmarks.md. (SPEC.md: torch's FlopCounterMode gives about
    # 143 / 497 for torchvision's model, whose head has one more 3x3 conv and no image
    # pooling.)
    flops = benchmarking.conv_flops_per_image(benchmarking.build_model(101, output_stride,
                                                                       513))
    assert flops == _layer_list_flops(output_stride)
    assert round(flops / 1e9, 1) == gflops


def test_conv_flops_need_static_shapes():
    with pytest.raises(ValueError, match="static"):
        benchmarking.conv_flops_per_image(modeling.deeplabv3(depth=50))


def test_softmax_cross_entropy_ignores_255():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 4, 5, 3)).astype(np.float32)
    labels = rng.integers(0, 3, (2, 4, 5)).astype(np.int32)
    labels[0, :2] = 255
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    valid = labels != 255
    expected = -np.take_along_axis(log_probs, np.where(valid, labels, 0)[..., None],
                                   -1)[..., 0][valid].mean()
    actual = benchmarking.softmax_cross_entropy(labels, logits)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(actual), expected, rtol=1e-5)


def test_measure_rejects_bad_arguments():
    with pytest.raises(ValueError, match="mode"):
        benchmarking.measure("serve")
    with pytest.raises(ValueError, match="precision"):
        benchmarking.set_precision("fp8")


def test_memory_figures_say_what_they_cover():
    xla = {"temp_gib": 2.0}
    # JAX on a GPU cannot reset its peak: the steps' peak is what stays held plus the
    # step's scratch; the process peak is everything.
    jax_gpu = benchmarking._memory_figures((1.5, 9.0), (1.5, 9.0), False, xla)
    assert jax_gpu["steps_peak_gib"] == 3.5 and jax_gpu["process_peak_gib"] == 9.0
    # TensorFlow resets after warm-up: the later peak is the steps' own.
    tf_gpu = benchmarking._memory_figures((1.5, 9.0), (1.5, 4.0), True, None)
    assert tf_gpu["steps_peak_gib"] == 4.0 and tf_gpu["process_peak_gib"] == 9.0
    assert benchmarking._memory_figures(None, None, False, xla) == {"xla_memory": xla}


def test_side_by_side_memory_is_like_for_like():
    side_by_side = benchmarking
    ours_train = {"device": "gpu", "mode": "train", "steps_peak_gib": 6.0,
                  "process_peak_gib": 30.0, "peak_memory_gib": 30.0}
    torch_train = {"device": "cuda", "mode": "train", "peak_mem_gib": 7.0,
                   "device_peak_before_reset_gib": 12.0, "device_peak_at_end_gib": 7.0,
                   "host_peak_rss_gib": 2.0}
    assert side_by_side.comparable_memory("deeplab_tf", ours_train) == 6.0
    assert side_by_side.comparable_memory("torchvision", torch_train) == 7.0
    assert side_by_side.whole_run_memory("deeplab_tf", ours_train) == 30.0
    assert side_by_side.whole_run_memory("torchvision", torch_train) == 12.0
    # Inference: torch never resets, so both sides' whole-run device peaks; never host RSS
    # against device memory.
    ours_infer = dict(ours_train, mode="infer", process_peak_gib=2.5)
    torch_infer = dict(torch_train, mode="infer", device_peak_at_end_gib=1.1,
                       device_peak_before_reset_gib=None)
    assert side_by_side.comparable_memory("deeplab_tf", ours_infer) == 2.5
    assert side_by_side.comparable_memory("torchvision", torch_infer) == 1.1
    cpu = {"device": "cpu", "mode": "infer", "peak_memory_gib": 1.5,
           "host_peak_rss_gib": 1.2}
    assert side_by_side.comparable_memory("deeplab_tf", cpu) == 1.5
    assert side_by_side.comparable_memory("torchvision", cpu) == 1.2
