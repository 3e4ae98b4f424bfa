"""TFLite conversion of the single-scale model (whole-image inference, paper 4.1).

TFLite wants static shapes, so the model is converted for one input size (height x width,
by default the evaluation crop): uint8 [1, H, W, 3] in, int32 labels [1, H, W] out; the
padding (to the evaluation crop size, or OS*k+1) and the upsampling are inside. Multi-scale
and flip are left out: they multiply the cost by up to 12, which is what a TFLite target
cannot afford. A smaller image is padded to H x W by the caller (`export.runner` does it
with the mean pixel, as the evaluation pads).

Quantization (`quantize`), as the TFLite post-training quantization guide describes it:
  none     float32 weights and arithmetic;
  float16  float16 weights (half the file), float32 arithmetic on a CPU;
  int8     full-integer: int8 weights and activations, ranges calibrated on a
           representative set of images (the authors' quantization guide calibrates on
           training images); the uint8 pixels are cast to float and quantized by the model's
           first op, and the int32 labels come out of an int8 arg max.
The class table travels inside the file (TFLite metadata named `deeplab_classes`, the
classes.json text) as well as beside it.
"""
import json

import flatbuffers
import numpy as np
import tensorflow as tf
from tensorflow.lite.python import schema_py_generated as schema  # the .tflite flatbuffer schema
from tensorflow.python.framework import convert_to_constants  # no public freezing API in TF2

from deeplab_tf import atomic
from deeplab_tf.evaluation import inference

QUANTIZE = ("none", "float16", "int8")
METADATA_NAME = "deeplab_classes"


def _size(image_size):
    size = (image_size, image_size) if np.isscalar(image_size) else tuple(image_size)
    if len(size) != 2 or min(int(s) for s in size) < 1:
        raise ValueError(f"image_size must be positive (an int or (height, width)), "
                         f"got {image_size!r}")
    return tuple(int(s) for s in size)


def labels_function(model, image_size, crop_size=None, dtype=tf.uint8):
    """The converted graph: images [1, H, W, 3] of `dtype` -> {"labels": int32 [1, H, W]}."""
    height, width = _size(image_size)
    output_stride = inference.model_output_stride(model)

    @tf.function(input_signature=[tf.TensorSpec([1, height, width, 3], dtype, name="images")])
    def labels(images):
        logits = inference.full_resolution_logits(model, tf.cast(images, tf.float32),
                                                  output_stride, crop_size)
        return {"labels": tf.argmax(logits, axis=-1, output_type=tf.int32)}

    return labels


def convert_tflite(model, path, image_size, crop_size=None, quantize="none",
                   representative_images=None, class_table=None):
    """Writes `model` as a .tflite file for [1, H, W, 3] uint8 images (image_size: an int
    for a square, or (H, W)), padded inside to `crop_size` (or the smallest
    output_stride*k+1 when None). int8 needs `representative_images`: an iterable of
    uint8 [H, W, 3] arrays (a few dozen to a few hundred training images)."""
    size = _size(image_size)
    if quantize not in QUANTIZE:
        raise ValueError(f"quantize must be one of {', '.join(QUANTIZE)}, got {quantize!r}")
    labels = labels_function(model, size, crop_size)
    # Weights as constants: converted with its variables, the .tflite carries uninitialised
    # variable handles and no weights (TF 2.21 keeps Keras 3 variables as resources).
    frozen = convert_to_constants.convert_variables_to_constants_v2(
        labels.get_concrete_function())
    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
    if quantize == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "int8":
        if representative_images is None:
            raise ValueError("int8 quantization needs representative images")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: _calibration_inputs(
            representative_images, size)
        # The uint8 input stays the pixels: its cast to float32 is the one float op, right
        # before the quantize op. (A float32 input turned into uint8 by the converter
        # takes the range of the first layer's mean subtraction instead: scale 1.48,
        # zero point 83 here, so raw pixels would be read wrongly.)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                                               tf.lite.OpsSet.TFLITE_BUILTINS]
    flatbuffer = converter.convert()
    if class_table is not None:
        flatbuffer = add_metadata(flatbuffer, METADATA_NAME, class_table.to_json())
    atomic.write_bytes(path, flatbuffer)  # a runner never loads half a model
    return path


def _calibration_inputs(images, size):
    """[uint8 [1, H, W, 3]] per image, cut to H x W and padded with the mean pixel as
    `export.runner` pads."""
    height, width = size
    count = 0
    for image in images:
        image = np.asarray(image)[:height, :width]
        canvas = np.empty((height, width, 3), np.uint8)
        canvas[:] = np.round(np.asarray(inference.MEAN_PIXEL))
        canvas[:image.shape[0], :image.shape[1]] = image
        count += 1
        yield [canvas[None]]
    if count == 0:
        raise ValueError("the representative set is empty")


def add_metadata(flatbuffer, name, text):
    """The .tflite bytes with one more metadata entry `name` holding `text` (UTF-8)."""
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(flatbuffer, 0))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(text.encode("utf-8"), np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = name
    entry.buffer = len(model.buffers) - 1
    model.metadata = (model.metadata or []) + [entry]
    builder = flatbuffers.Builder(len(flatbuffer) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def read_metadata(flatbuffer, name=METADATA_NAME):
    """The text of metadata entry `name` of a .tflite file's bytes, or None."""
    model = schema.Model.GetRootAsModel(flatbuffer, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name().decode("utf-8") == name:
            return model.Buffers(entry.Buffer()).DataAsNumpy().tobytes().decode("utf-8")
    return None


def class_count(flatbuffer):
    """The class count of a converted labels graph: the last dimension of its ARG_MAX's
    input (the logits), or None where the graph has no such op."""
    model = schema.Model.GetRootAsModel(flatbuffer, 0)
    codes = [max(model.OperatorCodes(i).BuiltinCode(),
                 model.OperatorCodes(i).DeprecatedBuiltinCode())
             for i in range(model.OperatorCodesLength())]
    for g in range(model.SubgraphsLength()):
        graph = model.Subgraphs(g)
        for o in range(graph.OperatorsLength()):
            operator = graph.Operators(o)
            if codes[operator.OpcodeIndex()] == schema.BuiltinOperator.ARG_MAX:
                shape = graph.Tensors(operator.Inputs(0)).ShapeAsNumpy()
                return int(shape[-1])
    return None


def read_class_table_json(path):
    """The class table dict stored in a .tflite file, or None."""
    with tf.io.gfile.GFile(path, "rb") as f:
        text = read_metadata(f.read())
    return None if text is None else json.loads(text)
