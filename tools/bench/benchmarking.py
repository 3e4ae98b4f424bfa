"""Speed measurement of DeepLabv3 (paper 4.1 training step, 3 inference) on any Keras backend.

`tools/bench/benchmark.py` is the command; this module holds what it measures with, so that
a test or a notebook can call the same code. Nothing here imports TensorFlow or JAX at module
level: the GPU machine has JAX and no TensorFlow, and this machine uses TensorFlow.

- Training step: softmax cross-entropy over the pixels whose label is not 255, on logits
  upsampled bilinearly to the crop (paper 4.1, Table 8), SGD with momentum 0.9 and weight
  decay 1e-4. On JAX one jitted stateless step (stateless_call, value_and_grad,
  stateless_apply, buffers donated); on TensorFlow a tf.function (jit_compile with --xla).
- Inference: logits upsampled to the image, as torchvision's DeepLabV3 returns them.
- FLOPs: counted from the layer list, 2 x multiply-adds of every convolution (kernel size x
  input channels x output channels x output pixels), which is what torch's FlopCounterMode
  counts for torchvision's model; batch norm, ReLU, pooling and resizing are not counted.
  A training step is taken as 3x the forward FLOPs (forward, and twice that backward).
"""
import math
import resource
import statistics
import time

import keras
import numpy as np

from deeplab_tf import modeling
from tools.bench import cpu

IGNORE_LABEL = 255
PRECISION_POLICIES = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}
# Dense tensor-core peaks in TFLOP/s from NVIDIA's data sheets (the sparse figures are 2x).
PEAK_TFLOPS = {
    "H100": {"bf16": 989.4, "fp16": 989.4, "fp32": 494.7},  # fp32 as TF32 matmul
    "H200": {"bf16": 989.4, "fp16": 989.4, "fp32": 494.7},
}
TRAIN_FLOPS_PER_FORWARD = 3.0
FLOPS_METHOD = ("2 x conv multiply-adds from the layer list (kernel x channels x output "
                "pixels), per image; BN, ReLU, pooling, resizing not counted")


def set_precision(precision):
    """Sets Keras' global dtype policy for `precision` (fp32, bf16, fp16); call before building."""
    if precision not in PRECISION_POLICIES:
        raise ValueError(f"precision must be one of {sorted(PRECISION_POLICIES)}, "
                         f"got {precision!r}")
    keras.config.set_dtype_policy(PRECISION_POLICIES[precision])


def build_model(depth, output_stride, crop_size, num_classes=21):
    """DeepLabv3 (ASPP + image pooling, MG (1,2,4)) on a static crop_size x crop_size input."""
    return modeling.deeplabv3(num_classes=num_classes, depth=depth,
                                   output_stride=output_stride,
                                   image_shape=(crop_size, crop_size, 3))


def _all_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)
        else:
            yield layer


def conv_flops_per_image(model):
    """Forward FLOPs of one image: 2 x multiply-adds of every Conv2D (needs static shapes)."""
    total = 0
    for layer in _all_layers(model):
        if not isinstance(layer, keras.layers.Conv2D):
            continue
        out_shape = layer.output.shape
        if any(d is None for d in out_shape[1:]):
            raise ValueError(f"layer {layer.name} has no static output size {out_shape}: "
                             "build the model with a fixed image_shape to count FLOPs")
        kernel_h, kernel_w, in_per_group, filters = layer.kernel.shape
        total += 2 * math.prod(out_shape[1:3]) * kernel_h * kernel_w * in_per_group * filters
    return total


def softmax_cross_entropy(labels, logits, ignore_label=IGNORE_LABEL):
    """Mean softmax cross-entropy over the pixels whose label is not `ignore_label`.

    labels: int [B, H, W]; logits: [B, H, W, C] at the label size. Computed in float32.
    """
    ops = keras.ops
    logits = ops.cast(logits, "float32")
    valid = ops.not_equal(labels, ignore_label)
    safe_labels = ops.where(valid, labels, ops.zeros_like(labels))
    per_pixel = ops.sparse_categorical_crossentropy(safe_labels, logits, from_logits=True)
    valid = ops.cast(valid, "float32")
    return ops.sum(per_pixel * valid) / ops.maximum(ops.sum(valid), 1.0)


