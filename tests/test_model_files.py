"""Files one process writes and another reads (issue 28, 4): written atomically, and a
model file (.tflite, .onnx) whose class table disagrees with its class count is refused.

A failed rename (what a kill between the write and the rename leaves) must leave the
previous file whole: before atomic writes each writer truncated the target in place. The
model files are of a 4-class toy network with DeepLabv3's attributes (converted in
seconds; the conversion path is the one of the real model, tests/test_export_deploy.py).
"""
import json
import os

import keras
import numpy as np
import pytest

from deeplab_tf import atomic, classes
from deeplab_tf import config as config_lib
from deeplab_tf.export import onnx, runner, tflite
from deeplab_tf.train import run_records

NUM_CLASSES = 4
SIZE = (17, 17)


def toy_deeplab():
    """A conv net with the attributes export reads from a DeepLabv3 (its output stride)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same")(inputs)
    model = keras.Model(inputs, keras.layers.Conv2D(NUM_CLASSES, 1, name="logits")(x))
    model.depth, model.output_stride, model.multi_grid, model.extra_blocks = 50, 16, (1, 2, 4), 0
    return model


def table(count=NUM_CLASSES, prefix="class"):
    return classes.ClassTable([f"{prefix}{i}" for i in range(count)],
                              [(i * 10, 255 - i * 10, 7) for i in range(count)])


@pytest.fixture(scope="module")
def model():
    return toy_deeplab()


def convert(model, kind, path, class_table):
    if kind == "tflite":
        return tflite.convert_tflite(model, str(path), SIZE, class_table=class_table)
    return onnx.convert_onnx(model, str(path), SIZE, class_table=class_table)


class RenameFails:
    """os.replace as the atomic helper calls it, failing for one target name."""

    def __init__(self, monkeypatch, name):
        self.name, self.real = name, os.replace
        monkeypatch.setattr(atomic.os, "replace", self)

    def __call__(self, source, target):
        if os.path.basename(target) == self.name:
            raise OSError("killed before the rename")
        self.real(source, target)


def assert_intact(path, before):
    assert open(path, "rb").read() == before
    leftovers = [n for n in os.listdir(os.path.dirname(path)) if n.endswith(".tmp")]
    assert leftovers == [], leftovers


@pytest.mark.parametrize("kind", ["tflite", "onnx"])
def test_model_files_are_written_atomically(model, tmp_path, monkeypatch, kind):
    path = tmp_path / f"model.{kind}"
    convert(model, kind, path, table())
    before = path.read_bytes()
    assert runner.load(path).labels(np.zeros((5, 6, 3), np.uint8)).shape == (5, 6)
    RenameFails(monkeypatch, path.name)
    with pytest.raises(OSError, match="killed"):
        convert(model, kind, path, table(prefix="other"))
    assert_intact(str(path), before)


def test_records_of_a_run_are_written_atomically(tmp_path, monkeypatch):
    config = config_lib.ExperimentConfig(name="first")
    run_records.write(str(tmp_path), config, table())
    before = {n: (tmp_path / n).read_bytes() for n in ("config.json", "classes.json")}
    for name in before:
        RenameFails(monkeypatch, name)
        with pytest.raises(OSError, match="killed"):
            run_records.write(str(tmp_path), config_lib.ExperimentConfig(name="second"),
                              table(prefix="other"))
        assert_intact(str(tmp_path / name), before[name])
        monkeypatch.undo()
    with pytest.raises(OSError, match="killed"):
        RenameFails(monkeypatch, "classes.json")
        classes.write(table(prefix="other"), tmp_path)
    assert_intact(str(tmp_path / "classes.json"), before["classes.json"])


def test_the_atomic_helper_gives_the_umask_mode_and_replaces_whole(tmp_path):
    path = tmp_path / "a.json"
    previous = os.umask(0o022)
    try:
        atomic.write_json(path, {"a": 1})
    finally:
        os.umask(previous)
    assert json.loads(path.read_text()) == {"a": 1}
    assert (os.stat(path).st_mode & 0o777) == 0o644  # not mkstemp's 0o600
    atomic.write_bytes(path, b"xy")
    assert path.read_bytes() == b"xy" and os.listdir(tmp_path) == ["a.json"]


@pytest.mark.parametrize("kind", ["tflite", "onnx"])
def test_the_class_count_is_read_from_the_graph(model, tmp_path, kind):
    path = convert(model, kind, tmp_path / f"model.{kind}", None)
    deployed = runner.load(path)
    assert deployed.num_classes == NUM_CLASSES and deployed.class_table is None


@pytest.mark.parametrize("kind", ["tflite", "onnx"])
def test_a_table_inside_the_file_of_another_class_count_is_refused(model, tmp_path, kind):
    path = convert(model, kind, tmp_path / f"model.{kind}", table(NUM_CLASSES + 1))
    with pytest.raises(ValueError, match=rf"{path}: its model labels {NUM_CLASSES} classes "
                                         rf"but the class table inside {path} has 5"):
        runner.load(path)


@pytest.mark.parametrize("kind", ["tflite", "onnx"])
def test_a_classes_json_beside_the_file_of_another_model_is_refused(model, tmp_path, kind):
    path = convert(model, kind, tmp_path / f"model.{kind}", None)
    classes.write(table(21), tmp_path)  # e.g. VOC's 21 classes beside a 4-class model
    with pytest.raises(ValueError, match=rf"its model labels {NUM_CLASSES} classes but "
                                         rf"{tmp_path}/classes.json has 21"):
        runner.load(path)
    path = convert(model, kind, tmp_path / f"model.{kind}", table())
    classes.write(table(prefix="other"), tmp_path)  # the right count, other names
    with pytest.raises(ValueError, match=r"classes.json names other classes"):
        runner.load(path)
    (tmp_path / "classes.json").write_text("")
    with pytest.raises(ValueError, match=rf"{tmp_path}/classes.json: not a class table"):
        runner.load(path)
    classes.write(table(), tmp_path)
    assert runner.load(path).class_table == table()
