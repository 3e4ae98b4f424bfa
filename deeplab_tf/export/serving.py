"""Serving functions: encoded images or uint8 images in, class labels at input size out.

Both run `evaluation.inference.predict_probabilities` (pad to the evaluation crop size,
multi-scale, flip, paper 4.1 and 4.3) with the output stride, scales, flip and crop size
fixed at export time.

What a request may cost is bounded before anything of its size is allocated (`Bounds`):
each image is padded to the evaluation crop (a 4 x 1,000,000 pixel PNG of 12 KB becomes a
513 x 1,000,001 canvas), so the bounds count that canvas, read from the PNG IHDR chunk or
the JPEG SOF marker: its sides, its area, and per request the number of images, the sum
of their canvases and the labels output (N x max H x max W). The images of a request are
decoded and run one at a time, never padded to one common shape.

Per-image statuses in the bytes signature (one bad image never fails the others):
  0 OK
  1 NOT_AN_IMAGE       empty, too short, or no known image signature
  2 TOO_LARGE          over a per-image bound (pixels, canvas side or area), not decoded
  3 UNSUPPORTED        an image format the signature does not take (GIF, BMP, WebP, TIFF)
  4 DECODE_FAILED      a JPEG/PNG whose header or data is truncated or corrupt
  5 REQUEST_TOO_LARGE  within the per-image bounds, but over the request's (the images
                       before it in the request used the budget), not decoded
An image that is not OK has labels all 255 and size 0x0. Decoding runs in tf.data with
`ignore_errors` (TensorFlow's decoders raise on bad data); it only ever sees images within
the bounds, so its allocations are at most max_pixels x 4 bytes. Running out of memory
in the model is an error of the request (RESOURCE_EXHAUSTED), never a status.
Images are decoded as stored: like TensorFlow's decoders, the signature does not apply a
JPEG's EXIF orientation (phone photos may arrive turned; `tools.predict` turns them, and a
client can with PIL's `ImageOps.exif_transpose` before encoding). Images in one request may
differ in size: `labels` is [N, max H, max W], each image's labels in the top-left corner,
padded with 255 (the ignore label), and `heights`/`widths` give each image's size.
Grayscale and RGBA PNGs are converted to RGB; 16-bit PNGs keep their high byte.
"""
import collections

import tensorflow as tf

from deeplab_tf.evaluation import inference

STATUS_OK = 0
STATUS_NOT_AN_IMAGE = 1
STATUS_TOO_LARGE = 2
STATUS_UNSUPPORTED = 3
STATUS_DECODE_FAILED = 4
STATUS_REQUEST_TOO_LARGE = 5
STATUS_NAMES = {STATUS_OK: "ok", STATUS_NOT_AN_IMAGE: "not_an_image",
                STATUS_TOO_LARGE: "too_large", STATUS_UNSUPPORTED: "unsupported_format",
                STATUS_DECODE_FAILED: "decode_failed",
                STATUS_REQUEST_TOO_LARGE: "request_too_large"}
PAD_LABEL = 255


class Bounds(collections.namedtuple("Bounds", ["max_pixels", "max_side", "max_canvas_pixels",
                                               "max_images", "max_request_pixels"])):
    """What one request may cost (docs/serving.md has the table).

    max_pixels          an image's own height x width
    max_side            each side of its canvas (the image padded to the evaluation crop,
                        then to output_stride*k+1)
    max_canvas_pixels   its canvas' area
    max_images          images per request
    max_request_pixels  per request, both the sum of the canvases of the images served
                        and the labels output N x max H x max W
    """

    def to_dict(self):
        return {k: int(v) for k, v in self._asdict().items()}


# Sized for a 16 GB server (docs/serving.md, "What a request costs"): Cityscapes'
# 1024x2048 (canvas 1025x2049) and any 2048x2048 image pass; one canvas' peak memory for a
# ResNet at output stride 8-16 stays a few GB, and a request runs its images one by one.
DEFAULT_BOUNDS = Bounds(max_pixels=2048 * 2048, max_side=4097, max_canvas_pixels=2049 * 2049,
                        max_images=64, max_request_pixels=2 * 2049 * 2049)
