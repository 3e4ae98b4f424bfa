"""Whole-image inference, multi-scale + flip, and OS 8 evaluation of an OS 16 checkpoint.

"Plain inference" is computed here through the model's own path (`with_upsampled_logits`,
keras.ops einsum resize) on an image padded by numpy, independent of inference.py's
TensorFlow padding and resize.
"""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from deeplab_tf import config as config_lib
from deeplab_tf import modeling
from deeplab_tf.evaluation import checkpoints, evaluator, inference

NUM_CLASSES = 4


def small_config(output_stride=16, num_classes=NUM_CLASSES):
    config = config_lib.ExperimentConfig(name="test")
    config.model.depth = 50
    config.model.num_classes = num_classes
    config.model.output_stride = output_stride
    config.data.num_classes = num_classes
    return config


def calibrate(model):
    """Scales the logits layer of a randomly initialised model to logits of std ~1.

    Untrained activations grow through 50 layers and saturate the softmax (probabilities
    exactly 0 and 1), which would make any averaging look right.
    """
    logits = np.asarray(model(asymmetric_image(33, 33)[None]))
    layer = model.get_layer("logits")
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel / logits.std(), (bias - logits.mean()) / logits.std()])
    return model


@pytest.fixture(scope="module")
def model():
    tf.keras.utils.set_random_seed(0)
    return calibrate(config_lib.build_model(small_config().model))


