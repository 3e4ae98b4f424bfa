"""The recipe at the tools (issue 31): tools.train prints it, writes WORKDIR/recipe.json
and .txt and a TensorBoard text summary; tools.evaluate prints the paper's figure of the
experiment's row for the evaluated settings beside the mIoU, with the departures.

Both run on tiny runs of the synthetic set: the tiny model for training (the recipe does
not depend on the model's size), the smoke-sized DeepLabv3 for evaluation (evaluation
runs DeepLabv3 models only).
"""
import json
import os
import subprocess
import sys

import tensorflow as tf

from deeplab_tf import config as config_lib
from deeplab_tf import recipe

import event_files
import small_models

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tool(*args):
    process = subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True,
                             text=True, timeout=600)
    assert process.returncode == 0, process.stderr[-3000:]
    return process.stdout


def test_training_prints_and_keeps_the_recipe(data_dir, tmp_path):
    workdir = tmp_path / "run"
    printed = tool("tools.train", "--experiment=smoke", f"--workdir={workdir}",
                   f"--set=data.data_dir={data_dir}", f"--set=model.builder={small_models.TINY}",
                   "--set=train.steps=1", "--set=train.checkpoint_every=1")
    config = config_lib.from_json((workdir / "config.json").read_text())
    rep = recipe.report(config)
    assert recipe.format_table(rep) in printed and "from scratch" in printed
    assert json.loads((workdir / "recipe.json").read_text()) == json.loads(
        json.dumps(rep.to_dict()))
    assert (workdir / "recipe.txt").read_text() == recipe.format_table(rep) + "\n"
    assert not [n for n in os.listdir(workdir) if n.startswith(".recipe.")]  # no temp left
    texts = event_files.read(str(workdir / "train"))["recipe"]
    assert list(texts) == [0]  # once, at the step the run started from
    markdown = texts[0]
    assert markdown == recipe.markdown(rep) and "| crop size | 513 (4.1) | 33 |" in markdown
    from deeplab_tf import plots  # the demo's curves read the same event files
    assert "recipe" not in plots.read_scalars(str(workdir / "train"))


def test_evaluate_prints_the_papers_figure_for_the_evaluated_settings(data_dir, tmp_path):
    # voc_stage1 (Table 6) cut to the smoke model's sizes: its paper row stays.
    config = config_lib.load_experiment("voc_stage1", [
        "data.dataset=synthetic_voc", f"data.data_dir={data_dir}",
        "model.depth=50", "model.multi_grid=(1,1,1)", "model.aspp_rates=(1,2,3)",
        "data.crop_size=33", "train.batch_size=2", "train.init_checkpoint=none",
        "eval.crop_size=(65,65)"])
    tf.keras.utils.set_random_seed(0)
    model = config_lib.build_model(config.model)
    work = tmp_path / "work"
    work.mkdir()
    (work / "config.json").write_text(config_lib.to_json(config))
    checkpoint = tf.train.Checkpoint(model=model, step=tf.Variable(3, dtype=tf.int64))
    tf.train.CheckpointManager(checkpoint, str(work / "checkpoints"), 1).save(3)

    # The row is matched by the settings evaluated with (the flag's OS 8, not the config's
    # 16); one scale keeps it to one trace of the model (multi-scale: tests/test_recipe.py).
    printed = tool("tools.evaluate", f"--workdir={work}", "--eval_output_stride=8")
    miou = 100 * json.loads((work / "eval" / "results.json").read_text())["miou"]
    line = next(l for l in printed.splitlines() if l.startswith("Table 6"))
    assert line.startswith(f"Table 6, OS 8: paper 78.51 (77.21 + 1.3, text), this run "
                           f"{miou:.2f}, {miou - 78.51:+.2f}; departures: ")
    for departure in ("data synthetic_voc", "start from scratch", "ResNet 50",
                      "crop 33", "batch 2", "eval pad 65x65"):
        assert departure in line
    assert "recipe of voc_stage1 against the paper's VOC stage 1 protocol" in printed
