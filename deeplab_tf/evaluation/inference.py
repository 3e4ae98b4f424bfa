"""Whole-image inference with multi-scale inputs and left-right flips (paper 4.1, 4.3).

"During inference ... we pad the image to OS*k+1" (whole-image inference, no crops): with
the slim padding of the backbone, feature pixel i then sits exactly on input pixel OS*i, and
the logits upsampled bilinearly with aligned corners land on the input grid. The padding
(the mean pixel, i.e. zero after the model's mean subtraction) is cut off again at full
resolution.

Multi-scale + flip (paper 4.3, Table 4 "MS", "Flip"): the image is resized by each scale
(aligned corners), optionally mirrored, run through the model, and the logits are brought
back to the original size (and un-mirrored); the softmax class probabilities are averaged
over all inputs, as the authors' `predict_labels_multi_scale` does. Scale 1.0 is never
resampled, so scales=(1.0,) without flip is exactly plain inference.

Everything here is TensorFlow ops, traceable with dynamic image sizes: the evaluation and
the exported SavedModel run the same function.
"""
import weakref

import tensorflow as tf

from deeplab_tf.modeling import MEAN_PIXEL, effective_output_stride, plan_blocks


def model_output_stride(model):
    """The output stride a DeepLabV3 model really has (also for output_stride=None)."""
    return effective_output_stride(
        plan_blocks(model.depth, model.output_stride, model.multi_grid, model.extra_blocks))


_TRACED_MODELS = weakref.WeakKeyDictionary()


def traced_model(model):
    """`model` as one tf.function over images of any size, traced once per model.

    Every scale and flip (and every signature of an export) then calls the same graph
    instead of re-tracing the 50-100 layer Keras model, which dominates export time.
    """
    function = _TRACED_MODELS.get(model)
    if function is None:
        # A weak reference: the cached function must not keep its model alive (tools that
        # evaluate checkpoint after checkpoint build a new model each time).
        model_ref = weakref.ref(model)
        function = tf.function(
            lambda images: model_ref()(images, training=False),
            input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
        _TRACED_MODELS[model] = function
    return function


def padded_size(size, output_stride):
    """The smallest output_stride*k+1 that is >= size (works on ints and int tensors)."""
    return (size + output_stride - 2) // output_stride * output_stride + 1


def pad_with_mean_pixel(images, height, width):
    """Pads [B,h,w,3] images at the bottom and right to height x width with the mean pixel."""
    shape = tf.shape(images)
    paddings = [[0, 0], [0, height - shape[1]], [0, width - shape[2]]]
    # One channel at a time keeps the image values exact (no subtract-pad-add round trip).
    return tf.stack([tf.pad(images[..., c], paddings, constant_values=MEAN_PIXEL[c])
                     for c in range(3)], axis=-1)


def resize_aligned(images, size):
    """Bilinear resize with aligned corners, the geometry the model's upsampling uses."""
    return tf.raw_ops.ResizeBilinear(images=images, size=size, align_corners=True,
                                     half_pixel_centers=False)


def full_resolution_logits(model, images, output_stride=None):
    """Logits at the images' own size: pad to OS*k+1, run, upsample, cut the padding off."""
    output_stride = output_stride or model_output_stride(model)
    shape = tf.shape(images)
    height, width = shape[1], shape[2]
    padded_height = padded_size(height, output_stride)
    padded_width = padded_size(width, output_stride)
    padded = pad_with_mean_pixel(images, padded_height, padded_width)
    logits = traced_model(model)(padded)
    logits = resize_aligned(logits, tf.stack([padded_height, padded_width]))
    return logits[:, :height, :width]


def scaled_size(size, scale):
    """round(scale * size), at least one pixel."""
    scaled = tf.math.floor(tf.cast(size, tf.float32) * scale + 0.5)
    return tf.maximum(tf.cast(scaled, tf.int32), 1)


def predict_probabilities(model, images, scales=(1.0,), flip=False, output_stride=None):
    """Class probabilities [B,H,W,C] for images [B,H,W,3] (RGB 0..255, any dtype).

    The average of softmax(logits) over `scales` x (identity, left-right flip if `flip`),
    every term taken at the input's full resolution.
    """
    if not scales:
        raise ValueError("scales must name at least one scale, e.g. (1.0,)")
    images = tf.cast(images, tf.float32)
    shape = tf.shape(images)
    height, width = shape[1], shape[2]
    total = None
    for scale in scales:
        if scale <= 0:
            raise ValueError(f"scales must be positive, got {scale}")
        if scale == 1.0:
            scaled = images
        else:
            scaled = resize_aligned(
                images, tf.stack([scaled_size(height, scale), scaled_size(width, scale)]))
        for mirrored in ((False, True) if flip else (False,)):
            inputs = tf.reverse(scaled, axis=[2]) if mirrored else scaled
            logits = full_resolution_logits(model, inputs, output_stride)
            if mirrored:
                logits = tf.reverse(logits, axis=[2])
            if scale != 1.0:
                logits = resize_aligned(logits, tf.stack([height, width]))
            probabilities = tf.nn.softmax(logits, axis=-1)
            total = probabilities if total is None else total + probabilities
    return total / float(len(scales) * (2 if flip else 1))


def predict_labels(model, images, scales=(1.0,), flip=False, output_stride=None):
    """int32 class ids [B,H,W]: the argmax of `predict_probabilities`."""
    probabilities = predict_probabilities(model, images, scales, flip, output_stride)
    return tf.argmax(probabilities, axis=-1, output_type=tf.int32)


def make_predict_fn(model, scales=(1.0,), flip=False):
    """A tf.function images [B,H,W,3] float32 -> (labels, probabilities), any size.

    One trace serves every image size (the input signature leaves them unknown).
    """
    output_stride = model_output_stride(model)
    scales = tuple(float(s) for s in scales)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    def predict(images):
        probabilities = predict_probabilities(model, images, scales, flip, output_stride)
        return tf.argmax(probabilities, axis=-1, output_type=tf.int32), probabilities

    return predict
