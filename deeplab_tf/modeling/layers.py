"""Small building blocks shared by the backbone and the ASPP head.

Only `keras.layers` and `keras.ops`: the model must run on the TensorFlow and JAX backends
alike (the GPU machine has no TensorFlow); both are tested (tests/test_backends.py).
"""
import keras
from keras import ops

from deeplab_tf.modeling.atrous_conv import AtrousConv2D
from deeplab_tf.modeling.batch_norm import BatchNormalization, freeze_batch_norm  # noqa: F401

# Paper 4.1: "The batch normalization parameters are trained with decay = 0.9997".
BATCH_NORM_DECAY = 0.9997
BATCH_NORM_EPSILON = 1e-5

# The mean pixel (RGB) subtracted from the 0-255 input, and the value images are padded
# with: the authors' core/feature_extractor.py `_MEAN_RGB` for resnet_v1_50/101. (The slim
# ImageNet checkpoints were trained with 123.68/116.78/103.94; the numbers of the paper
# come from the authors' code, and the two differ by less than one grey level.)
MEAN_PIXEL = (123.15, 115.90, 103.06)

# Initialisers of new layers, as slim's defaults in the authors' scopes. The ResNet scope
# (resnet_arg_scope: conv1, blocks 1-7) uses slim.variance_scaling_initializer(): a normal
# of stddev sqrt(1.3 * 2 / fan_in) truncated at two stddev. Keras divides its stddev by
# 0.8796 (the stddev of a two-sigma truncated unit normal), hence the scale below.
RESNET_INITIALIZER = dict(class_name="VarianceScaling", config=dict(
    scale=2.6 * 0.87962566103423978 ** 2, mode="fan_in", distribution="truncated_normal"))
# The ASPP head (aspp0-3, image_pooling, concat_projection) sets no initialiser, so it gets
# slim.conv2d's default xavier_initializer(): Glorot uniform.
HEAD_INITIALIZER = "glorot_uniform"
# model.py `_get_branch_logits`: truncated normal of stddev 0.01; biases start at zero.
LOGITS_INITIALIZER = dict(class_name="TruncatedNormal", config=dict(stddev=0.01))


def conv2d_same(x, filters, kernel_size, stride=1, atrous_rate=1, name=None,
                kernel_initializer=RESNET_INITIALIZER):
    """Convolution without bias, padded like TF-slim's `conv2d_same`.

    A strided convolution pads explicitly and symmetrically for the effective (atrous) kernel,
    then runs VALID, so output pixel i is centred on input pixel stride*i. That is what makes
    an output-stride-16 feature map equal the output-stride-8 map sampled every second pixel.
    """
    # Every kxk conv is an AtrousConv2D whatever its rate and stride, so the layer list (and
    # the .weights.h5 layout, which Keras keys by class) is the same at every output stride.
    conv = AtrousConv2D if kernel_size > 1 else keras.layers.Conv2D
    initializer = keras.initializers.get(kernel_initializer)  # a fresh one per layer
    if stride == 1:
        return conv(
            filters, kernel_size, padding="same", dilation_rate=atrous_rate,
            use_bias=False, kernel_initializer=initializer, name=name)(x)
    effective = kernel_size + (kernel_size - 1) * (atrous_rate - 1)
    pad_total = effective - 1
    pad_begin = pad_total // 2
    padding = (pad_begin, pad_total - pad_begin)
    x = keras.layers.ZeroPadding2D((padding, padding), name=f"{name}_pad")(x)
    return conv(
        filters, kernel_size, strides=stride, padding="valid", dilation_rate=atrous_rate,
        use_bias=False, kernel_initializer=initializer, name=name)(x)


