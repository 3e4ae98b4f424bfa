"""The evaluator beside training evaluates every checkpoint, in order, when it is slower than
the trainer, and says which ones the trainer deleted before it got there (issue 22, item 6).

No timing: the checkpoints are written before the evaluator looks, and a fake evaluation
writes the trainer's next checkpoints while it "runs", as a slow evaluation would see
them appear.
"""
import logging
import os
import re

import numpy as np
import pytest
import tensorflow as tf

from deeplab_tf import atomic
from deeplab_tf import config as config_lib
from deeplab_tf.evaluation import continuous, evaluator, metrics


class Trainer:
    """Writes ckpt-N holding step N, as the trainer's CheckpointManager does."""

    def __init__(self, workdir, max_to_keep):
        self.step = tf.Variable(0, dtype=tf.int64)
        self.manager = tf.train.CheckpointManager(
            tf.train.Checkpoint(step=self.step), os.path.join(workdir, "checkpoints"),
            max_to_keep=max_to_keep)

    def save(self, step):
        self.step.assign(step)
        self.manager.save(checkpoint_number=step)


def config(steps, checkpoint_every, max_checkpoints):
    return config_lib.load_experiment("smoke", [
        f"train.steps={steps}", f"train.checkpoint_every={checkpoint_every}",
        f"train.max_checkpoints={max_checkpoints}"])


def slow_evaluation(trainer, saves_per_evaluation, last_step, every):
    """evaluate_fn that lets the trainer save `saves_per_evaluation` checkpoints meanwhile."""
    def evaluate(checkpoint):
        for _ in range(saves_per_evaluation):
            step = int(trainer.step.numpy()) + every
            if step <= last_step:
                trainer.save(step)
        return evaluator.checkpoint_step(checkpoint)
    return evaluate


def test_a_slow_evaluator_evaluates_every_checkpoint_in_order(tmp_path):
    """Three checkpoints are on disk when the evaluator starts, and two more appear during
    each evaluation: the evaluator falls further behind and still evaluates each one (the
    newest-only iterator took 30, then 50, then 70...)."""
    trainer = Trainer(str(tmp_path), max_to_keep=100)
    for step in (10, 20, 30):
        trainer.save(step)
    evaluated = continuous.watch(config(100, 10, 100), str(tmp_path),
                                 slow_evaluation(trainer, 2, 100, 10), timeout=0,
                                 min_interval_secs=0)
    assert evaluated == list(range(10, 101, 10))


def test_checkpoints_deleted_before_evaluation_are_named_in_the_log(tmp_path, caplog):
    """max_to_keep 2 and two saves per evaluation: the trainer deletes checkpoints the
    evaluator has not reached; it evaluates the rest in order and names the lost steps."""
    trainer = Trainer(str(tmp_path), max_to_keep=2)
    for step in (10, 20, 30):  # 10 is deleted before the evaluator starts
        trainer.save(step)
    with caplog.at_level(logging.WARNING):
        evaluated = continuous.watch(config(90, 10, 2), str(tmp_path),
                                     slow_evaluation(trainer, 3, 90, 10), timeout=0,
                                     min_interval_secs=0)
    lost = sorted(set(range(10, 91, 10)) - set(evaluated))
    assert evaluated == sorted(evaluated) and evaluated[-1] == 90 and lost
    messages = [r.getMessage() for r in caplog.records if "not evaluated" in r.getMessage()]
    named = [int(step) for message in messages
             for step in re.match(r"not evaluated: the checkpoints of steps ([\d, ]+), "
                                  r"deleted by the trainer", message).group(1).split(", ")]
    assert sorted(named) == lost, messages
    assert all("(train.max_checkpoints=2)" in message for message in messages)


def test_skip_evaluated_resumes_after_the_results_on_disk(tmp_path):
    """A restarted cluster evaluator: steps with results_<step>.json are not evaluated
    again, and are not reported as lost."""
    trainer = Trainer(str(tmp_path), max_to_keep=100)
    for step in (5, 10, 15):
        trainer.save(step)
    evaluator.write_results(str(tmp_path), RESULT, 5)
    evaluated = continuous.watch(config(15, 5, 100), str(tmp_path),
                                 slow_evaluation(trainer, 0, 15, 5), timeout=0,
                                 min_interval_secs=0, skip_evaluated=True)
    assert evaluated == [10, 15]


def result():
    """A real result dict (ConfusionMatrix.result) of two images' worth of pixels."""
    confusion = metrics.ConfusionMatrix(2, 255, ["a", "b"])
    confusion.update(np.array([[0, 1]]), np.array([[0, 0]]))
    return confusion.result()


RESULT = result()


@pytest.mark.parametrize("damage", ["", "{\"miou\": 0.5, \"st", "{}", '{"step": 10, "miou": 1}'])
def test_an_empty_or_unreadable_result_counts_as_not_evaluated(tmp_path, damage, caplog):
    """What a kill during a non-atomic write left (empty, truncated), or a record of
    another step: a restarted evaluator evaluates the step again and says why."""
    trainer = Trainer(str(tmp_path), max_to_keep=100)
    for step in (5, 10):
        trainer.save(step)
    evaluator.write_results(str(tmp_path), RESULT, 10)
    (tmp_path / evaluator.EVAL_DIR / "results_5.json").write_text(damage)
    with caplog.at_level(logging.WARNING):
        evaluated = continuous.watch(config(10, 5, 100), str(tmp_path),
                                     slow_evaluation(trainer, 0, 10, 5), timeout=0,
                                     min_interval_secs=0, skip_evaluated=True)
    assert evaluated == [5]
    assert "results_5.json" in caplog.text and "evaluated again" in caplog.text


def test_results_are_written_atomically_the_step_record_last(tmp_path, monkeypatch):
    """The rename of results_<step>.json fails (a kill at that moment): the earlier
    record stays whole, and the step's marker is the last file written."""
    evaluator.write_results(str(tmp_path), RESULT, 5)
    before = (tmp_path / evaluator.EVAL_DIR / "results_5.json").read_bytes()
    renamed = []

    def replace(source, target):
        renamed.append(os.path.basename(target))
        if target.endswith("results_5.json"):
            raise OSError("killed")
        real_replace(source, target)
    real_replace = os.replace
    monkeypatch.setattr(atomic.os, "replace", replace)
    with pytest.raises(OSError, match="killed"):
        evaluator.write_results(str(tmp_path), dict(RESULT, miou=0.25), 5)
    assert renamed == ["results_5.txt", "results.json", "results_5.json"]
    assert (tmp_path / evaluator.EVAL_DIR / "results_5.json").read_bytes() == before
    assert not [n for n in os.listdir(tmp_path / evaluator.EVAL_DIR) if n.endswith(".tmp")]


def test_no_checkpoint_within_the_timeout_returns_nothing(tmp_path):
    assert continuous.watch(config(10, 5, 5), str(tmp_path), lambda c: 0, timeout=0,
                            min_interval_secs=0) == []
