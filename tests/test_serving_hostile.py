"""Hostile requests against a real export (`tools.export` of a ResNet-50 DeepLabv3),
reloaded in a fresh process under an address-space limit (RLIMIT_AS): the process lives,
answers every request with one status per image, and stays within its memory.

Issue 28: one 12 KB PNG whose IHDR says 4 x 1,000,000 pixels passed the pixel cap, was
padded to a 65 x 1,000,001 canvas and took 124 s and 21.3 GiB; under a 16 GB limit the
server died. Here the process gets ADDRESS_LIMIT_GB (TensorFlow alone reserves about
2.5 GB of address space) and must answer that request, thin and huge headers, a wide and a
tall image together, too many images, and a quick fuzz run (tests/serving_fuzz.py, the
generator of the full run in the notes) through `serving_default`.
"""
import json
import os
import resource
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from deeplab_tf import config as config_lib

import serving_fuzz
from serving_fuzz import (DECODE_FAILED, NOT_AN_IMAGE, OK, REQUEST_TOO_LARGE, TOO_LARGE,
                          UNSUPPORTED, hostile_png)

NUM_CLASSES = 5
CROP = 65  # the smoke experiment's evaluation crop
MAX_IMAGES = 8
ADDRESS_LIMIT_GB = 8
# The process must live under ADDRESS_LIMIT_GB and its peak resident memory stay under this:
# images run one at a time, so the peak is the base process plus the largest canvas the
# bounds admit (2049^2 pixels) at the convolution library's bytes per canvas pixel, which
# depends on the CPU's kernels: measured 1.2-1.45 GB with oneDNN (TensorFlow's default on
# CPUs with AVX-512 VNNI/BF16) and 4.3 GB with oneDNN off (Eigen, the default on AVX2-only
# CPUs; TF_ENABLE_ONEDNN_OPTS=0). The bound holds both (1.4x the larger), well inside the
# 16 GB the export's default bounds are sized for.
PEAK_RSS_LIMIT_MB = 6144
FUZZ_REQUESTS = 40


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    """`tools.export` of a ResNet-50 DeepLabv3 (untrained: statuses are what is tested),
    single scale, evaluation crop 65, the default bounds but max_images."""
    config = config_lib.ExperimentConfig(name="test")
    config.model.depth = 50
    config.model.num_classes = config.data.num_classes = NUM_CLASSES
    config.eval.output_stride = 16
    config.eval.crop_size = (CROP, CROP)
    model = config_lib.build_model(config.model)
    work = tmp_path_factory.mktemp("hostile")
    (work / "config.json").write_text(config_lib.to_json(config))
    tf.train.CheckpointManager(tf.train.Checkpoint(model=model), str(work / "checkpoints"),
                               1).save()
    export_dir = str(work / "model")
    process = subprocess.run([sys.executable, "-m", "tools.export", f"--workdir={work}",
                              f"--export_dir={export_dir}", f"--max_images={MAX_IMAGES}"],
                             capture_output=True, text=True, timeout=600)
    assert process.returncode == 0, process.stderr[-3000:]
    assert f"max_images={MAX_IMAGES}" in process.stdout
    return export_dir


SERVE_SCRIPT = r"""
import json, resource, sys
import numpy as np, tensorflow as tf
export_dir, requests_file, outputs = sys.argv[1:]
loaded = tf.saved_model.load(export_dir)
serve = loaded.signatures["serving_default"]
answers = []
for images in json.load(open(requests_file)):
    out = serve(images=tf.constant([bytes.fromhex(h) for h in images], tf.string))
    answers.append({k: np.asarray(v).tolist() for k, v in out.items() if k != "labels"}
                   | {"labels_shape": list(out["labels"].shape),
                      "labels_ok": [bool((np.asarray(out["labels"])[i] < 255).any())
                                    for i in range(len(images))]})
errors = []
for shape in ([1, 1, 5000, 3], [9, 8, 8, 3], [1, 2100, 2100, 3]):
    try:
        loaded.signatures["serve_images"](images=tf.zeros(shape, tf.uint8))
        errors.append("none")
    except tf.errors.InvalidArgumentError as error:
        errors.append(error.message[:3000])
after = loaded.signatures["serve_images"](images=tf.zeros([1, 8, 8, 3], tf.uint8))
json.dump({"answers": answers, "errors": errors, "after": list(after["labels"].shape),
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024},
          open(outputs, "w"))
"""


