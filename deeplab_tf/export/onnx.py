"""ONNX export of the single-scale model (whole-image inference, paper 4.1), for
onnxruntime and the other ONNX runtimes (mmsegmentation's deployment path).

The same graph as the TFLite file (`tflite.labels_function`): uint8 [1, H, W, 3] in,
int32 labels [1, H, W] out, the padding to the evaluation crop and the upsampling inside,
converted by tf2onnx (`pip install deeplab_tf[onnx]`). The class table travels in the
model's metadata_props (key `deeplab_classes`, the classes.json text) and beside it.
"""
import tensorflow as tf

from deeplab_tf import atomic
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
    # The proto is built in memory and written once, atomically: tf2onnx's output_path and
    # onnx.save write in place, so a runner could load a half-written model.
    proto, _ = tf2onnx.convert.from_function(
        labels, input_signature=[tf.TensorSpec([1, height, width, 3], tf.uint8,
                                               name="images")],
        opset=OPSET, extra_opset=None)
    if class_table is not None:
        entry = proto.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, class_table.to_json()
    atomic.write_bytes(path, proto.SerializeToString())
    return path


def class_count(path):
    """The class count of an exported labels graph: the dimension of its ArgMax's input
    (the logits) it reduces (its `axis`), by ONNX shape inference; None where it cannot be told (no ArgMax,
    or the `onnx` package absent: onnxruntime alone runs the file)."""
    try:
        import onnx
    except ImportError:
        return None
    proto = onnx.shape_inference.infer_shapes(onnx.load(path))
    graph = proto.graph
    shapes = {v.name: v.type.tensor_type.shape for v in
              list(graph.value_info) + list(graph.input) + list(graph.output)}
    for node in graph.node:
        if node.op_type == "ArgMax" and node.input[0] in shapes:
            axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
            dims = shapes[node.input[0]].dim
            if not -len(dims) <= axis < len(dims):
                return None
            reduced = dims[axis]
            return int(reduced.dim_value) if reduced.HasField("dim_value") else None
    return None
