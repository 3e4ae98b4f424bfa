"""Starting a run from a trained run of other classes, and the class table typed once.

A 21-class mini DeepLab run (2 steps on the synthetic set) starts a 3-class model: refused
without train.initialize_last_layer=false, in one line that names the option; with it the
head (or only the logits) keeps its fresh initialisation and every other layer equals the
trained run's. The config takes its class count from the data set's table, refuses one
that disagrees naming both, and resolves class names in bootstrapping and loss weights.
"""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from deeplab_tf import classes
from deeplab_tf import config as config_lib
from deeplab_tf.train import checkpointing, loop

import small_models


def mini(data_dir, *overrides):
    return config_lib.load_experiment("smoke", [
        f"data.data_dir={data_dir}", f"model.builder={small_models.MINI_DEEPLAB}",
        "train.steps=2", *overrides])


@pytest.fixture(scope="module")
def voc_run(data_dir, tmp_path_factory):
    """(work dir, trained 21-class model) of a 2-step mini DeepLab run."""
    workdir = str(tmp_path_factory.mktemp("voc_run") / "run")
    trainer = loop.Trainer(mini(data_dir), workdir)
    trainer.run()
    return workdir, trainer.model


def three_class_model(seed=7):
    tf.keras.utils.set_random_seed(seed)
    return config_lib.build_model(config_lib.ModelConfig(
        builder=small_models.MINI_DEEPLAB, num_classes=3, batch_norm_decay=0.9))


def weights_of(model):
    return {layer.name: [w.copy() for w in layer.get_weights()]
            for layer in model.layers if layer.weights}


def test_the_run_writes_its_class_table(voc_run):
    workdir, _ = voc_run
    assert classes.read(workdir) == classes.voc()
    saved = json.load(open(os.path.join(workdir, "config.json")))
    assert saved["model"]["num_classes"] == 21 == saved["data"]["num_classes"]


def test_other_classes_are_refused_without_the_option(voc_run, tmp_path):
    workdir, _ = voc_run
    train = config_lib.TrainConfig()  # initialize_last_layer=True, the default
    with pytest.raises(ValueError) as error:
        checkpointing.load_init_weights(three_class_model(), workdir, train)
    message = str(error.value)
    assert "\n" not in message and "21 classes" in message and "has 3" in message
    assert "train.initialize_last_layer=false" in message


@pytest.mark.parametrize("logits_only, fresh", [
    (False, {"logits", "image_pooling", "image_pooling_bn", "aspp_conv1x1", "aspp_conv1x1_bn",
             "aspp_atrous1", "aspp_atrous1_bn", "aspp_atrous2", "aspp_atrous2_bn",
             "aspp_projection", "aspp_projection_bn"}),
    (True, {"logits"})])
def test_a_fresh_head_starts_from_its_initialisation_and_the_rest_loads(
        voc_run, logits_only, fresh, caplog):
    workdir, trained = voc_run
    model = three_class_model()
    initial = weights_of(model)
    assert fresh <= set(initial)  # the names above are the mini DeepLab's
    train = config_lib.TrainConfig(initialize_last_layer=False,
                                   last_layers_contain_logits_only=logits_only)
    # A checkpoint prefix of the run, not only its work dir.
    prefix = checkpointing.latest_checkpoint(workdir)
    with caplog.at_level("INFO"):
        _, started_fresh = checkpointing.load_init_weights(model, prefix, train)
    assert set(started_fresh) == fresh
    assert any("started fresh (train.initialize_last_layer=false): " in r.getMessage()
               and "logits" in r.getMessage() for r in caplog.records)
    for name, values in weights_of(model).items():
        expected = initial[name] if name in fresh else trained.get_layer(name).get_weights()
        for got, want in zip(values, expected):
            np.testing.assert_array_equal(got, want, err_msg=name)
    assert model.get_layer("logits").weights[0].shape[-1] == 3


def test_a_run_of_another_architecture_is_named(voc_run):
    workdir, _ = voc_run
    model_config = config_lib.ModelConfig(builder=small_models.TINY, num_classes=21,
                                          depth=50)
    with pytest.raises(ValueError, match=r"was trained with model.builder='tests.small_"
                                         r"models:mini_deeplab'; this run differs"):
        checkpointing.load_init_weights(config_lib.build_model(model_config), workdir,
                                        config_lib.TrainConfig(), model_config)


def three_classes():
    return classes.ClassTable(("background", "bicycle", "road"),
                              ((0, 0, 0), (250, 50, 83), (128, 64, 128)))


def test_the_class_count_comes_from_the_data_set_or_is_refused():
    config = config_lib.load_experiment("custom")
    assert config.model.num_classes is None and config.data.num_classes is None
    config_lib.apply_class_table(config, three_classes(), "data set custom_seg/mine")
    assert config.model.num_classes == 3 == config.data.num_classes

    config = config_lib.load_experiment("custom", ["model.num_classes=21"])
    with pytest.raises(ValueError) as error:
        config_lib.apply_class_table(config, three_classes(), "data set custom_seg/mine in /d")
    assert str(error.value) == (
        "model.num_classes=21 (experiment custom) but data set custom_seg/mine in /d has 3 "
        "classes (background, bicycle, road): drop the setting or --set model.num_classes=3")


def test_bootstrapping_and_loss_weights_take_class_names():
    config = config_lib.load_experiment("custom", [
        "data.bootstrap_classes=('bicycle', 2)", "data.bootstrap_factor=2",
        "train.class_loss_weights={'road': 0.5, 'bicycle': 3}"])
    config_lib.apply_class_table(config, three_classes(), "data set custom_seg/mine")
    assert config.data.bootstrap_classes == (1, 2)
    assert config.train.class_loss_weights == (1.0, 3.0, 0.5)
    # Through config.json and back: the ids.
    again = config_lib.from_json(config_lib.to_json(config))
    assert again.train.class_loss_weights == (1.0, 3.0, 0.5)

    for override, message in (
            ("data.bootstrap_classes=('bike',)",
             "data.bootstrap_classes: unknown class 'bike'; the classes are background, "
             "bicycle, road"),
            ("train.class_loss_weights={'car': 2.0}",
             "train.class_loss_weights: unknown class 'car'; the classes are background"),
            ("data.bootstrap_classes=(3,)",
             r"data.bootstrap_classes: class id 3 is not one of 0..2")):
        config = config_lib.load_experiment("custom", [override])
        with pytest.raises(ValueError, match=message):
            config_lib.apply_class_table(config, three_classes(), "data set custom_seg/mine")
