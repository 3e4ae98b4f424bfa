"""The bytes signature's body (`serving.predict_encoded`) on a tiny model, in this process:
each kind of bad image gets its own status, the per-image and per-request bounds refuse
from the header alone, and the graph's rule is the Python one the tools apply.

(A real export, reloaded in a fresh process under a memory limit, with hostile and fuzzed
requests: tests/test_serving_hostile.py.)
"""
import numpy as np
import pytest
import tensorflow as tf

from deeplab_tf import config as config_lib
from deeplab_tf.export import serving

import serving_fuzz
import small_models
from serving_fuzz import (DECODE_FAILED, NOT_AN_IMAGE, OK, REQUEST_TOO_LARGE, TOO_LARGE,
                          UNSUPPORTED, encoded, hostile_png)

STRIDE, CROP = 2, (33, 33)  # the tiny model's stride; every image padded to 33x33 at least
BOUNDS = serving.Bounds(max_pixels=40 * 40, max_side=61, max_canvas_pixels=41 * 61,
                        max_images=3, max_request_pixels=5000)


@pytest.fixture(scope="module")
def serve():
    config = config_lib.ExperimentConfig(name="test")
    config.model.num_classes = 3
    model = small_models.tiny(config.model)
    model.num_classes = 3

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def run(images):
        return serving.predict_encoded(model, images, (1.0,), False, STRIDE, False, CROP,
                                       BOUNDS)

    return lambda images: {k: v.numpy() for k, v in run(tf.constant(images, tf.string)).items()}


def image(height, width, image_format="PNG", seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), np.uint8)
    return encoded(pixels, image_format)


def test_each_kind_of_bad_image_gets_its_own_status(serve):
    jpeg = image(12, 7, "JPEG")
    request = [
        (image(5, 6), OK), (jpeg, OK),
        (image(5, 6, "GIF"), UNSUPPORTED), (image(5, 6, "BMP"), UNSUPPORTED),
        (image(5, 6, "WEBP"), UNSUPPORTED), (image(5, 6, "TIFF"), UNSUPPORTED),
        (b"\x00 plain bytes, no image at all", NOT_AN_IMAGE), (b"", NOT_AN_IMAGE),
        (b"\x89PNG\r\n", NOT_AN_IMAGE),          # a signature cut short: not one
        (jpeg[:3], DECODE_FAILED),               # a JPEG signature, no header
        (jpeg[:len(jpeg) // 2], DECODE_FAILED),  # a JPEG cut in its data
        (hostile_png(5, 6, complete=False), DECODE_FAILED),  # a PNG's data cut
        (image(5, 6)[:20], DECODE_FAILED),       # a PNG's IHDR cut
        (hostile_png(1, 62), TOO_LARGE),         # 62 pixels: its canvas 33x63, a side > 61
        (hostile_png(2 ** 31 - 1, 2 ** 31 - 1, complete=False), TOO_LARGE)]
    out = serve([data for data, _ in request])
    assert out["status"].tolist() == [status for _, status in request]
    assert out["heights"].tolist() == [5, 12] + [0] * 13
    assert out["widths"].tolist() == [6, 7] + [0] * 13
    assert out["labels"].shape == (15, 12, 7)
    assert (out["labels"][0, :5, :6] < 3).all() and (out["labels"][0, 5:] == 255).all()
    assert (out["labels"][2:] == 255).all()


def test_a_thin_image_within_max_pixels_is_refused_by_its_canvas(serve):
    # 4 x 400 = 1600 pixels = max_pixels, but its canvas would be 33 x 401.
    assert serve([hostile_png(4, 400), hostile_png(400, 4)])["status"].tolist() == [
        TOO_LARGE, TOO_LARGE]
    assert serving.image_refusal(4, 400, BOUNDS, STRIDE, CROP) == (
        "4x400 pixels is padded to 33x401, a side over max_side=61")
    assert "max_pixels=1600" in serving.image_refusal(40, 60, BOUNDS, STRIDE, CROP)
    assert serving.image_refusal(40, 40, BOUNDS, STRIDE, CROP) is None  # canvas 41x41


def test_the_request_bounds_count_images_canvases_and_the_labels_output(serve):
    small = image(1, 1)  # canvas 33x33 = 1089
    out = serve([small] * 4 + [b""])  # max_images = 3; 4 canvases (4356) would fit
    assert out["status"].tolist() == [OK] * 3 + [REQUEST_TOO_LARGE, NOT_AN_IMAGE]
    # One wide and one tall image: each alone fine (canvas 33x61), both together too
    # (4026 <= 5000), but the labels output would be 3 x 60 x 60 > 5000.
    wide, tall = image(2, 60, seed=1), image(60, 2, seed=2)
    out = serve([wide, tall, small])
    assert out["status"].tolist() == [OK, REQUEST_TOO_LARGE, OK]
    assert out["labels"].shape == (3, 2, 60)
    # The sum of the canvases: 41x41 = 1681 three times is over 5000 (the labels output,
    # 3 x 40 x 40 = 4800, is not).
    big = image(40, 40, seed=3)
    assert serve([big, big, big])["status"].tolist() == [OK, OK, REQUEST_TOO_LARGE]
    # Refused images do not use the budget: an empty request and all-refused ones answer.
    assert serve([])["labels"].shape == (0, 0, 0)
    out = serve([b"", hostile_png(1, 62)])
    assert out["status"].tolist() == [NOT_AN_IMAGE, TOO_LARGE]
    assert out["labels"].shape == (2, 0, 0)


def test_the_graph_applies_the_rule_the_tools_apply():
    rng = np.random.default_rng(0)
    sizes = np.concatenate([rng.integers(1, 80, (300, 2)), [[1, 61], [1, 60], [40, 40],
                                                            [41, 39], [9, 61], [60, 41]]])
    heights, widths = tf.constant(sizes[:, 0], tf.int64), tf.constant(sizes[:, 1], tf.int64)
    graph = serving._fits(heights, widths, BOUNDS, STRIDE, CROP).numpy()  # pylint: disable=protected-access
    python = [serving.image_refusal(h, w, BOUNDS, STRIDE, CROP) is None for h, w in sizes]
    assert graph.tolist() == python
    assert 0 < sum(python) < len(python)


def test_quick_fuzz_in_process(serve):
    # The generator of the full run (tests/serving_fuzz.py), a few requests on the tiny model.
    for images, allowed in serving_fuzz.requests(1, 200, small=12, max_side=BOUNDS.max_side,
                                                 max_images=BOUNDS.max_images):
        out = serve(images)
        serving_fuzz.check(images, allowed, out["status"], out["heights"], out["widths"],
                           out["labels"], 3, BOUNDS.max_images)
