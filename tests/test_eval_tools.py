"""tools.evaluate end to end on a generated synthetic VOC-layout set built with TFDS."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import deeplab_tf.data
from deeplab_tf import config as config_lib
from deeplab_tf import evaluation, visualization
from deeplab_tf import synthetic
from deeplab_tf.evaluation import evaluator, inference


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval_tool")
    synthetic.generate(str(root / "src"), seed=0, num_train=1, num_val=3, min_size=30,
                       max_size=50)
    deeplab_tf.data.build("synthetic_voc", str(root / "src"), str(root / "tfds"))
    config = config_lib.ExperimentConfig(name="test")
    config.model.depth = 50
    config.data.data_dir = str(root / "tfds")
    config.eval.output_stride = 16
    config.eval.crop_size = (65, 65)  # the 30-50 px images are padded to 65x65
    config.train.steps = 7
    tf.keras.utils.set_random_seed(0)
    model = config_lib.build_model(config.model)
    work = root / "work"
    work.mkdir()
    (work / "config.json").write_text(config_lib.to_json(config))
    checkpoint = tf.train.Checkpoint(model=model, step=tf.Variable(7, dtype=tf.int64))
    tf.train.CheckpointManager(checkpoint, str(work / "checkpoints"), 1).save(7)
    return str(work), config, model


def run_tool(*args):
    return subprocess.run([sys.executable, "-m", "tools.evaluate", *args],
                          capture_output=True, text=True, timeout=600)


def test_watch_evaluates_the_final_checkpoint_and_writes_results(workdir):
    work, config, model = workdir
    # --watch returns once the checkpoint of the last training step (7) is evaluated.
    process = run_tool(f"--workdir={work}", "--watch", "--watch_timeout=30",
                       "--eval_scales=1.0", "--noadd_flipped_images")
    assert process.returncode == 0, process.stderr[-3000:]
    assert "mIoU" in process.stdout and "aeroplane" in process.stdout
    result = json.loads(open(os.path.join(work, "eval", "results.json")).read())
    assert result["step"] == 7 and result["num_images"] == 3
    assert result["settings"]["output_stride"] == 16 and result["settings"]["flip"] is False
    assert tuple(result["per_class_iou"]) == visualization.VOC_CLASSES
    assert os.path.exists(os.path.join(work, "eval", "results_7.txt"))

    # The same matrix in this process, from the data helper's eval_input.
    dataset = deeplab_tf.data.eval_input(config.data, "val", 16, (65, 65))
    confusion = evaluator.evaluate(inference.make_predict_fn(model, crop_size=(65, 65)),
                                   evaluator.examples_from_eval_input(dataset), 21,
                                   verbose=False)
    np.testing.assert_array_equal(result["confusion_matrix"], confusion.matrix)
    labelled = sum(int(np.sum(label != 255)) for _, label in
                   evaluator.examples_from_eval_input(dataset))
    assert result["num_pixels"] == labelled


def test_checkpoint_with_another_class_count_is_refused(workdir):
    work, _, _ = workdir
    process = run_tool(f"--workdir={work}", "--set=model.num_classes=19")
    assert process.returncode != 0
    assert "holds a model with 21 classes, but the config asks for 19" in process.stderr
    # tools.evaluate, export and predict resolve --checkpoint with this function.
    with pytest.raises(FileNotFoundError, match=r"ckpt-99 not found \(.*ckpt-99\.index\)"):
        evaluation.resolve_checkpoint(work, f"{work}/checkpoints/ckpt-99")
    assert evaluation.resolve_checkpoint(work, f"{work}/checkpoints").endswith("ckpt-7")
