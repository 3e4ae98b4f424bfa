"""The authors' loss options the paper does not use: per-class loss weights and hard pixel
mining (research/deeplab train_utils: loss_weight, top_k_percent_pixels,
hard_example_mining_step), against a plain NumPy computation."""
import numpy as np
import pytest
import tensorflow as tf

from deeplab_tf import config as config_lib
from deeplab_tf.train import loss as loss_lib

import small_models


def pixel_losses(logits, labels):
    """NumPy per-pixel softmax cross-entropy, 0 on ignored (255) pixels."""
    log_softmax = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    valid = labels != 255
    picked = np.take_along_axis(log_softmax, np.where(valid, labels, 0)[..., None], -1)
    return np.where(valid, -picked[..., 0], 0.0)


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 9, 9, 4)).astype(np.float64)
    labels = rng.integers(0, 4, size=(2, 9, 9)).astype(np.int32)
    labels[0, :4] = 255  # 36 ignored pixels
    return logits, labels


def test_class_weights_weigh_each_pixel_by_its_label(batch):
    logits, labels = batch
    weights = np.array([0.5, 1.0, 3.0, 0.0])
    total, count = loss_lib.cross_entropy_sum(tf.constant(logits), tf.constant(labels),
                                              class_weights=weights)
    valid = labels != 255
    expected = (pixel_losses(logits, labels) * weights[np.where(valid, labels, 0)]).sum()
    np.testing.assert_allclose(total.numpy(), expected, rtol=1e-12)
    assert count.numpy() == valid.sum() == 2 * 81 - 36  # the authors divide by pixels


@pytest.mark.parametrize("k", [1, 50, 126, 162])
def test_top_k_keeps_the_largest_losses_and_counts_at_most_the_valid_pixels(batch, k):
    logits, labels = batch
    total, count = loss_lib.cross_entropy_sum(tf.constant(logits), tf.constant(labels),
                                              top_k_pixels=tf.constant(k))
    losses = np.sort(pixel_losses(logits, labels).ravel())[::-1]
    np.testing.assert_allclose(total.numpy(), losses[:k].sum(), rtol=1e-12)
    # 126 valid pixels: past that the kept ones include ignored pixels, which count 0.
    assert count.numpy() == min(k, 126)


def test_top_k_gradient_reaches_only_the_kept_pixels(batch):
    logits, labels = tf.constant(batch[0]), tf.constant(batch[1])
    with tf.GradientTape() as tape:
        tape.watch(logits)
        total, _ = loss_lib.cross_entropy_sum(logits, labels, top_k_pixels=tf.constant(10))
    touched = np.any(tape.gradient(total, logits).numpy() != 0, axis=-1)
    losses = pixel_losses(batch[0], batch[1])
    assert touched.sum() == 10
    assert losses[touched].min() >= np.sort(losses.ravel())[-10]


def test_mined_share_ramps_from_all_pixels_to_top_k_as_the_authors_compute_it():
    pixels, top_k, ramp = 1000, 0.25, 100
    for step in (0, 1, 40, 99, 100, 5000):
        ratio = min(1.0, step / ramp)
        expected = int((ratio * top_k + (1.0 - ratio)) * pixels)
        got = int(loss_lib.mined_pixels(pixels, tf.constant(step), top_k, ramp))
        assert abs(got - expected) <= 1, step  # float32 against float64 truncation
    assert int(loss_lib.mined_pixels(pixels, tf.constant(0), top_k, 0)) == 250  # at once
    assert int(loss_lib.mined_pixels(pixels, tf.constant(7), 1.0, 0)) == pixels


def test_class_weights_of_the_wrong_length_are_refused():
    config = config_lib.ExperimentConfig()
    config.train.class_loss_weights = (1.0, 2.0)
    with pytest.raises(ValueError, match=r"21 non-negative weights.*\(1\.0, 2\.0\)"):
        loss_lib.class_weights(config)
    config.train.class_loss_weights = (1.0,) * 20 + (-1.0,)
    with pytest.raises(ValueError, match="non-negative"):
        loss_lib.class_weights(config)
    config.train.class_loss_weights = ()
    assert loss_lib.class_weights(config) is None


def test_the_training_step_reports_and_minimises_the_weighted_mined_loss(tmp_path):
    """Trainer: its first step's cross-entropy equals the NumPy loss of the model's logits
    with class weights and the top 30% of pixels (mining from step 0), k = 0.3 x all pixels
    of the batch, the count min(k, valid pixels)."""
    rng = np.random.default_rng(1)
    images = rng.uniform(0, 255, (2, 33, 33, 3)).astype(np.float32)
    labels = rng.integers(0, 21, (2, 33, 33)).astype(np.int32)
    labels[:, :10] = 255
    weights = tuple(float(w) for w in rng.uniform(0.5, 2.0, 21))
    config = config_lib.load_experiment("smoke", [
        f"model.builder={small_models.LINEAR}", "train.batch_size=2",
        "train.top_k_percent_pixels=0.3",
        f"train.class_loss_weights={weights}", "train.init_checkpoint=none"])

    def dataset_fn(context=None, seed=0):
        return tf.data.Dataset.from_tensors((images, labels)).repeat()

    from deeplab_tf.train import loop
    trainer = loop.Trainer(config, str(tmp_path), dataset_fn=dataset_fn)
    logits, _ = loss_lib.logits_and_labels(trainer.model(images), tf.constant(labels))
    losses = pixel_losses(logits.numpy().astype(np.float64), labels)
    losses *= np.array(weights)[np.where(labels == 255, 0, labels)]
    k = int(0.3 * labels.size)
    expected = np.sort(losses.ravel())[::-1][:k].sum() / min(k, (labels != 255).sum())
    outputs = trainer._step_fn()(trainer.iterator)
    np.testing.assert_allclose(float(outputs["cross_entropy"]), expected, rtol=1e-5)
