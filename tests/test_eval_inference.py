"""Whole-image inference, multi-scale + flip, and OS 8 evaluation of an OS 16 checkpoint;
the paper's test protocol (4.1: every image padded to the evaluation crop size).

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
    """The authors' flip: the padded input is mirrored (its padding moves to the left),
    the logits are mirrored back."""
    image = asymmetric_image(30, 37)
    stride = inference.model_output_stride(model)
    padded = np.empty((inference.padded_size(30, stride), inference.padded_size(37, stride),
                       3), np.float32)
    padded[...] = modeling.MEAN_PIXEL
    padded[:30, :37] = image
    direct = softmax(plain_logits(model, image))
    mirrored = np.asarray(modeling.with_upsampled_logits(model)(padded[None, :, ::-1]))
    via_mirror = softmax(mirrored[0, :, ::-1][:30, :37])
    # The input is asymmetric enough that mirroring changes the prediction: a flip that is
    # not undone, or undone twice, could not pass the checks below.
    assert np.abs(direct - via_mirror).max() > 1e-3
    assert np.abs(direct - softmax(mirrored[0, :30, :37])).max() > 1e-3

    predict = inference.make_predict_fn(model, scales=(1.0,), flip=True)
    _, probabilities = predict(tf.constant(image[None]))
    np.testing.assert_allclose(probabilities[0], (direct + via_mirror) / 2, atol=1e-5)
    # Without padding (33x49 = OS*k+1), flip averaging is mirror-equivariant.
    unpadded = asymmetric_image(33, 49)
    _, of_image = predict(tf.constant(unpadded[None]))
    _, of_mirrored = predict(tf.constant(unpadded[None, :, ::-1].copy()))
    np.testing.assert_allclose(of_mirrored[0], of_image[0][:, ::-1], atol=1e-5)


def reference_probabilities(model, image, crop_size, scales, output_stride=16):
    """The authors' multi_scale_logits / predict_labels_multi_scale, written out: pad to
    the crop with the mean pixel (numpy), resize the padded input to int((S - 1) * s + 1)
    (TF1 resize_bilinear, aligned corners), logits by the Keras model, resized to
    int((S - 1) * max(1, s) / OS + 1) and then to S (keras.ops resize), softmax, averaged,
    cut to the image."""
    height, width = image.shape[:2]
    padded = np.empty((*crop_size, 3), np.float32)
    padded[...] = modeling.MEAN_PIXEL
    padded[:height, :width] = image
    total = 0
    for scale in scales:
        size = [int((s - 1) * scale + 1) for s in crop_size]
        scaled = tf.compat.v1.image.resize_bilinear(padded[None], size, align_corners=True)
        logits = model(scaled, training=False)
        logits_size = [int((s - 1) * max(1.0, scale) / output_stride + 1) for s in crop_size]
        logits = modeling.resize_bilinear(logits, logits_size)
        logits = np.asarray(modeling.resize_bilinear(logits, crop_size))[0]
        total = total + softmax(logits[:height, :width])
    return total / len(scales)


def test_multi_scale_resizes_the_padded_input_as_the_authors_do(model):
    height, width = 25, 31
    image = asymmetric_image(height, width, seed=3)
    crop_size, scales = (33, 49), (0.5, 1.0, 1.5)
    predict = inference.make_predict_fn(model, scales=scales, flip=False,
                                        crop_size=crop_size)
    labels, probabilities = predict(tf.constant(image[None]))
    assert labels.shape == (1, height, width)
    np.testing.assert_allclose(np.sum(probabilities, -1), 1.0, atol=1e-5)
    expected = reference_probabilities(model, image, crop_size, scales)
    np.testing.assert_allclose(probabilities[0], expected, atol=1e-5)
    # Each scale on its own differs (the average is not dominated by one term).
    alone = [reference_probabilities(model, image, crop_size, (s,)) for s in scales]
    assert min(np.abs(a - expected).max() for a in alone) > 1e-3


def test_caller_padding_and_evaluator_padding_give_identical_predictions(model):
    """Paper 4.1 protocol: an image smaller than the evaluation crop is predicted the same
    whether the caller pads it (as eval_input does) or inference does; the prediction is
    cut back to the image's own size."""
    from deeplab_tf.data import augment
    height, width, crop_size = 20, 27, (49, 49)
    image = asymmetric_image(height, width, seed=4)
    label = np.zeros((height, width, 1), np.uint8)
    predict = inference.make_predict_fn(model, scales=(0.75, 1.0), flip=True,
                                        crop_size=crop_size)
    labels, direct = predict(tf.constant(image[None]))
    padded, padded_label = augment.eval_pad(image, label, *crop_size)
    assert padded.shape == (*crop_size, 3) and (padded_label.numpy()[height:] == 255).all()
    padded_labels, of_padded = predict(padded[None])
    assert direct.shape == (1, height, width, NUM_CLASSES)
    # The same computation on the same values (up to float rounding of different-sized
    # tensors): the same labels.
    np.testing.assert_allclose(of_padded[0, :height, :width], direct[0], atol=1e-6)
    np.testing.assert_array_equal(padded_labels[0, :height, :width], labels[0])
    # The crop size matters: padded only to the smallest OS*k+1 (33), image pooling
    # averages over another map and the probabilities change.
    smallest = inference.make_predict_fn(model, scales=(0.75, 1.0), flip=True)
    assert np.abs(np.asarray(smallest(tf.constant(image[None]))[1]) - direct).max() > 1e-3


