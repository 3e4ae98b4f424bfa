"""Serving functions: encoded images or uint8 images in, class labels at input size out.

Both run `evaluation.inference.predict_probabilities` (pad to the evaluation crop size,
multi-scale, flip, paper 4.1 and 4.3) with the output stride, scales, flip and crop size
fixed at export time.

Per-image failures in the bytes signature. A request holds several images; one bad image
must not fail the others. Each string is decoded inside a `tf.data` pipeline whose
`ignore_errors` drops the elements whose decoding raised, and the surviving indices tell
which images succeeded. Every image gets a `status`:
  0 OK
  1 INVALID    not a JPEG or PNG, or a corrupt one (its labels are all 255, size 0x0)
  2 TOO_LARGE  width*height above `max_pixels`, refused before decoding (no memory blow-up)
Images are decoded as stored: like TensorFlow's decoders, the signature does not apply a
JPEG's EXIF orientation (phone photos may arrive turned; `tools.predict` turns them, and a
client can with PIL's `ImageOps.exif_transpose` before encoding). Images in one request may
differ in size: `labels` is [N, max H, max W], each image's labels
in the top-left corner, padded with 255 (the ignore label), and `heights`/`widths` give each
image's size. Grayscale and RGBA PNGs are converted to RGB; 16-bit PNGs keep their high byte.
"""
import tensorflow as tf

from deeplab_tf.evaluation import inference

STATUS_OK = 0
STATUS_INVALID = 1
STATUS_TOO_LARGE = 2
PAD_LABEL = 255
# Cityscapes' 1024x2048 is 2.1M pixels; this leaves twice that, and refuses decompression
# bombs (a few kB of PNG can claim 10^9 pixels).
DEFAULT_MAX_PIXELS = 2048 * 2048

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SIGNATURE = b"\xff\xd8\xff"


def _big_endian(four_bytes):
    values = tf.cast(tf.io.decode_raw(four_bytes, tf.uint8), tf.int64)
    values = tf.ensure_shape(values, [4])  # fewer bytes (a truncated header) raises here
    return ((values[0] * 256 + values[1]) * 256 + values[2]) * 256 + values[3]


def image_size(encoded):
    """(height, width) from the PNG IHDR chunk or the JPEG SOF marker, without decoding.

    Raises InvalidArgumentError for bytes that are neither PNG nor JPEG.
    """
    is_png = tf.equal(tf.strings.substr(encoded, 0, 8), _PNG_SIGNATURE)
    is_jpeg = tf.equal(tf.strings.substr(encoded, 0, 3), _JPEG_SIGNATURE)
    # 24 bytes: a PNG's size sits in bytes 16..24; anything shorter is no image.
    long_enough = tf.strings.length(encoded) >= 24
    known = tf.debugging.Assert(long_enough & (is_png | is_jpeg), ["not a JPEG or PNG image"])

    def png_size():
        return (_big_endian(tf.strings.substr(encoded, 20, 4)),
                _big_endian(tf.strings.substr(encoded, 16, 4)))

    def jpeg_size():
        shape = tf.cast(tf.io.extract_jpeg_shape(encoded), tf.int64)
        return shape[0], shape[1]

    with tf.control_dependencies([known]):
        return tf.cond(is_png, png_size, jpeg_size)


def _decode(index, encoded, max_pixels):
    """(index, status, HxWx3 uint8 image, its size); raises on undecodable bytes."""
    height, width = image_size(encoded)
    too_large = height * width > max_pixels

    def decode():
        image = tf.io.decode_image(encoded, channels=3, dtype=tf.uint8,
                                   expand_animations=False)
        return tf.constant(STATUS_OK), image

    def refuse():
        return tf.constant(STATUS_TOO_LARGE), tf.zeros([1, 1, 3], tf.uint8)

    status, image = tf.cond(too_large, refuse, decode)
    image = tf.ensure_shape(image, [None, None, 3])
    return index, status, image, tf.shape(image)[:2]


def decode_image(encoded, max_pixels=DEFAULT_MAX_PIXELS):
    """Eager decoding of one JPEG/PNG as the bytes signature does it: HxWx3 uint8.

    Raises ValueError naming the problem (not an image, too large); for tools.predict.
    """
    try:
        height, width = (int(v) for v in image_size(encoded))
    except tf.errors.InvalidArgumentError as error:
        raise ValueError("not a JPEG or PNG image") from error
    if height * width > max_pixels:
        raise ValueError(f"{height}x{width} pixels is more than max_pixels={max_pixels}")
    try:
        return tf.io.decode_image(encoded, channels=3, dtype=tf.uint8,
                                  expand_animations=False).numpy()
    except tf.errors.InvalidArgumentError as error:
        raise ValueError(f"corrupt image data ({error.message.splitlines()[0][:120]})") from None


