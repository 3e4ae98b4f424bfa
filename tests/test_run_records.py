"""Restarting a run directory (issue 28, 4): a restart that changes the model, the data or
the class table is refused and leaves the run's records as they were; a benign change is
allowed and logged; --allow_config_change accepts a change and keeps the old records.

The tiny model of tests/small_models.py: what is checked is the trainer's start, the same
for any model.
"""
import json
import logging
import os
import subprocess
import sys

import pytest

from deeplab_tf import classes
from deeplab_tf import config as config_lib
from deeplab_tf.train import loop, run_records

import small_models

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE = (f"model.builder={small_models.TINY}", "train.batch_size=2", "train.steps=2",
        "train.checkpoint_every=2", "train.init_checkpoint=none")


def smoke(data_dir, *overrides):
    return config_lib.load_experiment("smoke", [f"data.data_dir={data_dir}", *BASE,
                                                *overrides])


@pytest.fixture
def run(data_dir, tmp_path):
    """A work dir with a checkpoint at step 2; returns (work dir, its records' bytes)."""
    workdir = str(tmp_path / "run")
    loop.train(smoke(data_dir), workdir)
    return workdir, records(workdir)


def records(workdir):
    return {name: open(os.path.join(workdir, name), "rb").read()
            for name in sorted(os.listdir(workdir)) if name.endswith(".json")}


@pytest.mark.parametrize("override, field", [
    ("model.depth=101", "model.depth"),           # the issue's --set=model.depth=101
    ("data.crop_size=49", "data.crop_size"),      # the data, same class count
    ("data.train_split=val", "data.train_split"),
    ("data.data_dir=/elsewhere/tfds", "data.data_dir"),  # other data, the same classes
    ("train.base_learning_rate=0.5", "train.base_learning_rate"),
])
def test_a_restart_that_changes_the_training_is_refused_and_writes_nothing(
        data_dir, run, override, field):
    workdir, before = run
    with pytest.raises(run_records.ConfigChangeError) as error:
        loop.Trainer(smoke(data_dir, override), workdir)
    message = str(error.value)
    assert f"{field} differ" in message or f"{field}," in message, message
    assert f"{field}: recorded" in message and "--allow_config_change" in message
    assert "ckpt-2" in message
    assert records(workdir) == before  # config.json and classes.json untouched


def test_other_classes_with_the_same_count_are_refused(data_dir, run):
    """The recorded table names other classes (the run trained on other data): the data
    set's table differs in its names only, and the restart is refused naming them."""
    workdir, _ = run
    recorded = classes.read(workdir)
    other = classes.ClassTable([f"part{i}" for i in range(recorded.num_classes)],
                               recorded.colors)
    classes.write(other, workdir)
    before = records(workdir)
    with pytest.raises(run_records.ConfigChangeError, match=r"classes.json names: recorded "
                                                            r"\['part0'"):
        loop.Trainer(smoke(data_dir), workdir)
    assert records(workdir) == before


def test_a_benign_change_is_allowed_logged_and_recorded(data_dir, run, caplog):
    workdir, _ = run
    with caplog.at_level(logging.INFO):
        trainer = loop.Trainer(smoke(data_dir, "train.steps=3", "train.summary_every=5",
                                     "train.log_every=1"), workdir)
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "train.steps: recorded 2, now 3" in logged
    assert "train.summary_every: recorded 1, now 5" in logged
    assert trainer.run()  # resumes at 2 and trains step 3
    assert int(trainer.step.numpy()) == 3
    recorded = json.loads(open(os.path.join(workdir, "config.json")).read())
    assert recorded["train"]["steps"] == 3
    assert not [n for n in os.listdir(workdir) if ".step_" in n]


def test_the_flag_accepts_a_change_and_keeps_the_old_records(data_dir, run, caplog):
    workdir, before = run
    with caplog.at_level(logging.WARNING):
        loop.Trainer(smoke(data_dir, "train.base_learning_rate=0.5"), workdir,
                     allow_config_change=True)
    assert "accepted by --allow_config_change" in caplog.text
    after = records(workdir)
    assert after["config.step_2.json"] == before["config.json"]
    assert after["classes.step_2.json"] == before["classes.json"]
    assert json.loads(after["config.json"])["train"]["base_learning_rate"] == 0.5


@pytest.mark.parametrize("name", ["config.json", "classes.json"])
def test_an_unreadable_record_is_refused_naming_it(data_dir, run, name):
    workdir, _ = run
    path = os.path.join(workdir, name)
    open(path, "w").close()  # what a kill during a non-atomic write left
    with pytest.raises(run_records.ConfigChangeError, match=rf"{path} cannot be read"):
        loop.Trainer(smoke(data_dir), workdir)
    assert os.path.getsize(path) == 0


def test_without_a_checkpoint_the_records_are_written(data_dir, tmp_path):
    """Nothing to resume (a first start, or one killed before its first save)."""
    workdir = tmp_path / "fresh"
    workdir.mkdir()
    (workdir / "config.json").write_text("{}")
    loop.Trainer(smoke(data_dir, "model.depth=101"), str(workdir))
    assert json.loads((workdir / "config.json").read_text())["model"]["depth"] == 101


def test_benign_fields_are_config_fields_that_change_no_weights_data_or_classes():
    fields = set(run_records.flatten(json.loads(config_lib.to_json(
        config_lib.ExperimentConfig()))))
    assert run_records.BENIGN <= fields
    assert not any(f.startswith(("model.", "data.", "eval.")) for f in run_records.BENIGN)


def test_tools_train_refuses_the_issues_restart_and_keeps_the_records(data_dir, run):
    """The issue's command: --set=model.depth=101 on a run of another depth. One line
    naming the field and the flag, exit status 1, config.json as it was."""
    workdir, before = run
    result = subprocess.run(
        [sys.executable, "-m", "tools.train", "--experiment=smoke", f"--workdir={workdir}",
         *[f"--set={o}" for o in (f"data.data_dir={data_dir}", *BASE)],
         "--set=model.depth=101"], cwd=REPO, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, PYTHONPATH=REPO))
    assert result.returncode == 1, result.stderr[-3000:]
    errors = [l for l in result.stderr.splitlines() if l.startswith("tools.train: error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    assert "model.depth: recorded 50, now 101" in errors[0]
    assert "--allow_config_change" in errors[0] and "Traceback" not in result.stderr
    assert records(workdir) == before
