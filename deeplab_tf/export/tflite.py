"""TFLite conversion of the single-scale model (whole-image inference, paper 4.1).

TFLite wants static shapes, so the model is converted for one input size (a square of
`image_size` pixels, e.g. the training crop 513): uint8 [1, S, S, 3] in, int32 labels
[1, S, S] out; the padding (to the evaluation crop size, or OS*k+1) and the upsampling
are inside. Multi-scale and flip are left out: they multiply the cost by up to 12, which
is what a TFLite target cannot afford.
"""
import tensorflow as tf
from tensorflow.python.framework import convert_to_constants  # no public freezing API in TF2

from deeplab_tf.evaluation import inference


def convert_tflite(model, path, image_size, crop_size=None):
    """Writes `model` as a .tflite file for [1, image_size, image_size, 3] uint8 images,
    padded inside to `crop_size` (or the smallest output_stride*k+1 when None)."""
    if image_size < 1:
        raise ValueError(f"image_size must be positive, got {image_size}")
    output_stride = inference.model_output_stride(model)

    @tf.function(input_signature=[tf.TensorSpec([1, image_size, image_size, 3], tf.uint8,
                                                name="images")])
    def labels(images):
        logits = inference.full_resolution_logits(model, tf.cast(images, tf.float32),
                                                  output_stride, crop_size)
        return {"labels": tf.argmax(logits, axis=-1, output_type=tf.int32)}

    # Weights as constants: converted with its variables, the .tflite carries uninitialised
    # variable handles and no weights (TF 2.21 keeps Keras 3 variables as resources).
    frozen = convert_to_constants.convert_variables_to_constants_v2(
        labels.get_concrete_function())
    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
    flatbuffer = converter.convert()
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(flatbuffer)
    return path
