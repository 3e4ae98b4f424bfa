"""The atrous 3x3 convolution, computed as a sum of shifted 1x1 convolutions on TensorFlow.

An atrous convolution with rate r reads, for kernel tap (i, j), the input shifted by
((i - 1) r, (j - 1) r). TensorFlow runs dilated convolutions through SpaceToBatch, which is
fine forward, but whose CPU gradients slow down sharply once r is large against the feature
map: in the paper's settings (ASPP rates 6/12/18, multi-grid rates 2/4/8 on 21x21 - 65x65
maps) one fwd+bwd of a 2048->256 rate-18 convolution on 21x21 maps took 35 s, against 3 s as
nine shifted 1x1 convolutions (batch 8, this 2-core CPU; figures in WORKSPACE_NOTES.md).
Taps whose shift is at least the map size read only the zero padding, and are skipped when
the size is static: that is exact, not an approximation.

The layer owns the same 3x3 kernel as `keras.layers.Conv2D` (same weights, same
checkpoints); only TensorFlow takes the shifted-taps route, since XLA (JAX, or TF with
jit_compile) and cuDNN handle dilation natively.
"""
import keras
from keras import ops

# Below this rate TensorFlow's own kernel is as fast (rate 2: within 15% either way).
TAPS_MIN_RATE = 3


def atrous_conv_by_taps(x, kernel, rate):
    """'same'-padded, stride-1 NHWC convolution of `x` with odd-sized `kernel` at `rate`."""
    kernel_h, kernel_w = kernel.shape[0], kernel.shape[1]
    rate_h, rate_w = rate
    pad_h, pad_w = (kernel_h - 1) // 2 * rate_h, (kernel_w - 1) // 2 * rate_w
    static_h, static_w = x.shape[1], x.shape[2]
    shape = ops.shape(x)
    height, width = shape[1], shape[2]
    padded = ops.pad(x, [[0, 0], [pad_h, pad_h], [pad_w, pad_w], [0, 0]])
    output = None
    for i in range(kernel_h):
        shift_h = i * rate_h - pad_h
        if static_h is not None and abs(shift_h) >= static_h:
            continue
        for j in range(kernel_w):
            shift_w = j * rate_w - pad_w
            if static_w is not None and abs(shift_w) >= static_w:
                continue
            window = ops.slice(padded, [0, pad_h + shift_h, pad_w + shift_w, 0],
                               [shape[0], height, width, shape[3]])
            tap = ops.conv(window, kernel[i:i + 1, j:j + 1], padding="valid")
            output = tap if output is None else output + tap
    return output


@keras.saving.register_keras_serializable(package="deeplab_tf")
class AtrousConv2D(keras.layers.Conv2D):
    """`keras.layers.Conv2D`, fast at large atrous rates (stride 1, 'same' padding)."""

    def convolution_op(self, inputs, kernel):
        if (keras.backend.backend() != "tensorflow"
                or max(self.dilation_rate) < TAPS_MIN_RATE
                or self.padding != "same" or tuple(self.strides) != (1, 1)
                or self.data_format != "channels_last"
                or self.kernel_size[0] % 2 == 0 or self.kernel_size[1] % 2 == 0):
            return super().convolution_op(inputs, kernel)
        return atrous_conv_by_taps(inputs, kernel, tuple(self.dilation_rate))