DEFAULT_MAX_PIXELS = DEFAULT_BOUNDS.max_pixels

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SIGNATURE = b"\xff\xd8\xff"
# Image formats TensorFlow or a client may know, which the bytes signature does not take.
_UNSUPPORTED_SIGNATURES = ((0, b"GIF87a"), (0, b"GIF89a"), (0, b"BM"), (0, b"II*\x00"),
                           (0, b"MM\x00*"))
_KIND_OTHER, _KIND_PNG, _KIND_JPEG, _KIND_UNSUPPORTED = 0, 1, 2, 3


def _starts(encoded, offset, signature):
    return tf.equal(tf.strings.substr(encoded, offset, len(signature)), signature)


def _kinds(encoded):
    """int32 [N]: which kind of bytes each string is, from its first bytes (never raises)."""
    # substr raises for a position past a string's end: compare on each string's first 16
    # bytes, padded with 16 zeros (no signature ends in zeros past what it checks).
    encoded = tf.strings.join([tf.strings.substr(encoded, 0, 16), b"\0" * 16])
    unsupported = _starts(encoded, 0, b"RIFF") & _starts(encoded, 8, b"WEBP")
    for offset, signature in _UNSUPPORTED_SIGNATURES:
        unsupported |= _starts(encoded, offset, signature)
    kind = tf.where(unsupported, _KIND_UNSUPPORTED, _KIND_OTHER)
    kind = tf.where(_starts(encoded, 0, _JPEG_SIGNATURE), _KIND_JPEG, kind)
    return tf.where(_starts(encoded, 0, _PNG_SIGNATURE), _KIND_PNG, kind)


def _big_endian(four_bytes):
    values = tf.cast(tf.io.decode_raw(four_bytes, tf.uint8), tf.int64)
    values = tf.ensure_shape(values, [4])  # fewer bytes (a truncated header) raises here
    return ((values[0] * 256 + values[1]) * 256 + values[2]) * 256 + values[3]


def image_size(encoded):
    """(height, width) int64 from the PNG IHDR chunk or the JPEG SOF marker, not decoding.

    Raises InvalidArgumentError for bytes that are neither PNG nor JPEG, or whose header is
    truncated or corrupt.
    """
    is_png = _starts(encoded, 0, _PNG_SIGNATURE)
    is_jpeg = _starts(encoded, 0, _JPEG_SIGNATURE)
    known = tf.debugging.Assert(is_png | is_jpeg, ["not a JPEG or PNG image"])

    def png_size():
        header = tf.debugging.Assert(_starts(encoded, 12, b"IHDR"), ["no PNG IHDR chunk"])
        with tf.control_dependencies([header]):
            return (_big_endian(tf.strings.substr(encoded, 20, 4)),
                    _big_endian(tf.strings.substr(encoded, 16, 4)))

    def jpeg_size():
        shape = tf.cast(tf.io.extract_jpeg_shape(encoded), tf.int64)
        return shape[0], shape[1]

    with tf.control_dependencies([known]):
        height, width = tf.cond(is_png, png_size, jpeg_size)
    positive = tf.debugging.Assert(height * width > 0, ["an image of 0 pixels"])
    with tf.control_dependencies([positive]):
        return tf.identity(height), tf.identity(width)


def canvas_size(height, width, output_stride, crop_size=None):
    """(height, width) of the canvas an image is run on (ints or int tensors)."""
    crop_height, crop_width = (None, None) if crop_size is None else crop_size
    return (inference.padded_size(height, output_stride, crop_height),
            inference.padded_size(width, output_stride, crop_width))


