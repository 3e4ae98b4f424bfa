"""The atrous 3x3 convolution as shifted 1x1 products: on TensorFlow's CPU, and on JAX/XLA.

An atrous convolution with rate r reads, for kernel tap (i, j), the input shifted by
((i - 1) r, (j - 1) r). TensorFlow runs dilated convolutions through SpaceToBatch, which is
fine forward, but whose CPU gradients slow down sharply once r is large against the feature
map: in the paper's settings (ASPP rates 6/12/18, multi-grid rates 2/4/8 on 21x21 - 65x65
maps) one fwd+bwd of a 2048->256 rate-18 convolution on 21x21 maps took 35 s, against 3 s as
nine shifted 1x1 convolutions (batch 8, this 2-core CPU; figures in WORKSPACE_NOTES.md).
Taps whose shift is at least the map size read only the zero padding, and are skipped when
the size is static: that is exact, not an approximation.

On the GPU (JAX, XLA and cuDNN on an H200) dilated convolutions run on cuDNN's "indexed"
implicit-GEMM kernels: in a bf16 training step of ResNet-101 at OS 16 (crop 513, batch 16)
the six calls of block 4's dilated 3x3 convolutions took 5.5 of the step's 37 ms. There
the layer takes the other form of the same sum, `atrous_conv_by_output_taps`: one matrix
product of the input with all taps' kernels side by side ([C_in, taps x C_out], which XLA
hands to cuBLAS), then the taps' outputs shifted and summed in one fused pass. Its gradients
are two matrix products and a shift, and it keeps no im2col buffer for the backward pass.

The route is picked by backend AND device (`route`): the input-taps form is a CPU answer
to SpaceToBatch's slow CPU gradients; TensorFlow on a GPU also runs every dilated
convolution through SpaceToBatch, so there it takes the output-taps form that the GPU
measurements favoured on JAX. The layer owns the same 3x3 kernel as `keras.layers.Conv2D`
(same weights, same checkpoints), whatever route it takes; other backends use their native
dilated kernels.
"""
import keras
from keras import ops

# Below this rate TensorFlow's own CPU kernel is as fast (rate 2: within 15% either way).
TAPS_MIN_RATE = 3
# On a GPU every dilated rate takes the output-taps route (cuDNN's dilated kernels were slow
# from rate 2 up, see above).
OUTPUT_TAPS_MIN_RATE = 2


def _taps(kernel_size, rate, static_size):
    """(i, j, shift_h, shift_w) of every kernel tap that reads some non-padding input."""
    (kernel_h, kernel_w), (rate_h, rate_w), (static_h, static_w) = kernel_size, rate, static_size
    pad_h, pad_w = (kernel_h - 1) // 2 * rate_h, (kernel_w - 1) // 2 * rate_w
    taps = []
    for i in range(kernel_h):
        shift_h = i * rate_h - pad_h
        if static_h is not None and abs(shift_h) >= static_h:
            continue
        for j in range(kernel_w):
            shift_w = j * rate_w - pad_w
            if static_w is not None and abs(shift_w) >= static_w:
                continue
            taps.append((i, j, shift_h, shift_w))
    return taps, (pad_h, pad_w)


def atrous_conv_by_taps(x, kernel, rate):
    """'same'-padded, stride-1 NHWC convolution of `x` with odd-sized `kernel` at `rate`.

    Input side: each tap's window of the padded input, times that tap's 1x1 kernel, summed.
    """
    taps, (pad_h, pad_w) = _taps(kernel.shape[:2], rate, x.shape[1:3])
    shape = ops.shape(x)
    padded = ops.pad(x, [[0, 0], [pad_h, pad_h], [pad_w, pad_w], [0, 0]])
    output = None
    for i, j, shift_h, shift_w in taps:
        window = ops.slice(padded, [0, pad_h + shift_h, pad_w + shift_w, 0],
                           [shape[0], shape[1], shape[2], shape[3]])
        tap = ops.conv(window, kernel[i:i + 1, j:j + 1], padding="valid")
        output = tap if output is None else output + tap
    return output


def atrous_conv_by_output_taps(x, kernel, rate):
    """The same convolution, output side: one product with every tap's kernel, then shifts.

    out[h, w] = sum over taps t of (x W_t)[h + shift_h(t), w + shift_w(t)], zero outside
    the map, which is exactly 'same' zero padding of the input.
    """
    taps, (pad_h, pad_w) = _taps(kernel.shape[:2], rate, x.shape[1:3])
    filters = kernel.shape[3]
    stacked = ops.concatenate([kernel[i, j] for i, j, _, _ in taps], axis=-1)
    products = ops.einsum("nhwc,cd->nhwd", x, stacked)
    padded = ops.pad(products, [[0, 0], [pad_h, pad_h], [pad_w, pad_w], [0, 0]])
    shape = ops.shape(x)
    output = None
    for t, (_, _, shift_h, shift_w) in enumerate(taps):
        tap = ops.slice(padded, [0, pad_h + shift_h, pad_w + shift_w, t * filters],
                        [shape[0], shape[1], shape[2], filters])
        # Summed in float32, rounded once, as a convolution's accumulator does.
        tap = ops.cast(tap, "float32")
        output = tap if output is None else output + tap
    return ops.cast(output, x.dtype)


def route(backend, device_kind):
    """(smallest rate that takes a taps form, that form) for a backend and device kind.

    device_kind is "cpu" or "gpu"; (None, None) keeps the backend's own convolution.
    JAX is compiled by XLA on either device, and the output-taps form was measured there.
    """
    if backend == "jax":
        return OUTPUT_TAPS_MIN_RATE, atrous_conv_by_output_taps
    if backend == "tensorflow":
        if device_kind == "gpu":
            return OUTPUT_TAPS_MIN_RATE, atrous_conv_by_output_taps
        return TAPS_MIN_RATE, atrous_conv_by_taps
    return None, None


def tensorflow_device_kind(tensor):
    """"gpu" or "cpu": where TensorFlow runs an op on `tensor`.

    A placed tensor (a replica's, or one under `tf.device`) names its device; an unplaced
    one in a graph goes where TensorFlow's default placement puts it: the first GPU if
    there is one.
    """
    import tensorflow as tf
    device = (getattr(tensor, "device", "") or "").upper()
    if "GPU" in device:
        return "gpu"
    if "CPU" in device:
        return "cpu"
    return "gpu" if tf.config.list_logical_devices("GPU") else "cpu"


@keras.saving.register_keras_serializable(package="deeplab_tf")
class AtrousConv2D(keras.layers.Conv2D):
    """`keras.layers.Conv2D`, fast at large atrous rates (stride 1, 'same' padding)."""

    def convolution_op(self, inputs, kernel):
        backend = keras.backend.backend()
        device_kind = tensorflow_device_kind(inputs) if backend == "tensorflow" else None
        min_rate, convolution = route(backend, device_kind)
        if (convolution is None or max(self.dilation_rate) < min_rate
                or self.padding != "same" or tuple(self.strides) != (1, 1)
                or self.data_format != "channels_last" or self.groups != 1
                or self.kernel_size[0] % 2 == 0 or self.kernel_size[1] % 2 == 0):
            return super().convolution_op(inputs, kernel)
        return convolution(inputs, kernel, tuple(self.dilation_rate))