def limit_address_space():
    limit = ADDRESS_LIMIT_GB * 2 ** 30
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def serve_in_fresh_process(export_dir, requests, tmp_path):
    requests_file, outputs = tmp_path / "requests.json", tmp_path / "outputs.json"
    requests_file.write_text(json.dumps([[b.hex() for b in r] for r in requests]))
    process = subprocess.run([sys.executable, "-c", SERVE_SCRIPT, export_dir,
                              str(requests_file), str(outputs)], capture_output=True,
                             text=True, timeout=600, preexec_fn=limit_address_space)
    # It lived: a crash (segfault, RESOURCE_EXHAUSTED) is a non-zero exit and no answers.
    assert process.returncode == 0, process.stderr[-3000:]
    return json.loads(outputs.read_text())


def small_png(height, width):
    return serving_fuzz.encoded(np.full((height, width, 3), 90, np.uint8), "PNG")


HOSTILE = [
    # The request: 12 KB, 4 x 1,000,000 pixels (under max_pixels), and an ordinary
    # image beside it, which is served.
    ([hostile_png(4, 1_000_000), small_png(20, 30)], [TOO_LARGE, OK]),
    # A wide and a tall image, each within the bounds: together their labels output would
    # be 2 x 4000 x 4000; the second is not served, the first is.
    ([hostile_png(4, 4000), hostile_png(4000, 4)], [OK, REQUEST_TOO_LARGE]),
    # Huge headers with little data; a header within the bounds with its data cut short.
    ([hostile_png(2 ** 31 - 1, 2 ** 31 - 1, complete=False), hostile_png(50_000, 50_000,
                                                                         complete=False),
      hostile_png(300, 200, complete=False)], [TOO_LARGE, TOO_LARGE, DECODE_FAILED]),
    # More images than max_images; other formats, empty strings, plain bytes.
    ([small_png(3, 3)] * (MAX_IMAGES + 2), [OK] * MAX_IMAGES + [REQUEST_TOO_LARGE] * 2),
    ([b"GIF89a" + bytes(40), b"", b"\x00\x01", b"\xff\xd8\xff"],
     [UNSUPPORTED, NOT_AN_IMAGE, NOT_AN_IMAGE, DECODE_FAILED]),
    ([], []),
]


@pytest.mark.slow
def test_hostile_requests_are_answered_in_a_fresh_process_under_a_memory_limit(
        export_dir, tmp_path):
    with open(os.path.join(export_dir, "deeplab_export.json")) as f:
        bounds = json.load(f)["bounds"]
    assert bounds == {"max_pixels": 2048 * 2048, "max_side": 4097,
                      "max_canvas_pixels": 2049 * 2049, "max_images": MAX_IMAGES,
                      "max_request_pixels": 2 * 2049 * 2049}
    fuzz = list(serving_fuzz.requests(0, FUZZ_REQUESTS, max_side=bounds["max_side"],
                                      max_images=MAX_IMAGES))
    result = serve_in_fresh_process(
        export_dir, [r for r, _ in HOSTILE] + [r for r, _ in fuzz], tmp_path)
    answers = result["answers"]
    assert len(answers) == len(HOSTILE) + len(fuzz)
    for (images, statuses), answer in zip(HOSTILE, answers):
        assert answer["status"] == statuses
        assert answer["labels_ok"] == [s == OK for s in statuses]
    assert answers[1]["heights"] == [4, 0] and answers[1]["widths"] == [4000, 0]
    assert answers[1]["labels_shape"] == [2, 4, 4000]  # not 2 x 4000 x 4000
    assert answers[0]["labels_shape"] == [2, 20, 30]
    assert answers[-len(fuzz) - 1]["labels_shape"] == [0, 0, 0]
    seen = set()
    for (images, allowed), answer in zip(fuzz, answers[len(HOSTILE):]):
        assert len(answer["status"]) == len(images)  # one status per image, every time
        for position, status in enumerate(answer["status"]):
            assert status in allowed[position], (images[position][:40], status)
            assert answer["labels_ok"][position] == (status == OK)
        seen.update(answer["status"])
    assert {OK, NOT_AN_IMAGE, TOO_LARGE, UNSUPPORTED, DECODE_FAILED} <= seen
    # The uint8 signature: the same bounds, as errors naming them; the next call is served.
    assert "max_side=4097" in result["errors"][0]
    assert f"max_images={MAX_IMAGES}" in result["errors"][1]
    assert "max_pixels=4194304" in result["errors"][2]
    assert result["after"] == [1, 8, 8]
    assert result["peak_rss_mb"] < PEAK_RSS_LIMIT_MB, result["peak_rss_mb"]