def image_refusal(height, width, bounds, output_stride, crop_size=None):
    """None if one height x width image is within `bounds`, else why not (a sentence).

    The rule the bytes signature applies per image, for the tools and the uint8 signature.
    """
    canvas_height, canvas_width = (int(v) for v in canvas_size(
        int(height), int(width), output_stride, crop_size))
    if height * width > bounds.max_pixels:
        return f"{height}x{width} pixels is more than max_pixels={bounds.max_pixels}"
    if max(canvas_height, canvas_width) > bounds.max_side:
        return (f"{height}x{width} pixels is padded to {canvas_height}x{canvas_width}, a "
                f"side over max_side={bounds.max_side}")
    if canvas_height * canvas_width > bounds.max_canvas_pixels:
        return (f"{height}x{width} pixels is padded to {canvas_height}x{canvas_width} = "
                f"{canvas_height * canvas_width} pixels, more than "
                f"max_canvas_pixels={bounds.max_canvas_pixels}")
    return None


def _fits(height, width, bounds, output_stride, crop_size):
    """bool tensor: `image_refusal` is None, for int64 tensors of sizes."""
    canvas_height, canvas_width = canvas_size(height, width, output_stride, crop_size)
    return ((height * width <= bounds.max_pixels)
            & (tf.maximum(canvas_height, canvas_width) <= bounds.max_side)
            & (canvas_height * canvas_width <= bounds.max_canvas_pixels))


def decode_image(encoded, bounds=DEFAULT_BOUNDS, output_stride=1, crop_size=None):
    """Eager decoding of one JPEG/PNG as the bytes signature does it: HxWx3 uint8.

    `output_stride` and `crop_size` give the canvas the bounds count (1 and None: the
    image's own size). Raises ValueError naming the problem (the status' name first).
    """
    kind = int(_kinds(tf.constant([encoded]))[0])
    if kind == _KIND_UNSUPPORTED:
        raise ValueError("unsupported_format: a GIF, BMP, WebP or TIFF image (JPEG or PNG "
                         "only)")
    if kind == _KIND_OTHER:
        raise ValueError("not_an_image: not a JPEG or PNG image")
    try:
        height, width = (int(v) for v in image_size(encoded))
    except tf.errors.InvalidArgumentError as error:
        raise ValueError(f"decode_failed: corrupt image header "
                         f"({error.message.splitlines()[0][:120]})") from None
    reason = image_refusal(height, width, bounds, output_stride, crop_size)
    if reason:
        raise ValueError(f"too_large: {reason}")
    try:
        image = tf.io.decode_image(encoded, channels=3, dtype=tf.uint8,
                                   expand_animations=False).numpy()
    except tf.errors.InvalidArgumentError as error:
        raise ValueError(f"decode_failed: corrupt image data "
                         f"({error.message.splitlines()[0][:120]})") from None
    if image.shape[:2] != (height, width):
        raise ValueError(f"decode_failed: {image.shape[0]}x{image.shape[1]} pixels decoded, "
                         f"the header says {height}x{width}")
    return image


def _admit(count, sizes, canvases, bounds):
    """bool [S]: which of the images within the per-image bounds the request serves.

    In request order, an image is served while the images served so far plus it stay
    within max_images, max_request_pixels of canvas and an N x max H x max W labels output
    of max_request_pixels.
    """
    count = tf.cast(count, tf.int64)
    served = tf.TensorArray(tf.bool, size=tf.shape(sizes)[0])
    total = tf.constant(0, tf.int64)
    number = tf.constant(0, tf.int64)
    largest = tf.zeros([2], tf.int64)
    for position in tf.range(tf.shape(sizes)[0]):
        new_total = total + canvases[position]
        new_largest = tf.maximum(largest, sizes[position])
        ok = ((number < bounds.max_images) & (new_total <= bounds.max_request_pixels)
              & (count * new_largest[0] * new_largest[1] <= bounds.max_request_pixels))
        served = served.write(position, ok)
        total = tf.where(ok, new_total, total)
        number = tf.where(ok, number + 1, number)
        largest = tf.where(ok, new_largest, largest)
    return tf.reshape(served.stack(), [-1])