def make_optimizer(precision, learning_rate=0.007):
    """SGD, momentum 0.9, weight decay 1e-4 (the authors' train.py for ResNet); for fp16
    a loss scale."""
    optimizer = keras.optimizers.SGD(learning_rate=learning_rate, momentum=0.9,
                                     weight_decay=1e-4)
    if precision == "fp16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def synthetic_batch(batch_size, crop_size, num_classes, seed=0):
    """Random images in [0, 255] and labels in [0, num_classes) with a band of 255s."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0.0, 255.0, (batch_size, crop_size, crop_size, 3)).astype(np.float32)
    labels = rng.integers(0, num_classes, (batch_size, crop_size, crop_size), dtype=np.int32)
    labels[:, : crop_size // 10] = IGNORE_LABEL
    return images, labels


# ---------------------------------------------------------------------------------------
# Steps: each builder returns (run, sync); run(images, labels) -> something to sync on.


def _jax_train_step(model, optimizer, crop_size, images, labels):
    import jax

    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    optimizer.build(model.trainable_variables)
    optimizer_vars = [v.value for v in optimizer.variables]
    scaled = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)

    def loss_fn(trainable, non_trainable, optimizer_vars, images, labels):
        logits, non_trainable = model.stateless_call(trainable, non_trainable, images,
                                                     training=True)
        logits = modeling.upsample_logits(logits, (crop_size, crop_size))
        loss = softmax_cross_entropy(labels, logits)
        if scaled:
            # The loss scale is an optimizer variable: read it from the stateless values.
            with keras.StatelessScope(list(zip(optimizer.variables, optimizer_vars))):
                return optimizer.scale_loss(loss), (loss, non_trainable)
        return loss, (loss, non_trainable)

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def step(state, images, labels):
        trainable, non_trainable, optimizer_vars = state
        (_, (loss, non_trainable)), grads = grad_fn(trainable, non_trainable,
                                                    optimizer_vars, images, labels)
        trainable, optimizer_vars = optimizer.stateless_apply(optimizer_vars, grads,
                                                              trainable)
        return loss, (trainable, non_trainable, optimizer_vars)

    state = [(trainable, non_trainable, optimizer_vars)]
    # Compiled ahead of time on the real batch, so XLA's buffer assignment can be read.
    step = jax.jit(step, donate_argnums=0).lower(state[0], images, labels).compile()

    def run(images, labels):
        loss, state[0] = step(state[0], images, labels)
        return loss

    def weights():
        return [np.asarray(w) for w in state[0][0]]

    return run, _jax_sync, xla_memory(step), weights


def xla_memory(compiled):
    """GiB of XLA's buffer assignment for a compiled JAX step (None where not reported).

    temp is the step's own scratch (activations kept for the backward pass, workspaces
    XLA assigned); arguments and outputs are the live state and batch; alias is what
    donated arguments share with outputs. peak is XLA's own estimate of the step's peak.
    """
    try:
        stats = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 -- some backends do not implement it
        return None
    if stats is None:
        return None
    names = ("temp", "argument", "output", "alias", "peak_memory")
    out = {}
    for name in names:
        value = getattr(stats, f"{name}_size_in_bytes" if name != "peak_memory"
                        else "peak_memory_in_bytes", None)
        out[name.replace("_memory", "") + "_gib"] = None if value is None else value / 2**30
    return out


def _jax_sync(value):
    import jax
    jax.block_until_ready(value)


def _tf_train_step(model, optimizer, crop_size, xla):
    import tensorflow as tf

    optimizer.build(model.trainable_variables)

    @tf.function(jit_compile=xla)
    def run(images, labels):
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            logits = modeling.upsample_logits(logits, (crop_size, crop_size))
            loss = softmax_cross_entropy(labels, logits)
            scaled_loss = optimizer.scale_loss(loss)
        grads = tape.gradient(scaled_loss, model.trainable_variables)
        optimizer.apply(grads, model.trainable_variables)
        return loss

    def weights():
        return [v.numpy() for v in model.trainable_variables]

    return run, _tf_sync, None, weights


def _tf_sync(value):
    value.numpy()


def _jax_infer(model, images):
    import jax

    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]

    def forward(trainable, non_trainable, images):
        return model.stateless_call(trainable, non_trainable, images, training=False)[0]

    forward = jax.jit(forward).lower(trainable, non_trainable, images).compile()
    return ((lambda images, labels: forward(trainable, non_trainable, images)), _jax_sync,
            xla_memory(forward))


def _tf_infer(model, xla):
    import tensorflow as tf

    forward = tf.function(lambda images: model(images, training=False), jit_compile=xla)
    return (lambda images, labels: forward(images)), _tf_sync, None


def _device_arrays(images, labels):
    backend = keras.backend.backend()
    if backend == "jax":
        import jax
        return jax.device_put(images), jax.device_put(labels)
    import tensorflow as tf
    # Eager tensors made from numpy live on the host; put them where the step runs so
    # that no step pays for a copy.
    device = "/GPU:0" if tf.config.list_logical_devices("GPU") else "/CPU:0"
    with tf.device(device):
        return tf.identity(images), tf.identity(labels)


# ---------------------------------------------------------------------------------------
# Device facts.


def device_description():
    """(kind, name): 'cpu' or 'gpu', and the device's name as the backend reports it."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax
        device = jax.devices()[0]
        return device.platform, device.device_kind
    if backend == "tensorflow":
        import tensorflow as tf
        gpus = tf.config.list_logical_devices("GPU")
        if gpus:
            details = tf.config.experimental.get_device_details(
                tf.config.list_physical_devices("GPU")[0])
            return "gpu", details.get("device_name", gpus[0].name)
    return "cpu", "cpu"