def predict_encoded(model, encoded, scales, flip, output_stride, max_pixels, probabilities,
                    crop_size=None):
    """The bytes signature's body: a batch of encoded images -> labels, sizes, status."""
    encoded = tf.reshape(encoded, [-1])
    count = tf.shape(encoded)[0]
    decoded = tf.data.Dataset.from_tensor_slices((tf.range(count), encoded)).map(
        lambda i, e: _decode(i, e, max_pixels)).ignore_errors()
    # The survivors as one zero-padded batch (+ a sentinel, so the batch is never empty);
    # the model then runs in an ordinary while loop, not inside tf.data, whose functions
    # would be re-instantiated (seconds) on every request.
    sentinel = tf.data.Dataset.from_tensors((tf.constant(-1), tf.constant(-1),
                                             tf.zeros([1, 1, 3], tf.uint8), tf.ones([2], tf.int32)))
    index, status, images, image_sizes = decoded.concatenate(sentinel).padded_batch(
        tf.cast(count, tf.int64) + 1).get_single_element()
    survivors = tf.shape(index)[0] - 1

    statuses = status[:survivors]
    sizes = tf.TensorArray(tf.int32, size=survivors, element_shape=[2])
    # Each image's outputs flattened to 1-D: the sizes differ from image to image.
    labels = tf.TensorArray(tf.int32, size=survivors, infer_shape=False,
                            element_shape=[None])
    probs = tf.TensorArray(tf.float32, size=survivors, infer_shape=False,
                           element_shape=[None])
    num_classes = model.num_classes
    for position in tf.range(survivors):
        if statuses[position] == STATUS_OK:
            image = images[position, :image_sizes[position, 0], :image_sizes[position, 1]]
            p = inference.predict_probabilities(model, image[None], scales, flip,
                                                output_stride, crop_size)[0]
            size = tf.shape(p)[:2]
        else:
            p = tf.zeros([0, 0, num_classes])
            size = tf.zeros([2], tf.int32)
        sizes = sizes.write(position, size)
        labels = labels.write(position, tf.reshape(
            tf.argmax(p, axis=-1, output_type=tf.int32), [-1]))
        if probabilities:
            probs = probs.write(position, tf.reshape(p, [-1]))

    done = index[:survivors]
    done_sizes = tf.reshape(sizes.stack(), [-1, 2])
    max_size = tf.reduce_max(tf.concat([done_sizes, tf.zeros([1, 2], tf.int32)], 0), 0)
    status_out = tf.tensor_scatter_nd_update(
        tf.fill([count], STATUS_INVALID), done[:, None], statuses)
    size_out = tf.tensor_scatter_nd_update(tf.zeros([count, 2], tf.int32), done[:, None],
                                           done_sizes)

    def padded(values, fill, channels):
        """[N, max H, max W(, C)]: each image's flat outputs put back in the corner."""
        shape = tf.concat([[count], max_size, channels], 0)
        out = tf.fill(shape, fill)
        # When no image was decoded (all refused as too large, or undecodable) every output
        # is 0x0 and there is nothing to place: TensorFlow's scatter refuses any update
        # into an empty tensor (issue 12: all-too-large requests failed there).
        placed = tf.where(tf.reduce_prod(max_size) > 0, tf.shape(done)[0], 0)
        for i in tf.range(placed):
            size = done_sizes[i]
            one = tf.reshape(values.read(i), tf.concat([size, channels], 0))
            pad = tf.stack([[0, max_size[0] - size[0]], [0, max_size[1] - size[1]]])
            pad = tf.concat([pad, tf.zeros([tf.size(channels), 2], tf.int32)], 0)
            one = tf.pad(one, pad, constant_values=fill)
            out = tf.tensor_scatter_nd_update(out, [[done[i]]], one[None])
        return out

    outputs = {"labels": padded(labels, PAD_LABEL, tf.zeros([0], tf.int32)),
               "status": status_out, "heights": size_out[:, 0], "widths": size_out[:, 1]}
    if probabilities:
        outputs["probabilities"] = padded(probs, 0.0, tf.constant([num_classes]))
    return outputs


def predict_images(model, images, scales, flip, output_stride, max_pixels, probabilities,
                   crop_size=None):
    """The uint8 signature's body: [B,H,W,3] images of one size -> labels [B,H,W]."""
    shape = tf.shape(images)
    tf.debugging.assert_positive(shape[1] * shape[2],
                                 "images must be at least 1x1 pixels")
    tf.debugging.assert_less_equal(
        tf.cast(shape[1], tf.int64) * tf.cast(shape[2], tf.int64), tf.cast(max_pixels, tf.int64),
        f"image larger than max_pixels={max_pixels} pixels")
    num_classes = model.num_classes

    def run():
        return inference.predict_probabilities(model, images, scales, flip, output_stride,
                                               crop_size)

    def empty():  # an empty batch never reaches the model
        return tf.zeros(tf.concat([shape[:3], [num_classes]], 0))

    p = tf.cond(shape[0] > 0, run, empty)
    outputs = {"labels": tf.argmax(p, axis=-1, output_type=tf.int32)}
    if probabilities:
        outputs["probabilities"] = p
    return outputs
