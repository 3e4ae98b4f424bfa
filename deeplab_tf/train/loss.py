"""The training objective of paper 4.1: per-pixel softmax cross-entropy plus weight decay.

* Cross-entropy is averaged over the pixels whose label is not the ignore label (255).
* The logits are upsampled bilinearly to the label size ("we find it important to keep the
  groundtruths intact and instead upsample the final logits"); downsampling the labels
  instead is kept only for the Table 8 ablation (`upsample_logits=False`).
* Weight decay is TF-slim's L2 regularizer, 0.5 * wd * sum(w^2), on every convolution
  kernel (backbone, ASPP, logits) and on nothing else: not on batch-norm gamma/beta, not on
  the logits bias. The model carries no regularizers; the loop adds this term.
"""
import keras
import tensorflow as tf

from deeplab_tf import modeling


def spatial_size(tensor):
    """(height, width) of an NHW[C] tensor: static ints where known, else scalars."""
    dynamic = tf.shape(tensor)
    return tuple(tensor.shape[i] if tensor.shape[i] is not None else dynamic[i]
                 for i in (1, 2))


def downsample_labels(labels, size):
    """Nearest-neighbour label subsampling with aligned corners (Table 8, "no UL").

    Feature pixel i sits on input pixel output_stride * i (slim padding, crops of size
    output_stride * k + 1), so the aligned-corner nearest sample is exactly that pixel.
    """
    def indices(in_size, out_size):
        scale = tf.cast(in_size - 1, tf.float32) / tf.cast(tf.maximum(out_size - 1, 1),
                                                              tf.float32)
        return tf.cast(tf.round(tf.range(out_size, dtype=tf.float32) * scale), tf.int32)

    height, width = spatial_size(labels)
    labels = tf.gather(labels, indices(height, size[0]), axis=1)
    return tf.gather(labels, indices(width, size[1]), axis=2)


def logits_and_labels(logits, labels, upsample_logits=True):
    """Brings logits [B,h,w,C] and labels [B,H,W] to one resolution, as the loss sees them."""
    if upsample_logits:
        return modeling.upsample_logits(logits, spatial_size(labels)), labels
    return logits, downsample_labels(labels, spatial_size(logits))


def cross_entropy_sum(logits, labels, ignore_label=255):
    """Sum of per-pixel softmax cross-entropy over non-ignored pixels, and their count.

    Returned separately so that a replicated step can divide by the count of the whole
    global batch (an exact mean over all valid pixels of all replicas).
    """
    per_pixel = keras.losses.sparse_categorical_crossentropy(
        labels, logits, from_logits=True, ignore_class=ignore_label)
    valid = tf.cast(tf.not_equal(labels, ignore_label), per_pixel.dtype)
    return tf.reduce_sum(per_pixel * valid), tf.reduce_sum(valid)


def cross_entropy(logits, labels, ignore_label=255, upsample_logits=True):
    """Mean softmax cross-entropy over non-ignored pixels (paper 4.1)."""
    logits, labels = logits_and_labels(logits, labels, upsample_logits)
    total, count = cross_entropy_sum(logits, labels, ignore_label)
    return total / tf.maximum(count, 1.0)


def conv_kernels(model):
    """Every convolution kernel of `model`: what slim's weights_regularizer covers."""
    kernels = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kernels.append(layer.kernel)
        elif hasattr(layer, "layers"):  # a nested model
            kernels.extend(conv_kernels(layer))
    return kernels


def weight_decay(kernels, weight_decay_rate):
    """slim.l2_regularizer: 0.5 * wd * sum of squared weights, in float32."""
    if not weight_decay_rate or not kernels:
        return tf.constant(0.0)
    squares = [tf.reduce_sum(tf.square(tf.cast(k, tf.float32))) for k in kernels]
    return 0.5 * weight_decay_rate * tf.add_n(squares)


def confusion_matrix(logits, labels, num_classes, ignore_label=255):
    """Confusion matrix [true, predicted] over non-ignored pixels of a batch (float32)."""
    predictions = tf.argmax(logits, axis=-1, output_type=tf.int32)
    valid = tf.not_equal(labels, ignore_label)
    return tf.math.confusion_matrix(
        tf.boolean_mask(labels, valid), tf.boolean_mask(predictions, valid),
        num_classes=num_classes, dtype=tf.float32)
