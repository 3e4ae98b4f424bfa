"""tools.export: a work dir's checkpoint to a SavedModel; bad checkpoints refused.

The checkpoints hold a model with a known answer (tests/known_answer.py: class k is the
nearest of num_classes colours), so the served labels are checked against it too.
(The TFLite conversion itself is tested in test_export_tflite.py.)
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from deeplab_tf import config as config_lib
from deeplab_tf.evaluation import inference

import known_answer


def make_workdir(path, num_classes):
    config = config_lib.ExperimentConfig(name="test")
    config.model.depth = 50
    config.model.num_classes = num_classes
    config.data.num_classes = num_classes
    config.eval.output_stride = 16
    config.eval.crop_size = (49, 49)
    model = known_answer.set_nearest_colour_weights(
        config_lib.build_model(config.model), known_answer.distinct_colours(num_classes))
    os.makedirs(path)
    with open(os.path.join(path, "config.json"), "w") as f:
        f.write(config_lib.to_json(config))
    tf.train.CheckpointManager(tf.train.Checkpoint(model=model),
                               os.path.join(path, "checkpoints"), 1).save()
    return model


def run_tool(*args):
    return subprocess.run([sys.executable, "-m", "tools.export", *args],
                          capture_output=True, text=True, timeout=600)


def test_checkpoint_of_another_class_count_is_a_clear_error(tmp_path):
    make_workdir(str(tmp_path / "voc"), 21)
    make_workdir(str(tmp_path / "other"), 5)
    process = run_tool(f"--workdir={tmp_path / 'voc'}",
                       f"--checkpoint={tmp_path / 'other' / 'checkpoints'}",
                       f"--export_dir={tmp_path / 'export'}")
    assert process.returncode != 0
    assert "holds a model with 5 classes, but the config asks for 21" in process.stderr
    assert not os.path.exists(tmp_path / "export")
    process = run_tool(f"--workdir={tmp_path / 'nowhere'}")
    assert process.returncode != 0 and "config.json not found" in process.stderr


@pytest.mark.slow
def test_export_serves_the_checkpoint(tmp_path):
    model = make_workdir(str(tmp_path / "work"), 6)
    export_dir = tmp_path / "work" / "export"
    process = run_tool(f"--workdir={tmp_path / 'work'}", "--scales=1.0", "--noflip")
    assert process.returncode == 0, process.stderr[-3000:]
    metadata = json.loads((export_dir / "deeplab_export.json").read_text())
    assert metadata["scales"] == [1.0] and metadata["output_stride"] == 16
    assert metadata["num_classes"] == 6 and metadata["probabilities"] is False
    assert metadata["crop_size"] == [49, 49]  # the size every image is padded to

    mosaic, classes = known_answer.mosaic([[0, 1, 2], [3, 4, 5]],
                                          known_answer.distinct_colours(6), 64)
    image = np.stack([mosaic, np.random.default_rng(0).integers(0, 256, mosaic.shape,
                                                                 dtype=np.uint8)])
    expected = np.asarray(inference.predict_labels(model, image.astype(np.float32),
                                                   crop_size=(49, 49)))
    loaded = tf.saved_model.load(str(export_dir))
    served = loaded.signatures["serve_images"](images=tf.constant(image))
    assert set(served) == {"labels"}
    np.testing.assert_array_equal(served["labels"], expected)
    safe = known_answer.safe_mask(classes)
    np.testing.assert_array_equal(served["labels"][0].numpy()[safe], classes[safe])
    assert sorted(np.unique(served["labels"][0])) == list(range(6))
