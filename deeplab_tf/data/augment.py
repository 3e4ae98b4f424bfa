"""The paper's training augmentation (4.1) and the evaluation padding (4.1, "Crop size").

Training, as the authors' input_preprocess.py: scale the whole image by a random factor in
[min_scale, max_scale] (steps of `scale_step`, 0 = continuous) to int(s*H) x int(s*W) with
bilinear interpolation on aligned corners (labels: nearest neighbour, aligned corners),
pad bottom/right to the crop with the mean pixel (image) and 255 (label), take a random
crop, flip left-right at random. One draw of (scale, offset, flip) moves image and label
together.

Speed: the whole scaled image is never built. Each output pixel of the crop samples the
source at exactly the position the whole-image resize would (TensorFlow's aligned-corner
arithmetic in float32: position = i * (H - 1) / (int(s*H) - 1)), from the source window
those positions touch; only that window is decoded (`decode_and_crop_jpeg`). The bilinear
weights are applied with gathers in the kernel's own order (along x, then y), so the crop
equals the same window of the whole-image resize; labels take the kernel's rounding. The
mean-pixel padding is a concatenation of constant slices. Randomness is stateless, keyed on
(seed, element index), so the stream is the same on every run.
"""
import numpy as np
import tensorflow as tf

from deeplab_tf.modeling.layers import MEAN_PIXEL

IGNORE_LABEL = 255
# decode_and_crop_jpeg upsamples 4:2:0 chroma at the window's edges from the edge itself,
# up to 2 grey levels off a whole-image decode there; the decoded window reaches this many
# pixels past the samples, so every sampled pixel equals the whole-image decode.
JPEG_WINDOW_MARGIN = 2


def random_scale(seed, min_scale, max_scale, scale_step):
    if scale_step and scale_step > 0:
        num_scales = int(round((max_scale - min_scale) / scale_step)) + 1
        index = tf.random.stateless_uniform([], seed, 0, num_scales, dtype=tf.int32)
        return min_scale + tf.cast(index, tf.float32) * scale_step
    return tf.random.stateless_uniform([], seed, min_scale, max_scale)


def scaled_size(size, scale):
    """int(size * scale) in float32, at least 1: the authors' randomly_scale_image_and_label."""
    return tf.maximum(tf.cast(tf.cast(size, tf.float32) * scale, tf.int32), 1)


def _axis(source, scaled, crop_size, offset):
    """Where the crop samples one axis of the source.

    The source axis (`source` pixels) resized with aligned corners to `scaled` pixels,
    padded to the crop at the end, read from `offset` on: `length` = min(crop, scaled)
    resized pixels, then padding. For each of them, as ResizeBilinear computes it:
    position = (offset + i) * (source - 1) / (scaled - 1), lower = floor, upper = min(ceil,
    source - 1), lerp = position - lower; and as ResizeNearestNeighbor: nearest =
    min(roundf(position), source - 1). Indices are relative to the source window
    [lo, lo + size) that holds them (with a margin, see JPEG_WINDOW_MARGIN); `nearest` is
    absolute, `source` for the padding.
    """
    length = tf.minimum(crop_size, scaled)
    ratio = tf.where(scaled > 1, tf.cast(source - 1, tf.float32) /
                     tf.cast(tf.maximum(scaled - 1, 1), tf.float32), 0.0)
    position = tf.cast(offset + tf.range(crop_size), tf.float32) * ratio
    floor = tf.floor(position)
    lerp = position - floor
    lower = tf.cast(floor, tf.int32)
    upper = tf.minimum(tf.cast(tf.math.ceil(position), tf.int32), source - 1)
    # roundf: half away from zero (tf.round would round half to even).
    nearest = tf.minimum(lower + tf.cast(lerp >= 0.5, tf.int32), source - 1)
    inside = tf.range(crop_size) < length
    lo = tf.maximum(lower[0] - JPEG_WINDOW_MARGIN, 0)
    hi = tf.minimum(upper[length - 1] + JPEG_WINDOW_MARGIN, source - 1)
    return {"length": length, "lo": lo, "size": hi - lo + 1,
            "lower": lower[:length] - lo, "upper": upper[:length] - lo,
            "lerp": lerp[:length], "nearest_in_window": nearest[:length] - lo,
            "nearest": tf.where(inside, nearest, source)}