def device_memory():
    """(GiB in use now, GiB peak so far) on the device, or None on a CPU.

    The peak covers the whole process: compilation and the autotuner's trial buffers
    (cuDNN workspaces) included, not only the timed steps.
    """
    backend = keras.backend.backend()
    if backend == "jax":
        import jax
        device = jax.devices()[0]
        stats = device.memory_stats() if device.platform != "cpu" else None
        if stats and "peak_bytes_in_use" in stats:
            return stats["bytes_in_use"] / 2**30, stats["peak_bytes_in_use"] / 2**30
    elif backend == "tensorflow":
        import tensorflow as tf
        if tf.config.list_logical_devices("GPU"):
            info = tf.config.experimental.get_memory_info("GPU:0")
            return info["current"] / 2**30, info["peak"] / 2**30
    return None


def reset_device_peak():
    """Starts a new peak where the backend allows it (TensorFlow; JAX cannot)."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf
        if tf.config.list_logical_devices("GPU"):
            tf.config.experimental.reset_memory_stats("GPU:0")
            return True
    return False


def peak_memory():
    """(GiB, what was measured): device peak where the backend exposes it, else host RSS."""
    memory = device_memory()
    if memory is not None:
        kind = ("device peak_bytes_in_use" if keras.backend.backend() == "jax"
                else "device peak (tf get_memory_info)")
        return memory[1], kind
    # Linux reports ru_maxrss in KiB.
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20, "host peak RSS of the process"


def comparable_memory(name, result):
    """Peak memory of one side-by-side measurement (tools.bench.benchmark_vs_torchvision), like
    for like between ours ("deeplab_tf") and the anchor ("torchvision"), in GiB.

    On a GPU: training compares the timed steps' peak (torch resets its peak after the
    warm-up; ours is `steps_peak_gib`), inference the whole run's device peak on both
    sides (torch never resets there). On a CPU: host peak RSS of each process.
    """
    if name == "deeplab_tf":
        if result.get("device") == "gpu":
            if result.get("mode") == "train" and result.get("steps_peak_gib") is not None:
                return result["steps_peak_gib"]
            return result.get("process_peak_gib", result.get("peak_memory_gib"))
        return result.get("peak_memory_gib")
    if result.get("device") == "cuda":
        if result.get("mode") == "train":
            return result.get("peak_mem_gib")
        return result.get("device_peak_at_end_gib")
    return result.get("host_peak_rss_gib")


def whole_run_memory(name, result):
    """Device peak of the whole process (compile, autotuning, warm-up), GPU only, or None."""
    if name == "deeplab_tf":
        return result.get("process_peak_gib")
    peaks = [result.get(k) for k in ("device_peak_before_reset_gib", "device_peak_at_end_gib")]
    peaks = [p for p in peaks if p is not None]
    return max(peaks) if peaks else None


def peak_tflops(device_name, precision):
    for chip, peaks in PEAK_TFLOPS.items():
        if chip in device_name:
            return peaks[precision]
    return None


def _memory_figures(after_warmup, after_steps, steps_peak_resettable, xla):
    """The memory fields of a measurement, each saying what it covers.

    process_peak_gib: everything since the process started (compile, autotuning).
    steps_peak_gib: the timed steps alone, comparable with torch's peak after its warm-up:
      measured where the backend can reset its peak (TensorFlow); on JAX, the memory held
      after warm-up plus XLA's scratch for one step (temp), which is what a step adds.
    """
    out = dict(xla_memory=xla)
    if after_warmup is None:
        return out
    out.update(held_after_warmup_gib=after_warmup[0], process_peak_gib=after_steps[1])
    if steps_peak_resettable:
        out["steps_peak_gib"] = after_steps[1]
        out["steps_peak_kind"] = "device peak since the end of warm-up"
        out["process_peak_gib"] = max(after_warmup[1], after_steps[1])
    elif xla and xla.get("temp_gib") is not None:
        out["steps_peak_gib"] = after_warmup[0] + xla["temp_gib"]
        out["steps_peak_kind"] = "held after warm-up + XLA temp of the step"
    return out


# ---------------------------------------------------------------------------------------


def build_step(mode, depth=101, output_stride=16, batch_size=16, crop_size=513,
               precision="fp32", xla=False, num_classes=21, fold_batch_norm=True):
    """The model's step on the active backend, and a synthetic batch on its device.

    Returns (run, sync, images, labels, model_facts): run(images, labels) does one training
    step or one forward pass, sync(value) waits for it; model_facts has the parameter
    counts and forward FLOPs per image of the model as trained, on JAX XLA's buffer
    assignment of the compiled step (`xla_memory`, see `xla_memory`), and for training
    `weights`, a function returning the trainable weights as they are now (NumPy).
    """
    if mode not in ("train", "infer"):
        raise ValueError(f"mode must be 'train' or 'infer', got {mode!r}")
    backend = keras.backend.backend()
    if backend not in ("jax", "tensorflow"):
        raise ValueError(f"the benchmark runs on the jax or tensorflow backend, not {backend}")
    set_precision(precision)
    images, labels = _device_arrays(*synthetic_batch(batch_size, crop_size, num_classes))
    try:
        model = build_model(depth, output_stride, crop_size, num_classes)
        facts = dict(num_params=model.count_params(),
                     trainable_params=sum(math.prod(v.shape)
                                          for v in model.trainable_variables),
                     flops=conv_flops_per_image(model))
        facts["weights"] = None
        if mode == "train":
            optimizer = make_optimizer(precision)
            if backend == "jax":
                run, sync, memory, facts["weights"] = _jax_train_step(
                    model, optimizer, crop_size, images, labels)
            else:
                run, sync, memory, facts["weights"] = _tf_train_step(model, optimizer,
                                                                     crop_size, xla)
        else:
            model = modeling.with_upsampled_logits(model)
            if fold_batch_norm:
                from deeplab_tf.modeling import fold_batch_norm as fold_lib
                model = fold_lib.inference_model(model)
            if backend == "jax":
                run, sync, memory = _jax_infer(model, images)
            else:
                run, sync, memory = _tf_infer(model, xla)
    finally:
        keras.config.set_dtype_policy("float32")
    facts["xla_memory"] = memory
    return run, sync, images, labels, facts


def measure(mode, depth=101, output_stride=16, batch_size=16, crop_size=513,
            precision="fp32", xla=False, steps=10, warmup=3, num_classes=21,
            fold_batch_norm=True):
    """Runs the benchmark and returns its figures as a dict (see tools/bench/benchmark.py)."""
    if steps < 1 or warmup < 1:
        raise ValueError(f"steps and warmup must be >= 1 (warm-up holds the compile), "
                         f"got steps={steps} warmup={warmup}")
    backend = keras.backend.backend()
    run, sync, images, labels, facts = build_step(
        mode, depth=depth, output_stride=output_stride, batch_size=batch_size,
        crop_size=crop_size, precision=precision, xla=xla, num_classes=num_classes,
        fold_batch_norm=fold_batch_norm)
    num_params, trainable_params, flops = (facts["num_params"], facts["trainable_params"],
                                           facts["flops"])
    initial = facts["weights"]() if mode == "train" else None
    for _ in range(warmup):
        sync(run(images, labels))
    # Memory before the timed steps: what stays allocated (weights, optimizer state, the
    # batch) and the peak of everything so far (compilation and autotuning included).
    after_warmup = device_memory()
    steps_peak_resettable = reset_device_peak()
    times = []
    if mode == "train":
        start = time.perf_counter()
        for _ in range(steps):
            out = run(images, labels)
        sync(out)
        times.append((time.perf_counter() - start) / steps)
    else:
        for _ in range(steps):
            start = time.perf_counter()
            sync(run(images, labels))
            times.append(time.perf_counter() - start)

    kind, device_name = device_description()
    memory_gib, memory_kind = peak_memory()
    memory = _memory_figures(after_warmup, device_memory(), steps_peak_resettable,
                             facts["xla_memory"])
    result = dict(
        impl="deeplab_tf", backend=backend, keras=keras.__version__, device=kind,
        device_name=device_name, mode=mode, precision=precision,
        xla=(backend == "jax" or xla), depth=depth, output_stride=output_stride,
        batch_size=batch_size, crop_size=crop_size, steps=steps, warmup=warmup,
        num_params=num_params, trainable_params=trainable_params)
    if mode == "train":
        images_per_s = batch_size / times[0]
        # That the timed step trains: the last loss, and how many of the trainable
        # weights (arrays) are still their initial values after all the steps (0 expected).
        final = facts["weights"]()
        result.update(images_per_s=images_per_s, final_loss=float(np.asarray(out)),
                      weights_unchanged=sum(np.array_equal(a, b)
                                            for a, b in zip(initial, final)),
                      weights_total=len(final))
        achieved = TRAIN_FLOPS_PER_FORWARD * flops * images_per_s
    else:
        result.update(fold_batch_norm=fold_batch_norm,
                      ms_median=1e3 * statistics.median(times), ms_min=1e3 * min(times))
        achieved = flops * batch_size / statistics.median(times)
    if kind == "gpu":
        peak = peak_tflops(device_name, precision)
    else:  # the CPU's physical limit at this precision (fp16 has no CPU FMA path here)
        result["cpu"] = cpu.describe()
        gops = result["cpu"]["peak_gops"].get(precision)
        peak = None if gops is None else gops / 1e3
    result.update(
        peak_memory_gib=memory_gib, peak_memory_kind=memory_kind, **memory,
        gflops_forward_per_image=flops / 1e9, gflops_method=FLOPS_METHOD,
        achieved_tflops=achieved / 1e12, peak_tflops=peak,
        mfu=None if peak is None else achieved / (peak * 1e12))
    return result