def _decoded(index, encoded, height, width):
    """(index, flat HxWx3 uint8 pixels, size); raises on bad data or a size unlike the
    header's (the bounds were checked on the header's)."""
    image = tf.io.decode_image(encoded, channels=3, dtype=tf.uint8, expand_animations=False)
    shape = tf.cast(tf.shape(image)[:2], tf.int64)
    same = tf.debugging.Assert(tf.reduce_all(shape == tf.stack([height, width])),
                               ["decoded size differs from the header's"])
    with tf.control_dependencies([same]):
        return index, tf.reshape(image, [-1]), tf.cast(shape, tf.int32)


def _single(dataset, sentinel, count):
    """All elements of `dataset` plus `sentinel` as one batch (never empty)."""
    return dataset.concatenate(tf.data.Dataset.from_tensors(sentinel)).batch(
        tf.cast(count, tf.int64) + 1).get_single_element()


def predict_encoded(model, encoded, scales, flip, output_stride, probabilities,
                    crop_size=None, bounds=DEFAULT_BOUNDS):
    """The bytes signature's body: a batch of encoded images -> labels, sizes, status."""
    encoded = tf.reshape(encoded, [-1])
    count = tf.shape(encoded)[0]
    kinds = _kinds(encoded)
    # Bad bytes start as not an image or unsupported; a JPEG/PNG as a decode failure until
    # its header is read and, if served, its pixels decoded.
    status = tf.gather(tf.constant([STATUS_NOT_AN_IMAGE, STATUS_DECODE_FAILED,
                                    STATUS_DECODE_FAILED, STATUS_UNSUPPORTED]), kinds)
    # 1. The headers (tf.data, whose ignore_errors drops what extract_jpeg_shape and the
    # IHDR checks raise on); the model then runs in an ordinary while loop, not inside
    # tf.data, whose functions would be re-instantiated (seconds) on every request.
    candidates = tf.data.Dataset.from_tensor_slices((tf.range(count), encoded, kinds)).filter(
        lambda i, e, k: (k == _KIND_PNG) | (k == _KIND_JPEG))
    index, heights, widths = _single(
        candidates.map(lambda i, e, k: (i, *image_size(e))).ignore_errors(),
        (tf.constant(-1), tf.constant(0, tf.int64), tf.constant(0, tf.int64)), count)
    index, heights, widths = index[:-1], heights[:-1], widths[:-1]
    # 2. The bounds, from the header sizes alone.
    fits = _fits(heights, widths, bounds, output_stride, crop_size)
    canvas_height, canvas_width = canvas_size(heights, widths, output_stride, crop_size)
    served = fits & _admit(count, tf.stack([heights, widths], 1),
                           canvas_height * canvas_width, bounds)
    status = tf.tensor_scatter_nd_update(status, index[:, None], tf.where(
        served, STATUS_DECODE_FAILED, tf.where(fits, STATUS_REQUEST_TOO_LARGE,
                                               STATUS_TOO_LARGE)))
    # 3. Decoding the served images, each as a flat row of a ragged batch: the pixels of
    # a request take the sum of its images' sizes, not N x the largest.
    served_index = tf.boolean_mask(index, served)
    decoded = tf.data.Dataset.from_tensor_slices((
        served_index, tf.gather(encoded, served_index), tf.boolean_mask(heights, served),
        tf.boolean_mask(widths, served))).map(_decoded).ignore_errors()
    sentinel = tf.data.Dataset.from_tensors((tf.constant(-1), tf.zeros([3], tf.uint8),
                                             tf.ones([2], tf.int32)))
    done, pixels, done_sizes = decoded.concatenate(sentinel).ragged_batch(
        tf.cast(count, tf.int64) + 1).get_single_element()
    survivors = tf.shape(done)[0] - 1
    done, done_sizes = done[:survivors], done_sizes[:survivors]
    status = tf.tensor_scatter_nd_update(status, done[:, None],
                                         tf.fill([survivors], STATUS_OK))

    # Each image's outputs flattened to 1-D: the sizes differ from image to image.
    labels = tf.TensorArray(tf.int32, size=survivors, infer_shape=False,
                            element_shape=[None])
    probs = tf.TensorArray(tf.float32, size=survivors, infer_shape=False,
                           element_shape=[None])
    for position in tf.range(survivors):
        image = tf.reshape(pixels[position], tf.concat([done_sizes[position], [3]], 0))
        p = inference.predict_probabilities(model, image[None], scales, flip,
                                            output_stride, crop_size)[0]
        labels = labels.write(position, tf.reshape(
            tf.argmax(p, axis=-1, output_type=tf.int32), [-1]))
        if probabilities:
            probs = probs.write(position, tf.reshape(p, [-1]))

    max_size = tf.reduce_max(tf.concat([done_sizes, tf.zeros([1, 2], tf.int32)], 0), 0)
    size_out = tf.tensor_scatter_nd_update(tf.zeros([count, 2], tf.int32), done[:, None],
                                           done_sizes)

    def padded(values, fill, channels):
        """[N, max H, max W(, C)]: each image's flat outputs put back in the corner."""
        shape = tf.concat([[count], max_size, channels], 0)
        out = tf.fill(shape, fill)
        # When no image was served every output is 0x0 and there is nothing to place:
        # TensorFlow's scatter refuses any update into an empty tensor (issue 12).
        placed = tf.where(tf.reduce_prod(max_size) > 0, survivors, 0)
        for i in tf.range(placed):
            size = done_sizes[i]
            one = tf.reshape(values.read(i), tf.concat([size, channels], 0))
            pad = tf.stack([[0, max_size[0] - size[0]], [0, max_size[1] - size[1]]])
            pad = tf.concat([pad, tf.zeros([tf.size(channels), 2], tf.int32)], 0)
            one = tf.pad(one, pad, constant_values=fill)
            out = tf.tensor_scatter_nd_update(out, [[done[i]]], one[None])
        return out

    outputs = {"labels": padded(labels, PAD_LABEL, tf.zeros([0], tf.int32)),
               "status": status, "heights": size_out[:, 0], "widths": size_out[:, 1]}
    if probabilities:
        outputs["probabilities"] = padded(probs, 0.0, tf.constant([model.num_classes]))
    return outputs