def _flipped(axis):
    """The same axis read right to left (the crop flipped), padding moved to the front."""
    flipped = {key: tf.reverse(axis[key], [0])
               for key in ("lower", "upper", "lerp", "nearest_in_window")}
    flipped["nearest"] = tf.reverse(axis["nearest"], [0])  # [padding, valid reversed]
    return dict(axis, **flipped)


def _nearest_label(label, rows, columns):
    """label[rows][:, columns] with index `height`/`width` meaning the ignore label.

    Two row gathers (with transposes) instead of a resize: exact, and several times
    cheaper than resize_nearest_neighbor at this size. The transposes run on float32
    (class ids 0-255 are exact in it): TensorFlow's oneDNN graph pass logs an error line
    ("oneDNN supports DT_UINT8 only on platforms with AVX-512") for a Transpose of any
    integer type on CPUs where it is on (issue 28).
    """
    padded = tf.pad(tf.cast(label, tf.float32), [[0, 1], [0, 1]],
                    constant_values=float(IGNORE_LABEL))
    picked = tf.transpose(tf.gather(tf.transpose(tf.gather(padded, rows)), columns))
    return tf.cast(picked, tf.int32)


def _resize_window(window, y, x, method):
    """The crop's resized pixels from the decoded source window (uint8 h x w x 3)."""
    if method == "nearest":
        picked = tf.gather(tf.gather(window, y["nearest_in_window"]), x["nearest_in_window"],
                           axis=1)
        return tf.cast(picked, tf.float32)
    if method != "bilinear":
        raise ValueError(f"image_method must be bilinear or nearest, got {method!r}")
    # ResizeBilinear's arithmetic: top = tl + (tr - tl) * x_lerp, the same for bottom,
    # then top + (bottom - top) * y_lerp. Along x first, for every window row; columns are
    # gathered from the transposed window (whole rows per index: several times faster
    # than gathering 3-byte pixels along axis 1), in float32 as in _nearest_label. The
    # maximum with 0 (exact: pixels are >= 0) keeps Grappler from moving the cast after
    # the transpose, which would transpose uint8 again.
    columns = tf.transpose(tf.maximum(tf.cast(window, tf.float32), 0.0), [1, 0, 2])
    left = tf.gather(columns, x["lower"])
    right = tf.gather(columns, x["upper"])
    along_x = tf.transpose(left + (right - left) * x["lerp"][:, None, None], [1, 0, 2])
    top = tf.gather(along_x, y["lower"])
    bottom = tf.gather(along_x, y["upper"])
    return top + (bottom - top) * y["lerp"][:, None, None]


_JPEG_START = b"\xff\xd8\xff"  # every JPEG file's first bytes (SOI, then a marker)


def decode_image(image_bytes, is_jpeg, window=None):
    """uint8 HxWx3 of the encoded image; only `window` (y, x, h, w) of a JPEG is decoded.

    `is_jpeg`: True (a JPEG), False (a PNG), or None for a data set holding both (one's
    own data as exported): then each image's decoder is chosen from its first bytes.
    """
    if is_jpeg is None:
        return tf.cond(tf.equal(tf.strings.substr(image_bytes, 0, 3), _JPEG_START),
                       lambda: decode_image(image_bytes, True, window),
                       lambda: decode_image(image_bytes, False, window))
    if is_jpeg and window is not None:
        return tf.image.decode_and_crop_jpeg(image_bytes, tf.stack(window), channels=3)
    image = (tf.io.decode_jpeg if is_jpeg else tf.io.decode_png)(image_bytes, channels=3)
    if window is not None:
        y, x, h, w = window
        image = image[y:y + h, x:x + w]
    return image