@keras.saving.register_keras_serializable(package="deeplab_tf")
class Dropout(keras.layers.Dropout):
    """keras Dropout whose masks do not depend on how the global batch is split.

    The mask of an example is a function of the layer's seed, the step (the seed
    generator's state, which advances once per training call) and the example's index in
    the global batch: every replica draws the mask of the whole global batch from the
    same seed and keeps its own rows (replica r of N holds rows r*b..(r+1)*b-1, as
    tf.distribute splits a batch). Keras' own dropout draws one mask per replica from the
    seed state they all copy, so every replica dropped the same units and N replicas were
    no longer one device. On one device (and on JAX) the mask is the one Keras draws.

    Keras also keeps the seed-generator state out of the layer's checkpoint dependencies,
    so a run resumed from `tf.train.Checkpoint(model=...)` would draw its first steps'
    masks again; listed as a child here, the state is saved and restored with the model.
    """

    def call(self, inputs, training=False):
        if not training or self.rate == 0:
            return inputs
        replica, replicas = _replica_position()
        batch = ops.shape(inputs)[0]
        global_shape = (batch * replicas, *ops.shape(inputs)[1:])
        # 0 or 1 / (1 - rate) for each value of the global batch.
        mask = keras.random.dropout(ops.ones(global_shape, inputs.dtype), self.rate,
                                    noise_shape=self._global_noise_shape(global_shape),
                                    seed=self.seed_generator)
        if replicas > 1:
            mask = mask[replica * batch:(replica + 1) * batch]
        return inputs * mask

    def _global_noise_shape(self, global_shape):
        if self.noise_shape is None:
            return None
        return tuple(global_shape[i] if size is None else size
                     for i, size in enumerate(self.noise_shape))

    def _trackable_children(self, save_type="checkpoint", **kwargs):  # TensorFlow only
        children = super()._trackable_children(save_type, **kwargs)
        if save_type == "checkpoint" and getattr(self, "seed_generator", None) is not None:
            children["seed_generator_state"] = self.seed_generator.state
        return children


def _replica_position():
    """(this replica's index, replicas in sync) under a tf.distribute replica context;
    (0, 1) elsewhere and on the JAX backend."""
    if keras.backend.backend() != "tensorflow":
        return 0, 1
    import tensorflow as tf
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return 0, 1
    return context.replica_id_in_sync_group, context.num_replicas_in_sync


def logits_dtype():
    """The logits layer's dtype: float32 under any mixed-precision policy (the loss and
    softmax need it), float64 under a float64 policy (one dtype for every weight)."""
    return "float64" if keras.config.dtype_policy().compute_dtype == "float64" else "float32"


def batch_norm(x, name, decay=BATCH_NORM_DECAY, epsilon=BATCH_NORM_EPSILON,
               gamma_initializer="ones"):
    return BatchNormalization(momentum=decay, epsilon=epsilon, name=name,
                              gamma_initializer=gamma_initializer)(x)


def conv_bn_relu(x, filters, kernel_size, name, stride=1, atrous_rate=1, relu=True,
                 batch_norm_decay=BATCH_NORM_DECAY, batch_norm_epsilon=BATCH_NORM_EPSILON,
                 kernel_initializer=RESNET_INITIALIZER, gamma_initializer="ones"):
    x = conv2d_same(x, filters, kernel_size, stride, atrous_rate, name=name,
                    kernel_initializer=kernel_initializer)
    x = batch_norm(x, f"{name}_bn", batch_norm_decay, batch_norm_epsilon, gamma_initializer)
    if relu:
        x = keras.layers.ReLU(name=f"{name}_relu")(x)
    return x


def _interpolation_matrix(in_size, out_size, dtype):
    """Rows of bilinear weights mapping `in_size` samples to `out_size`, corners aligned.

    The tent kernel max(0, 1 - |position - j|) is exactly linear interpolation between the
    two neighbours of `position`, so no gather is needed and the result is one matmul.
    """
    in_f = ops.cast(in_size, "float32")
    out_f = ops.cast(out_size, "float32")
    scale = (in_f - 1.0) / ops.maximum(out_f - 1.0, 1.0)
    position = ops.cast(ops.arange(out_size), "float32") * scale
    source = ops.cast(ops.arange(in_size), "float32")
    weights = ops.relu(1.0 - ops.abs(position[:, None] - source[None, :]))
    return ops.cast(weights, dtype)


def resize_bilinear(x, size):
    """Bilinear resize of an NHWC tensor with aligned corners, on TensorFlow and JAX.

    The DeepLab code resizes with align_corners=True, and with the slim padding above a
    feature pixel i sits on input pixel output_stride*i: aligned corners are the geometry
    that matches, for inputs of size output_stride*k+1 exactly.
    """
    height, width = size
    shape = ops.shape(x)
    rows = _interpolation_matrix(shape[1], height, x.dtype)
    cols = _interpolation_matrix(shape[2], width, x.dtype)
    x = ops.einsum("ih,bhwc->biwc", rows, x)
    return ops.einsum("jw,biwc->bijc", cols, x)


@keras.saving.register_keras_serializable(package="deeplab_tf")
class ResizeLike(keras.layers.Layer):
    """Resizes its first input bilinearly (aligned corners) to the height and width of the second."""

    def call(self, x, reference):
        shape = ops.shape(reference)
        return resize_bilinear(x, (shape[1], shape[2]))

    def compute_output_shape(self, x_shape, reference_shape):
        return (x_shape[0], reference_shape[1], reference_shape[2], x_shape[3])
