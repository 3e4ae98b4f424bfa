"""Deployable files (TFLite float32/float16/int8, ONNX) of the known-answer model: their
labels against the Keras model's, a fresh process without deeplab_tf, bad input.

The known-answer model (tests/known_answer.py) labels each pixel by its nearest colour, so
away from colour edges (`safe_mask`) every format must give the true class; everywhere
each format's labels equal the Keras labels except at the Keras logits' argmax near-ties
(tests/near_ties.py), with a bound derived from each format's arithmetic (`BOUNDS`).
"""
import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import known_answer
import near_ties
from deeplab_tf import classes
from deeplab_tf import config as config_lib
from deeplab_tf.evaluation import inference
from deeplab_tf.export import deploy, runner, tflite

pytestmark = pytest.mark.slow  # four conversions of a ResNet-50 DeepLabv3

NUM_CLASSES = 5
COLOURS = known_answer.distinct_colours(NUM_CLASSES)
MOSAIC, MOSAIC_CLASSES = known_answer.mosaic([[0, 1, 2], [3, 4, 0]], COLOURS, 64)  # 128x192
CROP = (129, 193)
OUTPUT_STRIDE = 16
FORMATS = ("model.tflite", "model_float16.tflite", "model_int8.tflite", "model.onnx")
# The largest sum of absolute terms of one known-answer logit, s * (2 c.x + |c|^2), over
# pixels x <= 255 and the classes' colours c: what a relative rounding error scales with.
TERMS = known_answer.LOGIT_SCALE * (2 * 255 * COLOURS.max(axis=0).astype(float).sum() +
                                    (COLOURS.astype(float) ** 2).max(axis=0).sum())
# How far a colour channel's difference between classes reaches: a colour error dx moves a
# top-2 gap by at most 2 s * sum_ch range_ch * dx (the gap is linear in x).
COLOUR_RANGE = float(np.ptp(COLOURS.astype(float), axis=0).sum())


def bound(name, path):
    """The most `name`'s arithmetic can move a top-2 gap of the Keras logits.

    float32 (TFLite, ONNX): the same float32 function in another order: each logit is
    off by at most ~16 roundings of its largest term (the colour path itself is exact:
    0/1 weights), so the gap by 2 * 16 * eps32 * TERMS (~5e-4; measured <= 4e-6).
    float16: every weight and constant stored in float16 (arithmetic float32): each term
    of a logit off by eps16 relative, and each stored colour offset (<= 255) by 255 eps16;
    the gap by 2 * eps16 * TERMS + 2 s COLOUR_RANGE * 255 eps16 (~0.33; measured <= 0.013).
    int8: each logit is rounded to its int8 step q twice (on the feature grid and after the
    upsampling, whose interpolation keeps an error <= q/2), and each colour channel once at
    the input and once in the network, each <= half of the largest activation step Q:
    gap <= 2 * 2 * q/2 + 2 s COLOUR_RANGE * Q (~1.5; measured <= 0.62). q and Q are read
    from the file. Across a colour edge the gap ramps by ~1.2 per pixel, so a near-tie spans
    one pixel per edge crossing for the float formats, about three for int8
    (`max_near_ties`).
    """
    s = known_answer.LOGIT_SCALE
    if name == "model_float16.tflite":
        eps = near_ties.EPS["float16"]
        return 2 * eps * TERMS + 2 * s * COLOUR_RANGE * 255 * eps
    if name == "model_int8.tflite":
        from ai_edge_litert.interpreter import Interpreter
        details = [d for d in Interpreter(model_path=path).get_tensor_details()
                   if d["dtype"] == np.int8 and len(d["shape"]) == 4]
        logit_step = max(d["quantization"][0] for d in details
                         if d["shape"][-1] == NUM_CLASSES)
        return 2 * logit_step + 2 * s * COLOUR_RANGE * max(d["quantization"][0]
                                                           for d in details)
    return 2 * 16 * near_ties.EPS["float32"] * TERMS


def max_near_ties(classes, tie_bound):
    """What the geometry allows: across each class edge, and each edge into the padding,
    the gap ramps linearly between the colours' plateaus (>= s * 97^2 each, the colours'
    least squared distance) over one output stride, so it crosses zero once and stays
    within the bound for at most 1 + 2 * bound / slope pixels of the ramp."""
    padded = np.pad(classes, ((0, CROP[0] - classes.shape[0]), (0, CROP[1] - classes.shape[1])),
                    constant_values=-1)
    least = min(float(np.sum((a.astype(float) - b) ** 2))
                for i, a in enumerate(COLOURS) for b in COLOURS[i + 1:])
    slope = 2 * known_answer.LOGIT_SCALE * least / OUTPUT_STRIDE
    return int(near_ties.edge_crossings(padded) * (1 + 2 * tie_bound / slope))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """(Keras model, {file name: path}) with classes.json beside the files."""
    config = config_lib.ExperimentConfig(name="test")
    config.model.depth = 50
    config.model.num_classes = NUM_CLASSES
    model = known_answer.set_nearest_colour_weights(config_lib.build_model(config.model),
                                                    COLOURS)
    out = tmp_path_factory.mktemp("deploy")
    table = classes.ClassTable([f"class{i}" for i in range(NUM_CLASSES)], COLOURS)
    classes.write(table, out)
    rng = np.random.default_rng(0)
    representative = [known_answer.mosaic(rng.integers(0, NUM_CLASSES, (2, 3)), COLOURS,
                                          64)[0] for _ in range(8)]
    paths = {}
    for quantize in tflite.QUANTIZE:
        name = deploy.file_name("tflite", quantize)
        paths[name] = tflite.convert_tflite(model, str(out / name), MOSAIC.shape[:2], CROP,
                                            quantize, representative, table)
    from deeplab_tf.export import onnx
    paths["model.onnx"] = onnx.convert_onnx(model, str(out / "model.onnx"),
                                            MOSAIC.shape[:2], CROP, table)
    return model, paths


