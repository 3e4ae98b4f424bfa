"""Whole-image inference with multi-scale inputs and left-right flips (paper 4.1, 4.3).

The paper's test protocol (4.1: "crop size to be 513 during both training and test"; the
authors' eval.py `eval_crop_size` and input_preprocess.py): every image is padded, never
cropped, at the bottom/right with the mean pixel to the evaluation crop size (513x513 on
VOC, 1025x2049 on Cityscapes; a larger image to the next output_stride*k+1 that holds it),
so the image-pooling branch averages over the same map as in training (33x33 at OS 16).
The prediction is cut back to the image's own size. With crop_size=None each image is
padded only to the smallest output_stride*k+1 holding it (config eval.pad_to="smallest"),
a different protocol. Either way the padded size is output_stride*k+1: with the slim
padding of the backbone feature pixel i then sits exactly on input pixel OS*i, and logits
upsampled bilinearly with aligned corners land on the input grid.

Multi-scale + flip (paper 4.3, Table 4 "MS", "Flip"), as the authors' model.py
`predict_labels_multi_scale` / `multi_scale_logits`: the padded input is resized (aligned
corners) to `scale_dimension(size, scale)` = int((size - 1) * scale + 1), optionally
mirrored, run through the model; its logits are resized to scale_dimension(size,
max(1, scale) / OS), un-mirrored, resized to the padded size, and the softmax class
probabilities are averaged over all inputs. Scale 1.0 is never resampled, so scales=(1.0,)
without flip is exactly plain inference.

Everything here is TensorFlow ops, traceable with dynamic image sizes: the evaluation and
the exported SavedModel run the same function.
"""
import weakref

import tensorflow as tf

from deeplab_tf.modeling import MEAN_PIXEL, effective_output_stride, plan_blocks


def model_output_stride(model):
    """The output stride a DeepLabV3 model really has (also for output_stride=None).

    Raises ValueError for another model (a `model.builder` of one's own): evaluation,
    export and prediction pad and resize by the DeepLabv3 layout.
    """
    if not all(hasattr(model, name) for name in ("depth", "multi_grid", "extra_blocks")):
        raise ValueError(f"model {model.name!r} is not a DeepLabv3 model (model.builder): "
                         "evaluation, export and prediction run DeepLabv3 models only")
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


def padded_size(size, output_stride, crop_size=None):
    """The evaluation input size along one axis (ints or int tensors).

    `crop_size` (the evaluation crop) or, for a larger image or crop_size None, the image's
    own size, rounded up to the next output_stride*k+1.
    """
    if crop_size is not None:
        size = tf.maximum(size, crop_size)
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


def scale_dimension(size, scale):
    """int((size - 1) * scale + 1) in float32: the authors' model.scale_dimension.

    An output_stride*k+1 size stays one for the paper's scales (513 * 0.75 -> 385 = 16*24+1).
    """
    return tf.cast((tf.cast(size, tf.float32) - 1.0) * scale + 1.0, tf.int32)


def _padded_images(images, output_stride, crop_size):
    """(images padded to the evaluation size, its height, its width)."""
    shape = tf.shape(images)
    crop_height, crop_width = (None, None) if crop_size is None else crop_size
    height = padded_size(shape[1], output_stride, crop_height)
    width = padded_size(shape[2], output_stride, crop_width)
    return pad_with_mean_pixel(images, height, width), height, width


def full_resolution_logits(model, images, output_stride=None, crop_size=None):
    """Logits at the images' own size: pad, run, upsample, cut the padding off."""
    output_stride = output_stride or model_output_stride(model)
    shape = tf.shape(images)
    padded, padded_height, padded_width = _padded_images(images, output_stride, crop_size)
    logits = traced_model(model)(padded)
    logits = resize_aligned(logits, tf.stack([padded_height, padded_width]))
    return logits[:, :shape[1], :shape[2]]


def predict_probabilities(model, images, scales=(1.0,), flip=False, output_stride=None,
                          crop_size=None):
    """Class probabilities [B,H,W,C] for images [B,H,W,3] (RGB 0..255, any dtype).

    The average of softmax(logits) over `scales` x (identity, left-right flip if `flip`),
    every term computed on the input padded to the evaluation size (`crop_size`, (height,
    width) or None for the smallest output_stride*k+1) and cut back to the input's size.
    """
    if not scales:
        raise ValueError("scales must name at least one scale, e.g. (1.0,)")
    output_stride = output_stride or model_output_stride(model)
    images = tf.cast(images, tf.float32)
    shape = tf.shape(images)
    height, width = shape[1], shape[2]
    padded, padded_height, padded_width = _padded_images(images, output_stride, crop_size)
    total = None
    for scale in scales:
        if scale <= 0:
            raise ValueError(f"scales must be positive, got {scale}")
        scaled = padded
        if scale != 1.0:
            scaled = resize_aligned(padded, tf.stack([scale_dimension(padded_height, scale),
                                                      scale_dimension(padded_width, scale)]))
        for mirrored in ((False, True) if flip else (False,)):
            inputs = tf.reverse(scaled, axis=[2]) if mirrored else scaled
            logits = traced_model(model)(inputs)
            if scale != 1.0:
                # multi_scale_logits brings every scale's logits to the size of the
                # largest of (1, scale) first.
                logits_scale = max(1.0, scale) / output_stride
                logits = resize_aligned(logits, tf.stack([
                    scale_dimension(padded_height, logits_scale),
                    scale_dimension(padded_width, logits_scale)]))
            if mirrored:
                logits = tf.reverse(logits, axis=[2])
            logits = resize_aligned(logits, tf.stack([padded_height, padded_width]))
            probabilities = tf.nn.softmax(logits[:, :height, :width], axis=-1)
            total = probabilities if total is None else total + probabilities
    return total / float(len(scales) * (2 if flip else 1))


def predict_labels(model, images, scales=(1.0,), flip=False, output_stride=None,
                   crop_size=None):
    """int32 class ids [B,H,W]: the argmax of `predict_probabilities`."""
    probabilities = predict_probabilities(model, images, scales, flip, output_stride,
                                          crop_size)
    return tf.argmax(probabilities, axis=-1, output_type=tf.int32)


def make_predict_fn(model, scales=(1.0,), flip=False, crop_size=None):
    """A tf.function images [B,H,W,3] float32 -> (labels, probabilities), any size.

    `crop_size`: the evaluation crop (height, width) images are padded to, or None for
    the smallest output_stride*k+1 (config: `config.eval_crop_size(config.eval)`).
    One trace serves every image size (the input signature leaves them unknown).
    """
    output_stride = model_output_stride(model)
    scales = tuple(float(s) for s in scales)
    crop_size = None if crop_size is None else tuple(int(s) for s in crop_size)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    def predict(images):
        probabilities = predict_probabilities(model, images, scales, flip, output_stride,
                                              crop_size)
        return tf.argmax(probabilities, axis=-1, output_type=tf.int32), probabilities

    return predict
