"""The training objective of paper 4.1: per-pixel softmax cross-entropy plus weight decay.

* Cross-entropy is averaged over the pixels whose label is not the ignore label (255).
* The logits are upsampled bilinearly to the label size ("we find it important to keep the
  groundtruths intact and instead upsample the final logits"); downsampling the labels
  instead is kept only for the Table 8 ablation (`upsample_logits=False`).
* Weight decay is TF-slim's L2 regularizer, 0.5 * wd * sum(w^2), on every convolution
  kernel (backbone, ASPP, logits) and on nothing else: not on batch-norm gamma/beta, not on
  the logits bias. The model carries no regularizers; the loop adds this term.
* Options of the authors' code the paper does not use (off by default): per-class loss
  weights and hard pixel mining (top_k_percent_pixels, hard_example_mining_step).
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
    Other crops fall between pixels: the authors' `tf.image.resize_nearest_neighbor(...,
    align_corners=True)` (train_utils.py) takes source pixel roundf(i * scale), halves
    rounded away from zero, which this follows (`tf.round` would round them to even:
    100 -> 7 picks rows 16 and 82 where the authors pick 17 and 83).
    """
    def indices(in_size, out_size):
        scale = tf.cast(in_size - 1, tf.float32) / tf.cast(tf.maximum(out_size - 1, 1),
                                                              tf.float32)
        position = tf.range(out_size, dtype=tf.float32) * scale
        # Half away from zero, as C's roundf (positions are >= 0); x - floor(x) is exact,
        # where floor(x + 0.5) would round x + 0.5 itself just below a half.
        below = tf.floor(position)
        nearest = below + tf.cast(position - below >= 0.5, tf.float32)
        return tf.minimum(tf.cast(nearest, tf.int32), in_size - 1)

    height, width = spatial_size(labels)
    labels = tf.gather(labels, indices(height, size[0]), axis=1)
    return tf.gather(labels, indices(width, size[1]), axis=2)


def logits_and_labels(logits, labels, upsample_logits=True):
    """Brings logits [B,h,w,C] and labels [B,H,W] to one resolution, as the loss sees them."""
    if upsample_logits:
        return modeling.upsample_logits(logits, spatial_size(labels)), labels
    return logits, downsample_labels(labels, spatial_size(logits))


def cross_entropy_sum(logits, labels, ignore_label=255, class_weights=None,
                      top_k_pixels=None):
    """Sum of per-pixel softmax cross-entropy over non-ignored pixels, and their count.

    Returned separately so that a replicated step can divide by the count of the whole
    global batch (an exact mean over all valid pixels of all replicas).

    `class_weights` ([num_classes]) weighs each pixel's loss by its label's weight, the
    count staying the number of pixels (the authors' `loss_weight` list). `top_k_pixels`
    keeps only that many of the largest pixel losses (the authors' top_k_percent_pixels
    hard pixel mining), and the count is then min(k, valid pixels): the authors count the
    non-zero losses among the k, the same unless a kept pixel's loss is exactly 0.
    """
    per_pixel = keras.losses.sparse_categorical_crossentropy(
        labels, logits, from_logits=True, ignore_class=ignore_label)
    valid = tf.not_equal(labels, ignore_label)
    per_pixel = per_pixel * tf.cast(valid, per_pixel.dtype)
    if class_weights is not None:
        label_weights = tf.gather(tf.cast(class_weights, per_pixel.dtype),
                                  tf.where(valid, tf.cast(labels, tf.int32), 0))
        per_pixel = per_pixel * label_weights
    count = tf.reduce_sum(tf.cast(valid, per_pixel.dtype))
    if top_k_pixels is None:
        return tf.reduce_sum(per_pixel), count
    return hardest_sum(per_pixel, top_k_pixels), tf.minimum(
        tf.cast(top_k_pixels, count.dtype), count)


def hardest_sum(pixel_losses, k):
    """Sum of the k largest entries of `pixel_losses`; k may change from step to step
    (a sort and a mask rather than top_k, whose k XLA needs at compile time)."""
    ranked = tf.sort(tf.reshape(pixel_losses, [-1]), direction="DESCENDING")
    keep = tf.range(tf.size(ranked)) < tf.cast(k, tf.int32)
    return tf.reduce_sum(tf.where(keep, ranked, tf.zeros_like(ranked)))


def mined_pixels(num_pixels, step, top_k_percent_pixels, hard_example_mining_step):
    """How many of `num_pixels` (ignored ones included) the loss keeps at `step`: all of
    them with top_k_percent_pixels=1, else the share falls linearly from 1 to
    top_k_percent_pixels over `hard_example_mining_step` steps (0: at once), as
    the authors' train_utils computes it."""
    if hard_example_mining_step:
        ratio = tf.minimum(1.0, tf.cast(step, tf.float32) / hard_example_mining_step)
    else:
        ratio = tf.constant(1.0)
    share = ratio * top_k_percent_pixels + (1.0 - ratio)
    return tf.cast(share * tf.cast(num_pixels, tf.float32), tf.int32)


def class_weights(config):
    """train.class_loss_weights as a float32 tensor, or None when empty (all weights 1).

    Raises ValueError unless it holds one non-negative weight per class.
    """
    weights = tuple(config.train.class_loss_weights or ())
    if not weights:
        return None
    if len(weights) != config.model.num_classes or min(weights) < 0:
        raise ValueError(
            f"train.class_loss_weights must hold {config.model.num_classes} non-negative "
            f"weights, one per class (model.num_classes), got {weights!r}")
    return tf.constant(weights, tf.float32)


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
