"""SavedModel export by `tools.export` from a work dir's checkpoint: reloaded in a fresh
process that cannot import deeplab_tf, both signatures give the Keras model's labels, and
bad inputs get a per-image status or a clear error without breaking the next request.

The model has a known answer (tests/known_answer.py: each class is the nearest of five
colours), so the labels compared are not one constant class: a mosaic of the five colours
must come back as those five classes, and the labels of every image must equal Keras'.

The same fresh process runs the warm-up records read back from assets.extra, then the
bytes signature on every combination of ok / undecodable / too large / empty-string
images; the tests compare what came back with the statuses and sizes written down
independently here.
"""
import collections
import io
import itertools
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tensorflow_serving.apis import prediction_log_pb2

from deeplab_tf import config as config_lib
from deeplab_tf.evaluation import inference
from deeplab_tf.export import saved_model, serving
from deeplab_tf.modeling import fold_batch_norm

import known_answer

NUM_CLASSES = 5
SCALES = (0.75, 1.0)  # baked in, with flip: the served labels must include both
SIZES = ((1, 1), (17, 23), (40, 29))
COLOURS = known_answer.distinct_colours(NUM_CLASSES)
# 128x192: every class, and each tile's centre far enough from the edges to be known.
MOSAIC, MOSAIC_CLASSES = known_answer.mosaic([[0, 1, 2], [3, 4, 0]], COLOURS, 64)
MAX_PIXELS = 160 * 160


