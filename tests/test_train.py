"""The training loop on one device: loss, weight decay, schedule, gradients, frozen batch
norm, TensorBoard events, checkpoints (paper 4.1; tools/train.py)."""
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from deeplab_tf import config as config_lib
from deeplab_tf.train import checkpointing, loop
from deeplab_tf.train import loss as loss_lib
from deeplab_tf.train import schedule as schedule_lib

import event_files
import small_models

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def smoke(data_dir, *overrides):
    return config_lib.load_experiment("smoke", [f"data.data_dir={data_dir}", *overrides])




def test_cross_entropy_matches_an_independent_computation():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 5, 5, 4)).astype(np.float32)
    labels = rng.integers(0, 4, size=(2, 17, 17)).astype(np.int32)
    labels[0, :3] = 255
    # Independent upsampling: TF1's resize_bilinear with aligned corners.
    up = tf.compat.v1.image.resize_bilinear(logits, (17, 17), align_corners=True).numpy()
    log_softmax = up - np.log(np.exp(up).sum(-1, keepdims=True))
    valid = labels != 255
    expected = -np.mean(np.take_along_axis(
        log_softmax, np.where(valid, labels, 0)[..., None], -1)[..., 0][valid])
    got = loss_lib.cross_entropy(tf.constant(logits), tf.constant(labels)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_label_downsampling_picks_the_aligned_pixels():
    labels = np.arange(2 * 17 * 17).reshape(2, 17, 17).astype(np.int32)
    got = loss_lib.downsample_labels(tf.constant(labels), (5, 5)).numpy()
    np.testing.assert_array_equal(got, labels[:, ::4, ::4])


@pytest.mark.parametrize("size,out", [((100, 100), (7, 7)), ((61, 77), (8, 10)),
                                      ((513, 257), (33, 17)), ((66, 34), (9, 5))])
def test_label_downsampling_rounds_as_the_authors_resize_nearest_neighbor(size, out):
    """Crops that are not output_stride * k + 1 fall between pixels; ties go the way of the
    authors' resize_nearest_neighbor(align_corners=True) (100 -> 7: positions 16.5 and
    82.5, where rounding to even would take other rows and columns)."""
    labels = np.arange(2 * size[0] * size[1]).reshape(2, *size).astype(np.int32)
    expected = tf.compat.v1.image.resize_nearest_neighbor(
        labels[..., None], out, align_corners=True).numpy()[..., 0]
    got = loss_lib.downsample_labels(tf.constant(labels), out).numpy()
    np.testing.assert_array_equal(got, expected)


def test_poly_learning_rate():
    schedule = schedule_lib.poly_schedule(0.007, 30000)
    step = tf.Variable(0, dtype=tf.int64)
    rate = schedule_lib.learning_rate_fn(schedule, step)
    assert float(rate()) == pytest.approx(0.007)
    step.assign(15000)
    assert float(rate()) == pytest.approx(0.007 * 0.5 ** 0.9, rel=1e-6)
    step.assign(30000)
    assert float(rate()) == 0.0


def test_weight_decay_is_slim_l2_on_conv_kernels_only(data_dir, tmp_path):
    trainer = loop.Trainer(smoke(data_dir), str(tmp_path))
    model = trainer.model
    kernels = [w for w in model.weights if w.path.endswith("/kernel")]
    conv_layers = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    assert len(trainer.kernels) == len(conv_layers) == len(kernels)
    expected = 0.5 * 1e-4 * sum(float(np.sum(np.square(k.numpy()))) for k in kernels)
    got = float(loss_lib.weight_decay(trainer.kernels, 1e-4))
    assert got == pytest.approx(expected, rel=1e-5)
    assert not any("gamma" in k.path or "beta" in k.path or "bias" in k.path
                   for k in trainer.kernels)


def test_one_step_gives_every_trainable_weight_a_finite_gradient(data_dir, tmp_path):
    trainer = loop.Trainer(smoke(data_dir), str(tmp_path))
    images, labels = next(trainer.iterator)
    valid = tf.reduce_sum(tf.cast(labels != 255, tf.float32))
    gradients, metrics = trainer.forward_backward(images, labels, valid)
    assert len(gradients) == len(trainer.model.trainable_variables) > 150
    for variable, gradient in zip(trainer.trainable, gradients):
        assert gradient is not None, variable.path
        assert np.all(np.isfinite(gradient.numpy())), variable.path
        assert np.any(gradient.numpy() != 0), variable.path
    assert np.isfinite(float(metrics["cross_entropy"]))
    assert float(metrics["confusion"].numpy().sum()) == float(valid)


def test_frozen_batch_norm_keeps_statistics_and_gamma(data_dir, tmp_path):
    # With freeze_gamma_beta; the default (gamma/beta still learn) is in test_train_fidelity.
    # The mini DeepLab: the trainer freezes every batch norm of whatever model it trains.
    trainer = loop.Trainer(smoke(data_dir, "train.freeze_batch_norm=True",
                                 "train.freeze_gamma_beta=True",
                                 f"model.builder={small_models.MINI_DEEPLAB}"), str(tmp_path))
    bns = [layer for layer in trainer.model.layers
           if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(bns) == 7  # stem, atrous unit; ASPP: 1x1, two atrous, image pooling, projection
    frozen = {v.path for bn in bns for v in bn.weights}
    assert not frozen & {v.path for v in trainer.trainable}
    before = [w.numpy().copy() for bn in bns for w in bn.weights]
    kernel = trainer.model.get_layer("stem").kernel.numpy().copy()
    trainer._step_fn()(trainer.iterator)
    for old, new in zip(before, [w for bn in bns for w in bn.weights]):
        np.testing.assert_array_equal(old, new.numpy(), err_msg=new.path)
    assert np.any(kernel != trainer.model.get_layer("stem").kernel.numpy())


@pytest.fixture(scope="module")
def smoke_run(data_dir, tmp_path_factory):
    """(work dir, config, last metrics) of the smoke run: 4 steps, checkpoints at 2 and 4.
    Read by several tests, never written to: a test that changes a work dir copies it."""
    workdir = str(tmp_path_factory.mktemp("smoke_run") / "run")
    config = smoke(data_dir)
    return workdir, config, loop.train(config, workdir)


def test_training_writes_summaries_checkpoints_and_config(smoke_run):
    workdir, config, metrics = smoke_run
    assert np.isfinite(metrics["loss"])
    found = event_files.read(os.path.join(workdir, "train"))
    for tag in ("loss", "cross_entropy", "weight_decay", "learning_rate", "pixel_accuracy",
                "mean_iou", "step_time", "examples_per_second"):
        assert sorted(found[tag]) == [1, 2, 3, 4], tag
    for step, value in found["learning_rate"].items():
        # Paper 4.1's poly policy by hand: the rate the update of step `step` used.
        assert value == pytest.approx(0.01 * (1 - (step - 1) / 4) ** 0.9, rel=1e-6)
    for step in (1, 2, 3, 4):
        total = found["cross_entropy"][step] + found["weight_decay"][step]
        assert found["loss"][step] == pytest.approx(total, rel=1e-6)
        # (mIoU may exceed pixel accuracy; both are checked against ConfusionMatrix in
        # tests/test_train_summaries.py.)
        assert 0.0 <= found["mean_iou"][step] <= 1.0
        assert 0.0 <= found["pixel_accuracy"][step] <= 1.0
    for tag in ("image", "ground_truth", "prediction"):
        assert sorted(found[tag]) == [2, 4], tag
        # An image summary is [width, height, PNG]: decode and check the crop size.
        png = tf.io.decode_png(found[tag][4][2]).numpy()
        assert png.shape == (33, 33, 3), tag
    manager_dir = checkpointing.checkpoint_dir(workdir)
    assert tf.train.latest_checkpoint(manager_dir).endswith("ckpt-4")
    reader = tf.train.load_checkpoint(manager_dir)
    assert reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == 4
    names = [name for name, _ in tf.train.list_variables(manager_dir)]
    assert any(name.startswith("iterator") for name in names)
    saved = config_lib.from_json(open(os.path.join(workdir, "config.json")).read())
    assert saved == config


def test_a_half_written_checkpoint_is_never_the_latest(data_dir, smoke_run, tmp_path):
    workdir = str(tmp_path / "run")
    shutil.copytree(smoke_run[0], workdir)
    directory = checkpointing.checkpoint_dir(workdir)
    # What a save killed mid-way leaves: temp shards and a data file without the index.
    os.makedirs(os.path.join(directory, "ckpt-5_temp"))
    open(os.path.join(directory, "ckpt-5_temp", "part-00000-of-00001.data-00000-of-00001"),
         "wb").write(b"partial")
    open(os.path.join(directory, "ckpt-5.data-00000-of-00001"), "wb").write(b"partial")
    assert checkpointing.latest_checkpoint(workdir).endswith("ckpt-4")
    trainer = loop.Trainer(smoke(data_dir, "train.steps=5"), workdir)
    assert trainer.restore() == 4


def test_stage_two_starts_from_stage_one_weights_at_another_output_stride(data_dir,
                                                                            smoke_run,
                                                                            tmp_path):
    stage1 = smoke_run[0]
    trainer = loop.Trainer(smoke(data_dir, "model.output_stride=8",
                                 "train.freeze_batch_norm=True",
                                 f"train.init_checkpoint={stage1}"), str(tmp_path / "stage2"))
    assert trainer.restore() == 0
    # Independently: the stage 1 model at its own output stride, restored directly.
    stage1_model = config_lib.build_model(smoke(data_dir).model)
    tf.train.Checkpoint(model=stage1_model).restore(
        checkpointing.latest_checkpoint(stage1)).expect_partial()
    weighted = [layer for layer in stage1_model.layers if layer.weights]
    assert len(weighted) > 100
    for layer in weighted:
        for saved, loaded in zip(layer.get_weights(),
                                 trainer.model.get_layer(layer.name).get_weights()):
            np.testing.assert_array_equal(saved, loaded, err_msg=layer.name)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(data_dir, tmp_path):
    """The trainer's guard, with the mini DeepLab (any model diverges at this rate)."""
    workdir = str(tmp_path / "run")
    config = smoke(data_dir, f"model.builder={small_models.MINI_DEEPLAB}",
                   "train.base_learning_rate=1e30", "train.steps=6", "train.checkpoint_every=1")
    with pytest.raises(loop.NonFiniteLossError, match="non-finite") as error:
        loop.train(config, workdir)
    latest = checkpointing.latest_checkpoint(workdir)
    assert latest is not None and str(latest) in str(error.value)
    failed_at = int(str(error.value).split(" at step ")[1].split()[0])
    assert checkpointing.checkpoint_step(latest) == failed_at - 1


def test_flags_flagfile_and_unknown_override(tmp_path):
    flagfile = tmp_path / "run.flags"
    flagfile.write_text(f"--experiment=smoke\n--workdir={tmp_path / 'w'}\n"
                        "--set=train.no_such_field=1\n")
    result = subprocess.run([sys.executable, "-m", "tools.train", f"--flagfile={flagfile}"],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "unknown field 'no_such_field'" in result.stderr
    assert not (tmp_path / "w").exists()


def test_a_set_path_starting_with_a_tilde_is_the_users_home():
    """The shell does not expand `--set=data.data_dir=~/tfds` (a tilde after "=" is
    expanded in assignments only); the config does."""
    config = config_lib.load_experiment("smoke", ["data.data_dir=~/tfds",
                                                  "train.init_checkpoint=~/ckpt/r50.ckpt"])
    home = os.path.expanduser("~")
    assert config.data.data_dir == os.path.join(home, "tfds")
    assert config.train.init_checkpoint == os.path.join(home, "ckpt", "r50.ckpt")
    assert config_lib.load_experiment("smoke", ["data.dataset=a~b"]).data.dataset == "a~b"
