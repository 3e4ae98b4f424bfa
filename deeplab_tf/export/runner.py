"""Runs an exported file (.tflite, .onnx) as a predict function, for evaluating and
predicting with exactly what is deployed (paper 4.1: whole-image, single-scale inference).

`load(path)` gives a `Runner`: `labels(image)` takes one uint8 HxWx3 image and returns its
int32 HxW labels; `predict_fn` has the signature `evaluation.evaluator.evaluate` expects.
The exported graph has a fixed input size (the evaluation crop): a smaller image is padded
at the bottom/right with the mean pixel rounded to uint8, as the evaluation pads (the
Keras evaluation pads with the unrounded mean; the difference is < 0.5 in the padding
only), and its labels are cut back. TFLite runs with LiteRT's interpreter (ai-edge-litert,
XNNPACK on `threads` threads), ONNX with onnxruntime; both are optional extras
(`pip install deeplab_tf[tflite]` / `[onnx]`). The class table is the one inside the file
(its metadata) or classes.json beside it; one that disagrees with the other, or with the
model's class count, is refused (`class_table`).
"""
import os

import numpy as np

from deeplab_tf import classes
from deeplab_tf.modeling.layers import MEAN_PIXEL

FORMATS = {".tflite": "tflite", ".onnx": "onnx"}
PAD_PIXEL = np.round(np.asarray(MEAN_PIXEL)).astype(np.uint8)


class Runner:
    """One exported model: `session_run(images uint8 [1,H,W,3]) -> int32 [1,H,W]`."""

    def __init__(self, path, height, width, session_run, kind, embedded_table=None,
                 num_classes=None):
        self.path, self.height, self.width, self.kind = path, height, width, kind
        self._run = session_run
        self.num_classes = num_classes
        self.class_table = class_table(path, embedded_table, num_classes)

    def labels(self, image):
        """int32 HxW labels of one uint8 HxWx3 image of at most the model's size."""
        image = np.asarray(image)
        if image.dtype != np.uint8:
            raise ValueError(f"{self.path} takes uint8 images, got {image.dtype}")
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"{self.path} takes HxWx3 images, got shape {image.shape}")
        height, width = image.shape[:2]
        if height > self.height or width > self.width:
            raise ValueError(f"{self.path} takes images of at most {self.height}x"
                             f"{self.width} pixels (its fixed input size), got "
                             f"{height}x{width}")
        canvas = np.empty((1, self.height, self.width, 3), np.uint8)
        canvas[:] = PAD_PIXEL
        canvas[0, :height, :width] = image
        return np.asarray(self._run(canvas))[0, :height, :width].astype(np.int32)

    def predict_fn(self, images):
        """images [1,H,W,3] (0..255, any dtype) -> (labels [1,H,W],): for evaluator.evaluate."""
        images = np.asarray(images)
        return (self.labels(np.round(images[0]).astype(np.uint8))[None],)


def class_table(path, embedded=None, num_classes=None):
    """The class table of the model file at `path`: the one inside it (`embedded`, the
    classes.json text) and the classes.json beside it, or None where it has neither.

    Refused in one line naming the files: a table that cannot be read, one beside the
    file that names other classes than the one inside it, and a table whose class count
    is not the model's (`num_classes`, read from its graph): label 3 would be named
    after another model's class 3.
    """
    table, source = None, None
    if embedded is not None:
        source = f"the class table inside {path}"
        try:
            table = classes.ClassTable.from_json(embedded)
        except (ValueError, TypeError) as error:
            raise ValueError(f"{source} cannot be read: {error}") from None
    beside = os.path.join(os.path.dirname(os.path.abspath(path)), classes.CLASSES_FILE)
    if os.path.exists(beside):
        other = classes.read(beside)  # an unreadable one is an error naming it
        if table is not None and other != table:
            raise ValueError(f"{beside} names other classes ({', '.join(other.names)}) than "
                             f"{source} ({', '.join(table.names)}): remove or replace it")
        table, source = table or other, source or beside
    if table is not None and num_classes is not None and table.num_classes != num_classes:
        raise ValueError(f"{path}: its model labels {num_classes} classes but {source} has "
                         f"{table.num_classes} ({', '.join(table.names)}): it is another "
                         f"model's table")
    return table


def _tflite(path, threads):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise ImportError("running .tflite files needs LiteRT: pip install "
                          "'deeplab_tf[tflite]' (ai-edge-litert)") from None
    interpreter = Interpreter(model_path=path, num_threads=threads)
    interpreter.allocate_tensors()
    (source,), (target,) = interpreter.get_input_details(), interpreter.get_output_details()
    _, height, width, _ = (int(s) for s in source["shape"])
    from deeplab_tf.export import tflite  # the flatbuffer schema: the table, the classes
    with open(path, "rb") as f:
        flatbuffer = f.read()
    embedded, num_classes = tflite.read_metadata(flatbuffer), tflite.class_count(flatbuffer)

    def run(images):
        interpreter.set_tensor(source["index"], images)
        interpreter.invoke()
        return interpreter.get_tensor(target["index"])

    return Runner(path, height, width, run, "tflite", embedded, num_classes)


def _onnx(path, threads):
    try:
        import onnxruntime
    except ImportError:
        raise ImportError("running .onnx files needs onnxruntime: pip install "
                          "'deeplab_tf[onnx]'") from None
    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    (source,) = session.get_inputs()
    _, height, width, _ = source.shape
    from deeplab_tf.export import onnx
    embedded = session.get_modelmeta().custom_metadata_map.get(onnx.METADATA_KEY)
    return Runner(path, int(height), int(width),
                  lambda images: session.run(None, {source.name: images})[0], "onnx",
                  embedded, onnx.class_count(path))


def load(path, threads=2):
    """A Runner for an exported .tflite or .onnx file."""
    path = os.fspath(path)
    kind = FORMATS.get(os.path.splitext(path)[1].lower())
    if kind is None:
        raise ValueError(f"{path}: not an exported model file (expected "
                         f"{' or '.join(FORMATS)})")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    return (_tflite if kind == "tflite" else _onnx)(path, threads)
