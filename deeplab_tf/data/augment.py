"""The paper's training augmentation (4.1) and the evaluation padding (3, "Inference").

Training: random scale in [min_scale, max_scale] (steps of `scale_step`, 0 = continuous),
pad bottom/right to the crop with the mean pixel (image) and 255 (label), random crop,
random left-right flip. One draw of (scale, offset, flip) moves image and label together;
labels use nearest neighbour only, with the same sample positions as the image's bilinear
resize (tf.image.resize, half-pixel centres).

Speed: the whole scaled image is never built. The crop is mapped back to a source window,
only that window is decoded (`decode_and_crop_jpeg`) and resized straight to the crop's
real pixels; the mean-pixel padding is a concatenation of constant slices; the label is
two row gathers. At scale 2 this decodes a quarter of the image and resizes to one crop
instead of a 4x larger image. Randomness is stateless, keyed on (seed, element index), so
the stream is the same on every run.
"""
import numpy as np
import tensorflow as tf

from deeplab_tf.modeling.layers import MEAN_PIXEL

IGNORE_LABEL = 255


def random_scale(seed, min_scale, max_scale, scale_step):
    if scale_step and scale_step > 0:
        num_scales = int(round((max_scale - min_scale) / scale_step)) + 1
        index = tf.random.stateless_uniform([], seed, 0, num_scales, dtype=tf.int32)
        return min_scale + tf.cast(index, tf.float32) * scale_step
    return tf.random.stateless_uniform([], seed, min_scale, max_scale)


def _axis(scaled, crop_size, source, seed):
    """The crop along one axis: a source interval [lo, lo + size) resized to `length`.

    Padding goes at the end (bottom/right), as in the original code. When the scaled image
    is longer than the crop, the crop is a random source interval of crop/scale pixels
    (rounded to whole pixels, so the scale is exact up to half a source pixel); otherwise
    it is the whole axis, resized to `scaled` pixels and padded.
    """
    length = tf.minimum(crop_size, scaled)
    size = tf.where(scaled > crop_size, tf.cast(tf.round(
        tf.cast(crop_size * source, tf.float32) / tf.cast(scaled, tf.float32)), tf.int32),
                    source)
    size = tf.clip_by_value(size, 1, source)
    lo = tf.random.stateless_uniform([], seed, 0, source - size + 1, dtype=tf.int32)
    # Nearest neighbour for the label with tf.image.resize's half-pixel centres: window
    # offset k of crop pixel i. Past the image, index `source` (see `_nearest_label`).
    step = tf.cast(size, tf.float32) / tf.cast(length, tf.float32)
    offset = tf.minimum(tf.cast(tf.floor(
        (tf.range(crop_size, dtype=tf.float32) + 0.5) * step), tf.int32), size - 1)
    inside = tf.range(crop_size) < length
    return {"length": length, "lo": lo, "size": size,
            "nearest": tf.where(inside, lo + offset, source),
            # Flipped: the image resizes the mirrored window (ties in the rounding go the
            # mirrored way) and its padding moves to the front.
            "nearest_flipped": tf.roll(tf.where(inside, lo + size - 1 - offset, source),
                                       crop_size - length, 0)}


def _nearest_label(label, rows, columns):
    """label[rows][:, columns] with index `height`/`width` meaning the ignore label.

    Two row gathers (with transposes) instead of a resize: exact, and several times
    cheaper than resize_nearest_neighbor at this size.
    """
    padded = tf.pad(label, [[0, 1], [0, 1]], constant_values=IGNORE_LABEL)
    picked = tf.transpose(tf.gather(tf.transpose(tf.gather(padded, rows)), columns))
    return tf.cast(picked, tf.int32)


def decode_image(image_bytes, is_jpeg, window=None):
    """uint8 HxWx3 of the encoded image; only `window` (y, x, h, w) of a JPEG is decoded."""
    if is_jpeg and window is not None:
        return tf.image.decode_and_crop_jpeg(image_bytes, tf.stack(window), channels=3)
    image = (tf.io.decode_jpeg if is_jpeg else tf.io.decode_png)(image_bytes, channels=3)
    if window is not None:
        y, x, h, w = window
        image = image[y:y + h, x:x + w]
    return image


def train_augment(image_bytes, label, seed, crop_size, min_scale, max_scale, scale_step,
                  flip, is_jpeg, image_method="bilinear"):
    """One training example: (float32 crop x crop x 3 in 0..255, int32 crop x crop).

    `label` is the decoded uint8 HxWx1; `seed` a stateless seed, shape [2].
    `image_method="nearest"` exists for tests: then image and label pixels correspond
    one to one.
    """
    seeds = tf.random.experimental.stateless_split(seed, 4)
    height, width = tf.shape(label)[0], tf.shape(label)[1]
    scale = random_scale(seeds[0], min_scale, max_scale, scale_step)
    scaled_h = tf.maximum(tf.cast(tf.cast(height, tf.float32) * scale, tf.int32), 1)
    scaled_w = tf.maximum(tf.cast(tf.cast(width, tf.float32) * scale, tf.int32), 1)
    y = _axis(scaled_h, crop_size, height, seeds[1])
    x = _axis(scaled_w, crop_size, width, seeds[2])
    flipped = tf.random.stateless_uniform([], seeds[3]) < 0.5 if flip else tf.constant(False)

    source = decode_image(image_bytes, is_jpeg, (y["lo"], x["lo"], y["size"], x["size"]))
    # Flipping the (uint8, at most image-sized) source before the symmetric half-pixel
    # resize equals flipping the float crop after it, at a fraction of the memory traffic.
    source = tf.cond(flipped, lambda: tf.reverse(source, [1]), lambda: source)
    image = tf.cast(tf.image.resize(source, tf.stack([y["length"], x["length"]]),
                                    method=image_method), tf.float32)
    # Pad with the mean pixel by concatenating slices of a constant (no masked select, no
    # pass over the image): at the right (left once flipped) and at the bottom.
    mean = tf.constant(np.broadcast_to(np.float32(MEAN_PIXEL), (crop_size, crop_size, 3)))
    side = mean[:y["length"], :crop_size - x["length"]]
    image = tf.cond(x["length"] == crop_size, lambda: image,
                    lambda: tf.cond(flipped, lambda: tf.concat([side, image], 1),
                                    lambda: tf.concat([image, side], 1)))
    image = tf.cond(y["length"] == crop_size, lambda: image,
                    lambda: tf.concat([image, mean[:crop_size - y["length"]]], 0))

    columns = tf.where(flipped, x["nearest_flipped"], x["nearest"])
    label = _nearest_label(label[..., 0], y["nearest"], columns)
    image.set_shape([crop_size, crop_size, 3])
    return image, tf.ensure_shape(label, [crop_size, crop_size])


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
