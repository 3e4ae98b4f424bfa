"""A serving copy of a trained model with every batch norm folded into its convolution.

At inference batch norm is a fixed per-channel affine map, gamma * (y - mean) / sqrt(var +
eps) + beta, applied to the output y of the convolution before it (paper 3.1: every conv of
the ResNet and ASPP is followed by batch norm). Folding it into the convolution's kernel and
a bias gives the same outputs with one pass over each feature map instead of three, and lets
the backend fuse conv + bias + ReLU (+ residual add) into one kernel; on a CPU that is most
of the difference between a Keras graph and a hand-tuned one.

The trained model is not changed: `inference_model` returns a new functional model whose
batch norm layers are replaced by weightless identity layers of the same name. Use it for
serving and benchmarks only: it has no batch statistics left to train.
Only keras.layers / keras.ops and numpy: the GPU machine has no TensorFlow.
"""
import keras
import numpy as np

from deeplab_tf.modeling.atrous_conv import AtrousConv2D


@keras.saving.register_keras_serializable(package="deeplab_tf")
class FoldedBatchNorm(keras.layers.Layer):
    """Where a batch norm was: an identity, its affine map now lives in the conv before it.

    Unlike `keras.layers.Identity` it accepts the `training` and `mask` arguments the
    functional graph recorded for the batch norm it replaces.
    """

    def call(self, inputs, training=None, mask=None):
        del training, mask
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape


ARCHITECTURE_ATTRIBUTES = ("num_classes", "depth", "output_stride", "multi_grid", "head",
                           "extra_blocks")


def folded_count(model):
    """How many of `model`'s batch norm layers are folded (`FoldedBatchNorm`)."""
    return sum(isinstance(layer, FoldedBatchNorm) for layer in model.layers)


def _foldable_pairs(model):
    """{conv layer: batch norm layer} for every BN whose sole input is a Conv2D used once."""
    pairs = {}
    for layer in model.layers:
        if not isinstance(layer, keras.layers.BatchNormalization):
            continue
        if len(layer._inbound_nodes) != 1:
            continue  # a shared BN cannot be folded into one conv
        producer = layer.input._keras_history.operation
        if (isinstance(producer, keras.layers.Conv2D)
                and type(producer) in (keras.layers.Conv2D, AtrousConv2D)
                and producer.data_format == "channels_last"
                and layer.axis in (-1, 3) and producer.groups == 1
                and len(producer._inbound_nodes) == 1
                and len(producer._outbound_nodes) == 1):
            pairs[producer.name] = layer
    return pairs


def folded_kernel_and_bias(conv, bn):
    """The kernel and bias of one convolution that computes bn(conv(x)) at inference."""
    kernel = np.asarray(keras.ops.convert_to_numpy(conv.kernel), np.float64)
    filters = kernel.shape[-1]
    mean = np.asarray(keras.ops.convert_to_numpy(bn.moving_mean), np.float64)
    variance = np.asarray(keras.ops.convert_to_numpy(bn.moving_variance), np.float64)
    gamma = (np.asarray(keras.ops.convert_to_numpy(bn.gamma), np.float64) if bn.scale
             else np.ones(filters))
    beta = (np.asarray(keras.ops.convert_to_numpy(bn.beta), np.float64) if bn.center
            else np.zeros(filters))
    bias = (np.asarray(keras.ops.convert_to_numpy(conv.bias), np.float64) if conv.use_bias
            else np.zeros(filters))
    scale = gamma / np.sqrt(variance + bn.epsilon)
    return ((kernel * scale).astype(np.float32),
            ((bias - mean) * scale + beta).astype(np.float32))


def inference_model(model, image_shape=None):
    """A copy of functional `model` with batch norm folded into the preceding convolutions.

    Args:
      model: a functional Keras model (e.g. `deeplabv3(...)` or `with_upsampled_logits`).
      image_shape: optional (height, width, channels) for the copy's input; a static shape
        lets the backend specialise its kernels. Default: the model's own input shape.

    Returns a new `keras.Model` with its own weights: the same outputs as `model(x,
    training=False)` up to float rounding, every folded conv with a bias, every folded BN
    a weightless `FoldedBatchNorm` layer of the same name. Convolutions not followed by a batch norm
    (e.g. the logits) are copied unchanged.
    """
    if not isinstance(model, keras.Model) or not hasattr(model, "_run_through_graph"):
        raise ValueError(f"inference_model needs a functional Keras model, got {model!r}")
    pairs = _foldable_pairs(model)
    folded_bn = {bn.name for bn in pairs.values()}

    def clone(layer):
        config = layer.get_config()
        if layer.name in pairs:
            config["use_bias"] = True
            return type(layer).from_config(config)
        if layer.name in folded_bn:
            return FoldedBatchNorm(name=layer.name, dtype=layer.dtype_policy)
        return layer.__class__.from_config(config)

    input_tensors = None
    if image_shape is not None:
        input_tensors = keras.Input(shape=tuple(image_shape), name=model.input.name,
                                    dtype=model.input.dtype)
    copy = keras.models.clone_model(model, input_tensors=input_tensors,
                                    clone_function=clone)
    # The clone is a plain functional model: layer names are unique within it.
    for layer in model.layers:
        if layer.name in folded_bn or not layer.weights:
            continue
        target = copy.get_layer(layer.name)
        if layer.name in pairs:
            target.set_weights(list(folded_kernel_and_bias(layer, pairs[layer.name])))
        else:
            target.set_weights(layer.get_weights())
    # A DeepLabV3's architecture attributes (what evaluation and export read: the output
    # stride, the number of classes) travel with the copy, which is a plain functional model.
    for name in ARCHITECTURE_ATTRIBUTES:
        if hasattr(model, name):
            setattr(copy, name, getattr(model, name))
    return copy