def asymmetric_image(height, width, seed=0):
    """A ramp plus a bright block on the left: no left-right symmetry anywhere."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:height, :width]
    image = np.stack([cols * 255.0 / width, rows * 255.0 / height,
                      rng.uniform(0, 255, (height, width))], -1)
    image[height // 4:height // 2, : max(1, width // 5)] = (250, 20, 20)
    return image.astype(np.float32)


def plain_logits(model, image):
    """Pad with the mean pixel to OS*k+1 (numpy), model + upsample (keras), crop."""
    height, width = image.shape[:2]
    stride = inference.model_output_stride(model)
    padded = np.empty((inference.padded_size(height, stride),
                       inference.padded_size(width, stride), 3), np.float32)
    padded[...] = modeling.MEAN_PIXEL
    padded[:height, :width] = image
    logits = modeling.with_upsampled_logits(model)(padded[None])
    return np.asarray(logits)[0, :height, :width]


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("size,stride,padded", [(1, 16, 1), (17, 16, 17), (18, 16, 33),
                                                (97, 8, 97), (98, 8, 105), (513, 16, 513)])
def test_padded_size_is_output_stride_times_k_plus_one(size, stride, padded):
    assert inference.padded_size(size, stride) == padded


def test_single_scale_without_flip_equals_plain_inference(model):
    predict = inference.make_predict_fn(model, scales=(1.0,), flip=False)
    for height, width in ((33, 33), (27, 40), (1, 1)):
        image = asymmetric_image(height, width)
        labels, probabilities = predict(tf.constant(image[None]))
        expected = softmax(plain_logits(model, image))
        assert probabilities.shape == (1, height, width, NUM_CLASSES)
        np.testing.assert_allclose(probabilities[0], expected, atol=1e-5)
        assert np.array_equal(labels[0], expected.argmax(-1))


def test_flip_is_undone(model):
    image = asymmetric_image(30, 37)
    mirrored = image[:, ::-1]
    direct = softmax(plain_logits(model, image))
    via_mirror = softmax(plain_logits(model, mirrored))[:, ::-1]
    # The input is asymmetric enough that mirroring changes the prediction: a flip that is
    # not undone, or undone twice, could not pass the checks below.
    assert np.abs(direct - via_mirror).max() > 1e-3
    assert np.abs(direct - softmax(plain_logits(model, mirrored))).max() > 1e-3

    predict = inference.make_predict_fn(model, scales=(1.0,), flip=True)
    _, probabilities = predict(tf.constant(image[None]))
    np.testing.assert_allclose(probabilities[0], (direct + via_mirror) / 2, atol=1e-5)
    # Flip averaging makes the prediction mirror-equivariant.
    _, of_mirrored = predict(tf.constant(mirrored[None].copy()))
    np.testing.assert_allclose(of_mirrored[0], probabilities[0][:, ::-1], atol=1e-5)


def test_multi_scale_averages_probabilities_at_full_resolution(model):
    height, width = 25, 31
    image = asymmetric_image(height, width, seed=3)
    predict = inference.make_predict_fn(model, scales=(0.5, 1.0, 1.5), flip=False)
    labels, probabilities = predict(tf.constant(image[None]))
    assert labels.shape == (1, height, width)
    np.testing.assert_allclose(np.sum(probabilities, -1), 1.0, atol=1e-5)
    expected = softmax(plain_logits(model, image))
    for scale in (0.5, 1.5):
        size = (int(np.floor(height * scale + 0.5)), int(np.floor(width * scale + 0.5)))
        scaled = tf.compat.v1.image.resize_bilinear(image[None], size, align_corners=True)
        logits = plain_logits(model, np.asarray(scaled)[0])
        back = modeling.resize_bilinear(logits[None], (height, width))
        expected = expected + softmax(np.asarray(back)[0])
    np.testing.assert_allclose(probabilities[0], expected / 3, atol=1e-5)


def test_tiny_image_at_every_scale(model):
    predict = inference.make_predict_fn(model, scales=(0.25, 1.0), flip=False)
    labels, _ = predict(tf.zeros([1, 1, 1, 3]))
    assert labels.shape == (1, 1, 1)


def write_workdir(workdir, model, config):
    """A work dir as the trainer writes it: config.json + CheckpointManager checkpoints."""
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(config_lib.to_json(config))
    step = tf.Variable(7, dtype=tf.int64)
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=model, step=step),
                                         os.path.join(workdir, "checkpoints"), max_to_keep=2)
    return manager.save(checkpoint_number=7)


def test_output_stride_8_from_output_stride_16_checkpoint(tmp_path, model):
    config = small_config()
    path = write_workdir(str(tmp_path), model, config)
    assert checkpoints.latest_checkpoint(str(tmp_path)) == path
    assert evaluator.checkpoint_step(path) == 7
    restored = checkpoints.restore_model(checkpoints.read_config(str(tmp_path)).model, path,
                                         output_stride=8)
    assert restored.output_stride == 8 and inference.model_output_stride(restored) == 8
    saved = {layer.name: layer for layer in model.layers if layer.weights}
    compared = 0
    for layer in restored.layers:
        for mine, theirs in zip(layer.get_weights(), saved[layer.name].get_weights()
                                if layer.weights else []):
            np.testing.assert_array_equal(mine, theirs)
            compared += 1
    assert compared == len(model.get_weights())
    # Feature map at OS 8: (33 - 1) / 8 + 1.
    assert restored(tf.zeros([1, 33, 33, 3])).shape == (1, 5, 5, NUM_CLASSES)


def test_checkpoint_with_another_class_count_is_a_clear_error(tmp_path, model):
    path = write_workdir(str(tmp_path), model, small_config())
    with pytest.raises(ValueError, match=r"4 classes, but the config asks for 19"):
        checkpoints.restore_model(small_config(num_classes=19).model, path)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        checkpoints.latest_checkpoint(str(tmp_path / "elsewhere"))


def test_evaluate_writes_json_table_and_tensorboard(tmp_path, model):
    rng = np.random.default_rng(0)
    examples = []
    for height, width in ((17, 23), (33, 20)):
        label = rng.integers(0, NUM_CLASSES, (height, width))
        label[0, :] = 255
        examples.append((asymmetric_image(height, width, seed=height), label))
    predict = inference.make_predict_fn(model)
    confusion = evaluator.evaluate(predict, examples, NUM_CLASSES, verbose=False)
    assert confusion.matrix.sum() == 16 * 23 + 32 * 20  # the 255 rows left out
    # The same numbers image by image, from plain inference.
    expected = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
    for image, label in examples:
        predicted = plain_logits(model, image).argmax(-1)
        keep = label != 255
        np.add.at(expected, (label[keep], predicted[keep]), 1)
    np.testing.assert_array_equal(confusion.matrix, expected)

    result = confusion.result()
    table = evaluator.write_results(str(tmp_path), result, step=7, settings={"scales": [1.0]})
    saved = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert saved["miou"] == result["miou"] and saved["step"] == 7
    assert (tmp_path / "eval" / "results_7.txt").read_text().strip() == table
    events = tf.io.gfile.glob(str(tmp_path / "eval" / "events.out.tfevents.*"))
    tags = {value.tag for event in tf.compat.v1.train.summary_iterator(events[0])
            for value in event.summary.value}
    assert {"eval/miou", "eval/pixel_accuracy"} <= tags


def test_examples_from_eval_input_cut_the_padding():
    image = np.zeros((1, 17, 33, 3), np.float32)
    label = np.full((1, 17, 33), 255, np.int32)
    label[0, :10, :20] = 1
    dataset = tf.data.Dataset.from_tensors({"image": image, "label": label, "height": 10,
                                            "width": 20, "file_name": "a"})
    (out_image, out_label), = list(evaluator.examples_from_eval_input(dataset))
    assert out_image.shape == (10, 20, 3) and out_label.shape == (10, 20)
    assert (out_label == 1).all()
