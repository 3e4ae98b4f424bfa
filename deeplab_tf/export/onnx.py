"""ONNX export of the single-scale model (whole-image inference, paper 4.1), for
onnxruntime and the other ONNX runtimes (mmsegmentation's deployment path).

The same graph as the TFLite file (`tflite.labels_function`): uint8 [1, H, W, 3] in,
int32 labels [1, H, W] out, the padding to the evaluation crop and the upsampling inside,
converted by tf2onnx (`pip install deeplab_tf[onnx]`). The class table travels in the
model's metadata_props (key `deeplab_classes`, the classes.json text) and beside it.
"""
import tensorflow as tf

from deeplab_tf.export import tflite

METADATA_KEY = "deeplab_classes"
OPSET = 17


def convert_onnx(model, path, image_size, crop_size=None, class_table=None):
    """Writes `model` as an ONNX file for [1, H, W, 3] uint8 images; returns `path`."""
    try:
        import tf2onnx
    except ImportError:
        raise ImportError("ONNX export needs tf2onnx: pip install 'deeplab_tf[onnx]'") from None
    height, width = tflite._size(image_size)  # pylint: disable=protected-access
    labels = tflite.labels_function(model, (height, width), crop_size)
    metadata = {} if class_table is None else {METADATA_KEY: class_table.to_json()}
    tf2onnx.convert.from_function(
        labels, input_signature=[tf.TensorSpec([1, height, width, 3], tf.uint8,
                                               name="images")],
        opset=OPSET, output_path=path, extra_opset=None)
    if metadata:
        import onnx
        proto = onnx.load(path)
        for key, value in metadata.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(proto, path)
    return path
