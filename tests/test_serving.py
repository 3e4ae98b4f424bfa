"""The exported SavedModel in a fresh process: warm-up records and every status combination.

One export (ResNet-50, 3 classes, max_pixels 32*32 so that "too large" images stay cheap)
is loaded in a new Python process that does not import deeplab_tf. It runs the warm-up
records read back from assets.extra, then the bytes signature on every combination of
ok / undecodable / too large / empty-string images, and prints what came back; the test
compares it with the statuses and sizes written down independently here.
"""
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

MAX_PIXELS = 32 * 32
WARMUP_SIZE = 24


def jpeg_bytes(height, width, seed):
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(
        buffer, format="JPEG", quality=90)
    return buffer.getvalue()


# kind -> (bytes, expected status, expected height, width)
IMAGES = {
    "ok": (jpeg_bytes(20, 27, 0), serving.STATUS_OK, 20, 27),
    "undecodable": (b"\xff\xd8\xff" + b"not a jpeg at all" * 3, serving.STATUS_INVALID, 0, 0),
    "too_large": (jpeg_bytes(40, 41, 1), serving.STATUS_TOO_LARGE, 0, 0),
    "empty": (b"", serving.STATUS_INVALID, 0, 0),
}
# Every kind alone, every pair, all four together; order matters for the scatter, so both.
REQUESTS = ([[k] for k in IMAGES] + [list(p) for p in itertools.permutations(IMAGES, 2)]
            + [list(IMAGES), ["too_large", "too_large"], []])

SERVE_SCRIPT = r"""
import json, sys
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2
assert "deeplab_tf" not in sys.modules
export_dir, requests_file, output_file = sys.argv[1:]
loaded = tf.saved_model.load(export_dir)
out = {"warmup": [], "requests": []}
path = export_dir + "/assets.extra/tf_serving_warmup_requests"
for record in tf.data.TFRecordDataset(path):
    request = prediction_log_pb2.PredictionLog.FromString(record.numpy()).predict_log.request
    inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
    result = loaded.signatures[request.model_spec.signature_name](**inputs)
    out["warmup"].append({"signature": request.model_spec.signature_name,
                          **{k: np.asarray(v).tolist() for k, v in result.items()}})
for images in json.load(open(requests_file)):
    encoded = tf.constant([bytes.fromhex(h) for h in images], dtype=tf.string)
    result = loaded.signatures["serving_default"](images=encoded)
    out["requests"].append({k: np.asarray(v).tolist() for k, v in result.items()})
json.dump(out, open(output_file, "w"))
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(model, export_dir, what the fresh process returned)."""
    tf.keras.utils.set_random_seed(2)
    config = config_lib.ExperimentConfig()
    config.model.depth = 50
    config.model.num_classes = 3
    model = config_lib.build_model(config.model)
    root = tmp_path_factory.mktemp("serving")
    export_dir = str(root / "model")
    saved_model.export_saved_model(model, export_dir, max_pixels=MAX_PIXELS,
                                   warmup_size=WARMUP_SIZE)
    requests_file, output_file = root / "requests.json", root / "out.json"
    requests_file.write_text(json.dumps([[IMAGES[k][0].hex() for k in r] for r in REQUESTS]))
    environment = dict(os.environ, PYTHONPATH="")  # deeplab_tf must not be needed
    process = subprocess.run([sys.executable, "-c", SERVE_SCRIPT, export_dir,
                              str(requests_file), str(output_file)], cwd=str(root),
                             env=environment, capture_output=True, text=True, timeout=600)
    assert process.returncode == 0, process.stderr[-3000:]
    return model, export_dir, json.loads(output_file.read_text())


def test_warmup_records_are_one_request_per_signature_at_the_export_size(served):
    _, export_dir, _ = served
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


def test_warmup_records_run_through_both_signatures(served):
    model, export_dir, out = served
    by_signature = {w["signature"]: w for w in out["warmup"]}
    assert by_signature[saved_model.SIGNATURE_BYTES]["status"] == [serving.STATUS_OK]
    assert by_signature[saved_model.SIGNATURE_BYTES]["heights"] == [WARMUP_SIZE]
    labels = np.array(by_signature[saved_model.SIGNATURE_IMAGES]["labels"])
    assert labels.shape == (1, WARMUP_SIZE, WARMUP_SIZE)
    # The uint8 warm-up request gives the labels of the Keras model on the same pixels.
    pixels = saved_model.read_warmup_requests(export_dir)[1][1]["images"]
    expected = inference.predict_labels(model, tf.constant(pixels, tf.float32)).numpy()
    np.testing.assert_array_equal(labels, expected)


@pytest.mark.parametrize("index", range(len(REQUESTS)))
def test_every_status_combination_returns_statuses(served, index):
    kinds = REQUESTS[index]
    result = served[2]["requests"][index]
    assert result["status"] == [IMAGES[k][1] for k in kinds], kinds
    assert result["heights"] == [IMAGES[k][2] for k in kinds]
    assert result["widths"] == [IMAGES[k][3] for k in kinds]
    labels = np.array(result["labels"])
    ok = [IMAGES[k][1] == serving.STATUS_OK for k in kinds]
    expected_shape = (len(kinds), 20, 27) if any(ok) else (len(kinds), 0, 0)
    assert labels.reshape(expected_shape).shape == expected_shape
    for position, is_ok in enumerate(ok):
        if is_ok:
            assert (labels[position] < 3).all()  # class ids
        elif labels.size:
            assert (labels[position] == serving.PAD_LABEL).all()
