"""The paper's training augmentation (4.1) and the evaluation padding (3, "Inference").

Training: random scale in [min_scale, max_scale] (steps of `scale_step`, 0 = continuous),
pad bottom/right to the crop with the mean pixel (image) and 255 (label), random crop,
random left-right flip. One draw of (scale, offset, flip) moves image and label together;
labels use nearest neighbour only. Resizing follows the original code: bilinear (image)
and nearest (label) with aligned corners, so scaled pixel j samples source j*(H-1)/(sh-1).

Speed: the whole scaled image is never built. The crop window is mapped back to source
coordinates, only those source rows/columns are decoded (`decode_and_crop_jpeg`), and
`crop_and_resize` samples exactly the crop's pixels from them: the result is identical to
resize-then-crop, at the cost of one crop-sized output. Randomness is stateless, keyed on
(seed, element index), so the stream is the same on every run.
"""
import tensorflow as tf

from deeplab_tf.modeling.layers import MEAN_PIXEL

IGNORE_LABEL = 255


def random_scale(seed, min_scale, max_scale, scale_step):
    if scale_step and scale_step > 0:
        num_scales = int(round((max_scale - min_scale) / scale_step)) + 1
        index = tf.random.stateless_uniform([], seed, 0, num_scales, dtype=tf.int32)
        return min_scale + tf.cast(index, tf.float32) * scale_step
    return tf.random.stateless_uniform([], seed, min_scale, max_scale)


def _crop_window(scaled, crop_size, source, seed):
    """Start (in scaled pixels), valid length and source interval of the crop on one axis.

    Padding goes at the end (bottom/right), as in the original code, so the crop starts
    anywhere in [0, max(scaled, crop) - crop] and covers min(crop, scaled) real pixels.
    """
    start = tf.random.stateless_uniform(
        [], seed, 0, tf.maximum(scaled - crop_size, 0) + 1, dtype=tf.int32)
    length = tf.minimum(crop_size, scaled)
    step = tf.cast(source - 1, tf.float32) / tf.cast(tf.maximum(scaled - 1, 1), tf.float32)
    first = tf.cast(start, tf.float32) * step  # source coordinate of the first crop pixel
    last = tf.cast(start + length - 1, tf.float32) * step
    lo = tf.cast(tf.floor(first), tf.int32)
    hi = tf.minimum(tf.cast(tf.math.ceil(last), tf.int32) + 1, source)  # exclusive
    return length, first, last, lo, hi


def _boxes(y, x):
    """crop_and_resize's normalised box for the window [lo, hi) of each axis."""
    (_, y_first, y_last, y_lo, y_hi), (_, x_first, x_last, x_lo, x_hi) = y, x
    norm_y = tf.cast(tf.maximum(y_hi - y_lo - 1, 1), tf.float32)
    norm_x = tf.cast(tf.maximum(x_hi - x_lo - 1, 1), tf.float32)
    lo_y, lo_x = tf.cast(y_lo, tf.float32), tf.cast(x_lo, tf.float32)
    return tf.stack([[(y_first - lo_y) / norm_y, (x_first - lo_x) / norm_x,
                      (y_last - lo_y) / norm_y, (x_last - lo_x) / norm_x]])


def _pad_to_crop(values, crop_size, fill):
    """Pads HxWxC at the bottom/right to crop_size with `fill` (per channel), exactly."""
    shape = tf.shape(values)
    padding = [[0, crop_size - shape[0]], [0, crop_size - shape[1]], [0, 0]]
    valid = tf.pad(tf.ones(shape[:2], tf.bool), padding[:2])
    return tf.where(valid[..., None], tf.pad(values, padding), fill)


def decode_image(image_bytes, is_jpeg, window=None):
    """uint8 HxWx3 of the encoded image; only `window` (y, x, h, w) of a JPEG is decoded."""
    if is_jpeg and window is not None:
        return tf.image.decode_and_crop_jpeg(image_bytes, tf.stack(window), channels=3)
    image = tf.io.decode_png(image_bytes, channels=3) if not is_jpeg else tf.io.decode_jpeg(
        image_bytes, channels=3)
    if window is not None:
        y, x, h, w = window
        image = image[y:y + h, x:x + w]
    return image


def train_augment(image_bytes, label, seed, crop_size, min_scale, max_scale, scale_step,
                  flip, is_jpeg):
    """One training example: (float32 crop x crop x 3 in 0..255, int32 crop x crop).

    `label` is the decoded uint8 HxWx1; `seed` a stateless seed, shape [2].
    """
    seeds = tf.random.experimental.stateless_split(seed, 4)
    height, width = tf.shape(label)[0], tf.shape(label)[1]
    scale = random_scale(seeds[0], min_scale, max_scale, scale_step)
    scaled_h = tf.cast(tf.cast(height, tf.float32) * scale, tf.int32)
    scaled_w = tf.cast(tf.cast(width, tf.float32) * scale, tf.int32)
    y = _crop_window(scaled_h, crop_size, height, seeds[1])
    x = _crop_window(scaled_w, crop_size, width, seeds[2])
    window = (y[3], x[3], y[4] - y[3], x[4] - x[3])
    boxes, out_size = _boxes(y, x), tf.stack([y[0], x[0]])
    image = decode_image(image_bytes, is_jpeg, window)
    image = tf.image.crop_and_resize(image[None], boxes, [0], out_size)[0]
    label = label[window[0]:window[0] + window[2], window[1]:window[1] + window[3]]
    label = tf.image.crop_and_resize(label[None], boxes, [0], out_size, method="nearest")[0]
    image = _pad_to_crop(image, crop_size, tf.constant(MEAN_PIXEL, tf.float32))
    label = _pad_to_crop(tf.cast(label, tf.int32), crop_size, IGNORE_LABEL)
    if flip:
        do_flip = tf.random.stateless_uniform([], seeds[3]) < 0.5
        image = tf.cond(do_flip, lambda: tf.reverse(image, [1]), lambda: image)
        label = tf.cond(do_flip, lambda: tf.reverse(label, [1]), lambda: label)
    image.set_shape([crop_size, crop_size, 3])
    return image, tf.ensure_shape(label[..., 0], [crop_size, crop_size])


def eval_pad(image, label, output_stride):
    """Pads (not crops) the whole image to output_stride*k+1 at the bottom/right."""
    shape = tf.shape(label)
    target = (shape[:2] - 1 + output_stride - 1) // output_stride * output_stride + 1
    padding = [[0, target[0] - shape[0]], [0, target[1] - shape[1]], [0, 0]]
    valid = tf.pad(tf.ones(shape[:2], tf.bool), padding[:2])[..., None]
    image = tf.where(valid, tf.pad(tf.cast(image, tf.float32), padding),
                     tf.constant(MEAN_PIXEL, tf.float32))
    label = tf.where(valid, tf.pad(tf.cast(label, tf.int32), padding), IGNORE_LABEL)
    return image, label[..., 0]