def png_bytes(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_bytes(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def scene(height, width, seed):
    """Smooth colour regions (a real-looking input: the labels vary across the image)."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:height, :width]
    image = np.stack([cols * 255 / max(width, 1), rows * 255 / max(height, 1),
                      np.full((height, width), 128.0)], -1)
    image[: height // 2, : width // 3] = rng.integers(0, 255, 3)
    return image.astype(np.uint8)


CROP_SIZE = (49, 49)  # eval.crop_size: smaller images are padded to it, larger ones not
WARMUP_SIZE = 49  # tools.export's default: the smaller side of the crop


def random_jpeg(height, width, seed):
    rng = np.random.default_rng(seed)
    return jpeg_bytes(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


# kind -> (bytes, expected status, expected height, width)
KINDS = {
    "ok": (random_jpeg(20, 27, 0), serving.STATUS_OK, 20, 27),
    "undecodable": (b"\xff\xd8\xff" + b"not a jpeg at all" * 3, serving.STATUS_DECODE_FAILED,
                    0, 0),
    "too_large": (random_jpeg(170, 160, 1), serving.STATUS_TOO_LARGE, 0, 0),  # > 160*160
    "empty": (b"", serving.STATUS_NOT_AN_IMAGE, 0, 0),
}
# Every kind alone, every pair, all four together; order matters for the scatter, so both.
REQUESTS = ([[k] for k in KINDS] + [list(p) for p in itertools.permutations(KINDS, 2)]
            + [list(KINDS), ["too_large", "too_large"], []])


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(Keras model, export dir, deeplab_export.json): `tools.export` on a work dir whose
    checkpoint holds the known-answer model, scales and flip taken from its config."""
    config = config_lib.ExperimentConfig(name="test")
    config.model.depth = 50
    config.model.num_classes = config.data.num_classes = NUM_CLASSES
    config.eval.output_stride = 16
    config.eval.scales, config.eval.flip = SCALES, True
    config.eval.crop_size = CROP_SIZE
    model = known_answer.set_nearest_colour_weights(config_lib.build_model(config.model),
                                                    COLOURS)
    work = tmp_path_factory.mktemp("export")
    (work / "config.json").write_text(config_lib.to_json(config))
    tf.train.CheckpointManager(tf.train.Checkpoint(model=model), str(work / "checkpoints"),
                               1).save()
    export_dir = str(work / "model")
    process = subprocess.run([sys.executable, "-m", "tools.export", f"--workdir={work}",
                              f"--export_dir={export_dir}", "--probabilities",
                              f"--max_pixels={MAX_PIXELS}"],
                             capture_output=True, text=True, timeout=600)
    assert process.returncode == 0, process.stderr[-3000:]
    assert f"SavedModel of {work}/checkpoints/ckpt-1 in {export_dir}" in process.stdout
    with open(os.path.join(export_dir, "deeplab_export.json")) as f:
        return model, export_dir, json.load(f)


# Runs in a fresh interpreter where importing deeplab_tf is made impossible.
SERVE_SCRIPT = r"""
import importlib.abc, json, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "deeplab_tf":
            raise ImportError(f"{name} must not be needed to serve")
sys.meta_path.insert(0, Block())
import numpy as np, tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2
export_dir, inputs, requests_file, outputs = sys.argv[1:]
loaded = tf.saved_model.load(export_dir)
# TF Serving's warm-up: each record through its signature.
warmup = []
for record in tf.data.TFRecordDataset(export_dir + "/assets.extra/tf_serving_warmup_requests"):
    request = prediction_log_pb2.PredictionLog.FromString(record.numpy()).predict_log.request
    feed = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
    out = loaded.signatures[request.model_spec.signature_name](**feed)
    warmup.append({"signature": request.model_spec.signature_name,
                   **{k: np.asarray(v).tolist() for k, v in out.items()}})
combinations = []
for images in json.load(open(requests_file)):
    encoded = tf.constant([bytes.fromhex(h) for h in images], dtype=tf.string)
    out = loaded.signatures["serving_default"](images=encoded)
    combinations.append({k: np.asarray(v).tolist() for k, v in out.items()})
json.dump({"warmup": warmup, "requests": combinations}, open(outputs + ".json", "w"))
data = np.load(inputs, allow_pickle=False)
result = {}
by_bytes = loaded.signatures["serving_default"](images=tf.constant(list(data["encoded"])))
for key, value in by_bytes.items():
    result["bytes_" + key] = value.numpy()
for i in range(int(data["num_arrays"])):
    out = loaded.signatures["serve_images"](images=tf.constant(data[f"array_{i}"]))
    result[f"images_labels_{i}"] = out["labels"].numpy()
empty = loaded.signatures["serving_default"](images=tf.zeros([0], tf.string))
result["empty_bytes_labels_shape"] = np.array(empty["labels"].shape)
empty = loaded.signatures["serve_images"](images=tf.zeros([0, 8, 8, 3], tf.uint8))
result["empty_images_labels_shape"] = np.array(empty["labels"].shape)
try:
    loaded.signatures["serve_images"](images=tf.zeros([1, 161, 160, 3], tf.uint8))
    result["too_large_error"] = np.array("none")
except tf.errors.InvalidArgumentError as error:
    result["too_large_error"] = np.array(error.message[:300])
# The same loaded model still serves after the refused request.
after = loaded.signatures["serve_images"](images=tf.constant(data["array_0"]))
result["after_error_labels"] = after["labels"].numpy()
np.savez(outputs, **result)
# What a TF Serving user inspects the export with: the saved_model_cli command's entry point.
import contextlib, io
from tensorflow.python.tools import saved_model_cli
shown, sys.argv = io.StringIO(), ["saved_model_cli", "show", "--dir", export_dir, "--all"]
with contextlib.redirect_stdout(shown):
    try:
        saved_model_cli.main()
    except SystemExit as exit:  # absl's app.run ends with sys.exit
        assert not exit.code, exit.code
open(outputs + ".cli.txt", "w").write(shown.getvalue())
print(json.dumps(sorted(m for m in sys.modules if m.startswith("deeplab_tf"))))
"""


def keras_labels(predict, image):
    return np.asarray(predict(tf.constant(image[None], tf.float32))[0])[0]


IMAGES = [scene(h, w, seed) for seed, (h, w) in enumerate(SIZES)] + [MOSAIC]
GRAY = scene(21, 26, 7)[..., 0]
RGBA = np.dstack([scene(19, 24, 8), np.full((19, 24), 77, np.uint8)])
DEEP = (scene(18, 20, 9)[..., 1].astype(np.uint16) * 257)  # 16-bit grayscale PNG
JPEG = jpeg_bytes(scene(30, 22, 10))


@pytest.fixture(scope="module")
def served(exported, tmp_path_factory):
    """What the fresh process returned: the signatures' outputs for the inputs below
    (npz arrays), {"warmup": [...], "requests": [...]} for the warm-up records and the
    status combinations, and what `saved_model_cli show --all` printed there."""
    _, export_dir, _ = exported
    root = tmp_path_factory.mktemp("served")
    big = io.BytesIO()
    Image.new("RGB", (170, 160)).save(big, format="PNG")  # over max_pixels = 160*160
    encoded = [png_bytes(i) for i in IMAGES] + [
        b"this is not an image at all, just bytes",  # 4: invalid
        png_bytes(IMAGES[2])[:60],                    # 5: truncated PNG
        png_bytes(GRAY), png_bytes(RGBA), png_bytes(DEEP), JPEG,  # 6..9
        big.getvalue(),                               # 10: too large
        b""]                                          # 11: empty string
    arrays = {f"array_{i}": np.stack([image, image[::-1, ::-1]])
              for i, image in enumerate(IMAGES)}
    inputs, requests = str(root / "inputs.npz"), root / "requests.json"
    np.savez(inputs, encoded=np.array(encoded, dtype=object).astype(bytes),
             num_arrays=len(IMAGES), **arrays)
    requests.write_text(json.dumps([[KINDS[k][0].hex() for k in r] for r in REQUESTS]))
    outputs = str(root / "outputs.npz")
    process = subprocess.run([sys.executable, "-c", SERVE_SCRIPT, export_dir, inputs,
                              str(requests), outputs],
                             capture_output=True, text=True, timeout=600, cwd=str(root))
    assert process.returncode == 0, process.stderr[-3000:]
    assert json.loads(process.stdout.strip().splitlines()[-1]) == []
    with open(outputs + ".json") as f:
        return dict(np.load(outputs)), json.load(f), open(outputs + ".cli.txt").read()


@pytest.mark.slow
def test_fresh_process_serves_the_keras_labels(exported, served):
    model, export_dir, metadata = exported
    assert metadata["output_stride"] == 16 and metadata["scales"] == list(SCALES)
    assert metadata["flip"] is True and metadata["probabilities"] is True
    assert metadata["num_classes"] == NUM_CLASSES
    assert metadata["crop_size"] == list(CROP_SIZE)  # the size every image is padded to
    images, gray, rgba, deep, jpeg = IMAGES, GRAY, RGBA, DEEP, JPEG
    served = served[0]
    # The Keras model in TF, padding as the export does.
    predict = inference.make_predict_fn(model, SCALES, flip=True, crop_size=CROP_SIZE)

    ok, too_large = serving.STATUS_OK, serving.STATUS_TOO_LARGE
    no_image, damaged = serving.STATUS_NOT_AN_IMAGE, serving.STATUS_DECODE_FAILED
    np.testing.assert_array_equal(served["bytes_status"], [ok] * 4 + [no_image, damaged]
                                  + [ok] * 4 + [too_large, no_image])
    assert metadata["bounds"] == dict(serving.DEFAULT_BOUNDS.to_dict(), max_pixels=MAX_PIXELS)
    assert metadata["status_codes"] == {
        "ok": 0, "not_an_image": 1, "too_large": 2, "unsupported_format": 3,
        "decode_failed": 4, "request_too_large": 5}
    # Published by rename: nothing of the staging directories is left beside the export.
    assert sorted(os.listdir(os.path.dirname(export_dir))) == ["checkpoints", "config.json",
                                                               "model"]
    decoded = images + [None, None, np.dstack([gray] * 3), rgba[..., :3],
                        np.dstack([(deep >> 8).astype(np.uint8)] * 3),
                        tf.io.decode_jpeg(jpeg).numpy(), None, None]
    labels = served["bytes_labels"]
    assert labels.shape == (12,) + MOSAIC.shape[:2]
    for i, image in enumerate(decoded):
        if image is None:
            assert served["bytes_heights"][i] == served["bytes_widths"][i] == 0
            assert (labels[i] == serving.PAD_LABEL).all()
            continue
        height, width = image.shape[:2]
        assert (served["bytes_heights"][i], served["bytes_widths"][i]) == (height, width)
        np.testing.assert_array_equal(labels[i, :height, :width], keras_labels(predict, image),
                                      err_msg=f"image {i}")
        assert (labels[i, height:] == serving.PAD_LABEL).all()
        assert (labels[i, :, width:] == serving.PAD_LABEL).all()
        probabilities = served["bytes_probabilities"][i, :height, :width]
        np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-5)

    for i, image in enumerate(images):
        got = served[f"images_labels_{i}"]
        assert got.shape == (2,) + image.shape[:2]
        np.testing.assert_array_equal(got[0], keras_labels(predict, image))
        np.testing.assert_array_equal(got[1], keras_labels(predict, image[::-1, ::-1]))

    # The known answer: the mosaic's tiles come back as their classes, all five of them,
    # through both signatures (and the flipped copy as the flipped classes).
    safe = known_answer.safe_mask(MOSAIC_CLASSES)
    assert safe.sum() >= 6 * 8 * 8
    mosaic = len(SIZES)
    for got, classes in ((labels[mosaic], MOSAIC_CLASSES),
                         (served[f"images_labels_{mosaic}"][0], MOSAIC_CLASSES),
                         (served[f"images_labels_{mosaic}"][1][::-1, ::-1], MOSAIC_CLASSES)):
        np.testing.assert_array_equal(got[safe], classes[safe])
        assert sorted(np.unique(got)) == list(range(NUM_CLASSES))

    assert tuple(served["empty_bytes_labels_shape"]) == (0, 0, 0)
    assert tuple(served["empty_images_labels_shape"]) == (0, 8, 8)
    assert f"max_pixels={MAX_PIXELS}" in str(served["too_large_error"])
    np.testing.assert_array_equal(served["after_error_labels"], served["images_labels_0"])


def test_saved_model_cli_lists_both_signatures(served):
    # `saved_model_cli show --all` (its entry point, in the fresh serving process).
    shown = served[2]
    for expected in ("signature_def['serving_default']", "signature_def['serve_images']",
                     "dtype: DT_STRING", "dtype: DT_UINT8", "outputs['status']",
                     "outputs['labels']", "outputs['probabilities']"):
        assert expected in shown, expected


def test_saved_model_stores_each_weight_once_with_the_checkpoint_values(exported):
    # Keras' ExportArchive, used before, stored every variable twice (596 entries, twice
    # the ResNet-50's values): the SavedModel was twice the size of the weights.
    # The export serves (and stores) the batch-norm-folded copy of the model.
    model, export_dir, metadata = exported
    assert metadata["fold_batch_norm"] is True
    model = fold_batch_norm.inference_model(model)
    reader = tf.train.load_checkpoint(os.path.join(export_dir, "variables", "variables"))
    stored = {name: reader.get_tensor(name) for name, shape in
              reader.get_variable_to_shape_map().items() if shape}
    # model.variables: the weights and the ASPP dropout's seed state.
    weights = [np.asarray(v) for v in model.variables]
    assert len(stored) == len(weights) == len(model.weights) + 1
    assert sum(a.size for a in stored.values()) == model.count_params() + 2
    # Every weight's values are stored (matched by content: the names are the object
    # graph's, not the layers'); the copy's dropout seed state is its own.
    digest = lambda a: (a.shape, a.tobytes())
    stored = collections.Counter(map(digest, stored.values()))
    assert not collections.Counter(digest(np.asarray(w)) for w in model.weights) - stored


def test_warmup_records_are_one_request_per_signature_at_the_export_size(exported):
    _, export_dir, metadata = exported
    assert metadata["warmup_size"] == WARMUP_SIZE
    logs = [prediction_log_pb2.PredictionLog.FromString(r.numpy()) for r in
            tf.data.TFRecordDataset(os.path.join(export_dir, saved_model.WARMUP_FILE))]
    requests = {log.predict_log.request.model_spec.signature_name: log.predict_log.request
                for log in logs}
    assert len(logs) == 2
    assert set(requests) == {saved_model.SIGNATURE_BYTES, saved_model.SIGNATURE_IMAGES}
    encoded = tf.make_ndarray(requests[saved_model.SIGNATURE_BYTES].inputs["images"])
    assert encoded.shape == (1,)
    assert tf.io.decode_jpeg(encoded[0]).shape == (WARMUP_SIZE, WARMUP_SIZE, 3)
    pixels = tf.make_ndarray(requests[saved_model.SIGNATURE_IMAGES].inputs["images"])
    assert pixels.dtype == np.uint8 and pixels.shape == (1, WARMUP_SIZE, WARMUP_SIZE, 3)
    assert saved_model.read_warmup_requests(export_dir)[1][1]["images"].shape == pixels.shape


def test_warmup_records_run_through_both_signatures(exported, served):
    model, export_dir, _ = exported
    by_signature = {w["signature"]: w for w in served[1]["warmup"]}
    assert by_signature[saved_model.SIGNATURE_BYTES]["status"] == [serving.STATUS_OK]
    assert by_signature[saved_model.SIGNATURE_BYTES]["heights"] == [WARMUP_SIZE]
    labels = np.array(by_signature[saved_model.SIGNATURE_IMAGES]["labels"])
    assert labels.shape == (1, WARMUP_SIZE, WARMUP_SIZE)
    # The uint8 warm-up request gives the labels of the Keras model on the same pixels.
    pixels = saved_model.read_warmup_requests(export_dir)[1][1]["images"]
    predict = inference.make_predict_fn(model, SCALES, flip=True, crop_size=CROP_SIZE)
    np.testing.assert_array_equal(labels[0], keras_labels(predict, pixels[0]))


@pytest.mark.parametrize("index", range(len(REQUESTS)))
def test_every_status_combination_returns_statuses(served, index):
    kinds = REQUESTS[index]
    result = served[1]["requests"][index]
    assert result["status"] == [KINDS[k][1] for k in kinds], kinds
    assert result["heights"] == [KINDS[k][2] for k in kinds]
    assert result["widths"] == [KINDS[k][3] for k in kinds]
    labels = np.array(result["labels"])
    ok = [KINDS[k][1] == serving.STATUS_OK for k in kinds]
    expected_shape = (len(kinds), 20, 27) if any(ok) else (len(kinds), 0, 0)
    assert labels.reshape(expected_shape).shape == expected_shape
    for position, is_ok in enumerate(ok):
        if is_ok:
            assert (labels[position] < NUM_CLASSES).all()  # class ids
        elif labels.size:
            assert (labels[position] == serving.PAD_LABEL).all()