def scale_crop_flip(image_bytes, label, is_jpeg, crop_size, scale, offset, flipped,
                    image_method="bilinear"):
    """(float32 crop x crop x 3 in 0..255, int32 crop x crop) for one draw.

    `label`: the decoded uint8 HxWx1; `scale`: the factor; `offset`: (y, x) of the crop in
    the scaled image padded to at least the crop; `flipped`: a bool tensor.
    `image_method="nearest"` exists for tests: image and label pixels then correspond one
    to one.
    """
    height, width = tf.shape(label)[0], tf.shape(label)[1]
    y = _axis(height, scaled_size(height, scale), crop_size, offset[0])
    x = _axis(width, scaled_size(width, scale), crop_size, offset[1])
    x = tf.cond(flipped, lambda: _flipped(x), lambda: x)
    window = decode_image(image_bytes, is_jpeg, (y["lo"], x["lo"], y["size"], x["size"]))
    image = _resize_window(window, y, x, image_method)
    # Pad with the mean pixel by concatenating slices of a constant (no masked select, no
    # pass over the image): at the right (left once flipped) and at the bottom.
    mean = tf.constant(np.broadcast_to(np.float32(MEAN_PIXEL), (crop_size, crop_size, 3)))
    side = mean[:y["length"], :crop_size - x["length"]]
    image = tf.cond(x["length"] == crop_size, lambda: image,
                    lambda: tf.cond(flipped, lambda: tf.concat([side, image], 1),
                                    lambda: tf.concat([image, side], 1)))
    image = tf.cond(y["length"] == crop_size, lambda: image,
                    lambda: tf.concat([image, mean[:crop_size - y["length"]]], 0))
    label = _nearest_label(label[..., 0], y["nearest"], x["nearest"])
    image.set_shape([crop_size, crop_size, 3])
    return image, tf.ensure_shape(label, [crop_size, crop_size])


def train_augment(image_bytes, label, seed, crop_size, min_scale, max_scale, scale_step,
                  flip, is_jpeg, image_method="bilinear"):
    """One training example: draws (scale, offset, flip) from the stateless `seed` (shape
    [2]) and applies them with `scale_crop_flip`."""
    seeds = tf.random.experimental.stateless_split(seed, 4)
    scale = random_scale(seeds[0], min_scale, max_scale, scale_step)
    offset = []
    for axis in (0, 1):
        # The authors' random_crop: uniform in [0, scaled - crop] (0 when padded).
        slack = tf.maximum(scaled_size(tf.shape(label)[axis], scale) - crop_size, 0)
        offset.append(tf.random.stateless_uniform([], seeds[1 + axis], 0, slack + 1,
                                                  dtype=tf.int32))
    flipped = tf.random.stateless_uniform([], seeds[3]) < 0.5 if flip else tf.constant(False)
    return scale_crop_flip(image_bytes, label, is_jpeg, crop_size, scale, offset, flipped,
                           image_method)


def eval_pad(image, label, height, width):
    """Pads (never crops) a whole image at the bottom/right to height x width: the mean
    pixel for the image, the ignore label for the label (the authors' input_preprocess)."""
    shape = tf.shape(label)
    padding = [[0, height - shape[0]], [0, width - shape[1]], [0, 0]]
    valid = tf.pad(tf.ones(shape[:2], tf.bool), padding[:2])[..., None]
    image = tf.where(valid, tf.pad(tf.cast(image, tf.float32), padding),
                     tf.constant(MEAN_PIXEL, tf.float32))
    label = tf.where(valid, tf.pad(tf.cast(label, tf.int32), padding), IGNORE_LABEL)
    return image, label[..., 0]