class InputRecorder:
    """Stands in for a DeepLabV3 at OS 16: records the input sizes inference feeds it."""
    depth, output_stride, multi_grid, extra_blocks, num_classes = 50, 16, (1, 1, 1), 0, 3

    def __init__(self):
        self.sizes = []

    def __call__(self, images, training=False):
        shape = images.shape
        self.sizes.append((shape[1], shape[2]))
        return tf.zeros([shape[0], (shape[1] - 1) // 16 + 1, (shape[2] - 1) // 16 + 1, 3])


def test_every_image_is_padded_to_the_crop_so_image_pooling_sees_33x33():
    tf.config.run_functions_eagerly(True)  # the recorder sees concrete shapes
    try:
        for (height, width), fed in (((375, 500), (513, 513)), ((1, 1), (513, 513)),
                                     ((600, 300), (609, 513)), ((513, 1000), (513, 1009))):
            recorder = InputRecorder()
            labels = inference.predict_labels(recorder, tf.zeros([1, height, width, 3]),
                                              scales=(0.5, 1.0), crop_size=(513, 513))
            assert labels.shape == (1, height, width)  # cut back to the image
            half = tuple(int((s - 1) * 0.5 + 1) for s in fed)
            assert recorder.sizes == [half, fed]
        recorder = InputRecorder()
        inference.predict_labels(recorder, tf.zeros([1, 40, 70, 3]))  # pad_to="smallest"
        assert recorder.sizes == [(49, 81)]
    finally:
        tf.config.run_functions_eagerly(False)
    # A 513x513 input gives the image-pooling branch a 33x33 map at OS 16.
    full = modeling.deeplabv3(21, depth=50, multi_grid=(1, 1, 1), image_shape=(513, 513, 3))
    assert tuple(full.get_layer("image_pooling_gap").input.shape[1:3]) == (33, 33)


@pytest.mark.parametrize("size,stride,crop,padded", [(375, 16, 513, 513), (513, 16, 513, 513),
                                                     (514, 16, 513, 529), (500, 8, 500, 505),
                                                     (1024, 4, 1025, 1025),
                                                     (2048, 16, 2049, 2049)])
def test_padded_size_with_a_crop(size, stride, crop, padded):
    assert int(inference.padded_size(size, stride, crop)) == padded


def test_eval_crop_size_from_the_config():
    config = config_lib.ExperimentConfig()
    assert config_lib.eval_crop_size(config.eval) == (513, 513)
    config.eval.pad_to = "smallest"
    assert config_lib.eval_crop_size(config.eval) is None
    config = config_lib.override(config_lib.ExperimentConfig(), ["eval.crop_size=129"])
    assert config_lib.eval_crop_size(config.eval) == (129, 129)
    config = config_lib.override(config_lib.ExperimentConfig(), ["eval.pad_to=crop"])
    with pytest.raises(ValueError, match="eval.pad_to must be one of"):
        config_lib.eval_crop_size(config.eval)
    config = config_lib.override(config_lib.ExperimentConfig(), ["eval.crop_size=(0,5)"])
    with pytest.raises(ValueError, match=r"eval.crop_size must be \(height, width\)"):
        config_lib.eval_crop_size(config.eval)


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