def predict_images(model, images, scales, flip, output_stride, probabilities,
                   crop_size=None, bounds=DEFAULT_BOUNDS):
    """The uint8 signature's body: [B,H,W,3] images of one size -> labels [B,H,W].

    The bounds of the bytes signature, as errors (InvalidArgumentError naming the bound):
    the batch runs as one, so B x canvas is held to max_request_pixels.
    """
    shape = tf.cast(tf.shape(images), tf.int64)
    tf.debugging.assert_positive(shape[1] * shape[2], "images must be at least 1x1 pixels")
    canvas_height, canvas_width = canvas_size(shape[1], shape[2], output_stride, crop_size)
    checks = [
        (shape[0] <= bounds.max_images, f"more images than max_images={bounds.max_images}"),
        (shape[1] * shape[2] <= bounds.max_pixels,
         f"image larger than max_pixels={bounds.max_pixels} pixels"),
        (tf.maximum(canvas_height, canvas_width) <= bounds.max_side,
         f"image padded to a canvas side over max_side={bounds.max_side}"),
        (canvas_height * canvas_width <= bounds.max_canvas_pixels,
         f"image padded to a canvas over max_canvas_pixels={bounds.max_canvas_pixels}"),
        (shape[0] * canvas_height * canvas_width <= bounds.max_request_pixels,
         f"batch x canvas over max_request_pixels={bounds.max_request_pixels}")]
    asserts = [tf.debugging.Assert(ok, [message, "images shape:", shape[:3],
                                        "canvas:", canvas_height, canvas_width])
               for ok, message in checks]
    num_classes = model.num_classes

    def run():
        return inference.predict_probabilities(model, images, scales, flip, output_stride,
                                               crop_size)

    def empty():  # an empty batch never reaches the model
        return tf.zeros(tf.concat([tf.shape(images)[:3], [num_classes]], 0))

    with tf.control_dependencies(asserts):
        p = tf.cond(shape[0] > 0, run, empty)
    outputs = {"labels": tf.argmax(p, axis=-1, output_type=tf.int32)}
    if probabilities:
        outputs["probabilities"] = p
    return outputs