def keras_logits(model, image):
    """The logits whose arg max is the Keras labels (inference.predict_labels)."""
    return np.asarray(inference.full_resolution_logits(
        model, image[None].astype(np.float32), crop_size=CROP))[0]


@pytest.mark.parametrize("name", FORMATS)
def test_labels_equal_the_keras_labels(files, name):
    model, paths = files
    deployed = runner.load(paths[name])
    assert (deployed.height, deployed.width) == MOSAIC.shape[:2]
    assert deployed.class_table.names == tuple(f"class{i}" for i in range(NUM_CLASSES))
    safe = known_answer.safe_mask(MOSAIC_CLASSES)
    tie_bound = bound(name, paths[name])
    # The whole input, and a smaller image the runner pads with the mean pixel.
    for image, truth in ((MOSAIC, MOSAIC_CLASSES), (MOSAIC[:100, :150],
                                                    MOSAIC_CLASSES[:100, :150])):
        labels = deployed.labels(image)
        assert labels.shape == image.shape[:2] and labels.dtype == np.int32
        logits = keras_logits(model, image)
        near_ties.assert_labels_match(logits, labels, tie_bound,
                                      max_near_ties(truth, tie_bound))
        inside = safe[:image.shape[0], :image.shape[1]] & known_answer.safe_mask(truth)
        np.testing.assert_array_equal(labels[inside], truth[inside])


FRESH = r"""
import json, sys
import numpy as np
import onnx, onnxruntime
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter
image = np.load(sys.argv[1])
out = {}
for path in sys.argv[2:]:
    if path.endswith(".tflite"):
        interpreter = Interpreter(model_path=path, num_threads=2)
        interpreter.allocate_tensors()
        source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
        interpreter.set_tensor(source["index"], image)
        interpreter.invoke()
        labels = interpreter.get_tensor(target["index"])
        model = schema.Model.GetRootAsModel(open(path, "rb").read(), 0)
        # The converter's own entries (min_runtime_version, ...) are binary: bytes here.
        meta = {model.Metadata(i).Name().decode(): model.Buffers(
            model.Metadata(i).Buffer()).DataAsNumpy().tobytes()
            for i in range(model.MetadataLength())}
    else:
        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        labels = session.run(None, {session.get_inputs()[0].name: image})[0]
        meta = {p.key: p.value for p in onnx.load(path).metadata_props}
    out[path] = dict(labels=labels.tolist(), dtype=str(labels.dtype),
                     classes=json.loads(meta["deeplab_classes"])["names"])  # str or bytes
assert not [m for m in sys.modules if m.startswith(("deeplab_tf", "tensorflow"))]
print(json.dumps(out))
"""


def test_fresh_process_runs_every_file_without_deeplab_tf(files, tmp_path):
    _, paths = files
    np.save(tmp_path / "image.npy", MOSAIC[None])
    process = subprocess.run([sys.executable, "-c", FRESH, str(tmp_path / "image.npy"),
                              *paths.values()], capture_output=True, text=True,
                             timeout=300, cwd=tmp_path)
    assert process.returncode == 0, process.stderr[-3000:]
    served = json.loads(process.stdout.splitlines()[-1])
    for name, path in paths.items():
        assert served[path]["dtype"] == "int32"
        assert served[path]["classes"] == [f"class{i}" for i in range(NUM_CLASSES)]
        np.testing.assert_array_equal(np.array(served[path]["labels"])[0],
                                      runner.load(path).labels(MOSAIC))


def test_bad_input_gets_one_line(files, tmp_path):
    _, paths = files
    deployed = runner.load(paths["model_int8.tflite"])
    with pytest.raises(ValueError, match=r"takes uint8 images, got float32$"):
        deployed.labels(MOSAIC.astype(np.float32))
    with pytest.raises(ValueError, match=r"at most 128x192 pixels .* got 130x192$"):
        deployed.labels(np.zeros((130, 192, 3), np.uint8))
    with pytest.raises(FileNotFoundError, match=r"missing.tflite: no such file$"):
        runner.load(str(tmp_path / "missing.tflite"))
    with pytest.raises(ValueError, match=r"not an exported model file"):
        runner.load(str(tmp_path / "model.pb"))
    # LiteRT's own refusal of a wrong-size tensor, which the runner's check pre-empts.
    from ai_edge_litert.interpreter import Interpreter
    interpreter = Interpreter(model_path=paths["model.tflite"])
    interpreter.allocate_tensors()
    with pytest.raises(ValueError, match="Cannot set tensor"):
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"],
                               np.zeros((1, 64, 64, 3), np.uint8))
    assert tf.io.gfile.exists(paths["model.tflite"])
