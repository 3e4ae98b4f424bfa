"""Evaluation alongside training: every checkpoint of a work dir, once, in order (paper Section 4).

Used by `tools.evaluate --watch` and by the `evaluator` task of a training cluster
(TensorFlow's side-car evaluator: `tools.train` with TF_CONFIG task type "evaluator").
Each checkpoint goes through `run.evaluate_checkpoint`; results go to WORKDIR/eval
(results_<step>.json, the table, and TensorBoard scalars `eval/miou`, beside the training
summaries in WORKDIR/train). With `skip_evaluated` (the cluster evaluator), a checkpoint
whose results_<step>.json holds its record is not evaluated again (an empty
or unreadable one does not count), so a restarted evaluator picks
up where it stopped.

`tf.train.checkpoints_iterator` yields only the newest checkpoint each time it looks, so
an evaluator slower than the trainer silently skipped the ones saved meanwhile. Here each
look lists every checkpoint the trainer keeps (its `checkpoint` state file) and evaluates
those not seen yet, oldest first. What the trainer deleted (train.max_checkpoints) before
the evaluator reached it cannot be evaluated: the log says which steps were lost that way.
"""
import os
import time

import tensorflow as tf
from absl import logging

from deeplab_tf.evaluation import checkpoints, evaluator, run


def _evaluated(workdir, step):
    """Whether WORKDIR/eval holds a readable record of `step` (an empty or truncated one,
    left by a kill before the writes were atomic, is no record)."""
    return evaluator.read_results(workdir, step) is not None


def _number(path):
    """N of a CheckpointManager path PREFIX-N (the trainer numbers them by step)."""
    suffix = path.rsplit("-", 1)[-1]
    return int(suffix) if suffix.isdigit() else -1


def kept_checkpoints(directory):
    """Every checkpoint the manager of `directory` keeps, oldest first."""
    state = tf.train.get_checkpoint_state(directory)
    if state is None:
        return []
    paths = list(state.all_model_checkpoint_paths) or [state.model_checkpoint_path]
    paths = [p if os.path.isabs(p) else os.path.join(directory, p) for p in paths if p]
    return sorted(set(paths), key=_number)


def _say_what_was_lost(config, workdir, previous, path):
    """Logs the checkpoints the trainer saved (by its checkpoint_every) after step
    `previous` and before `path` that were deleted before the evaluator listed them."""
    every = config.train.checkpoint_every
    lost = [n for n in range((previous // every + 1) * every, _number(path), every)
            if not _evaluated(workdir, n)]
    if lost:
        _report_lost(config, lost)


def _report_lost(config, steps):
    logging.warning("not evaluated: the checkpoints of steps %s, deleted by the trainer "
                    "(train.max_checkpoints=%d) before the evaluator reached them",
                    ", ".join(map(str, steps)), config.train.max_checkpoints)


def watch(config, workdir, evaluate_fn=None, timeout=None, min_interval_secs=1,
          skip_evaluated=False):
    """Evaluates every checkpoint of `workdir`, in step order, until the one of step
    train.steps.

    `evaluate_fn(checkpoint) -> step` (default: `run.evaluate_checkpoint` with `config`);
    stops after `timeout` seconds without a new checkpoint (None: waits for the last).
    Returns the steps evaluated.
    """
    if evaluate_fn is None:
        def evaluate_fn(checkpoint):
            return run.evaluate_checkpoint(config, workdir, checkpoint)[0]
    directory = os.path.join(workdir, checkpoints.CHECKPOINT_DIR)
    evaluated, seen, previous = [], set(), 0
    last_new = time.monotonic()
    while True:
        new = [p for p in kept_checkpoints(directory) if p not in seen]
        if not new:
            if timeout is not None and time.monotonic() - last_new >= timeout:
                logging.info("no new checkpoint in %s s; done", timeout)
                return evaluated
            time.sleep(min_interval_secs)
            continue
        for checkpoint in new:
            seen.add(checkpoint)
            _say_what_was_lost(config, workdir, previous, checkpoint)
            previous = max(previous, _number(checkpoint))
            try:
                step = evaluator.checkpoint_step(checkpoint)
                if not (skip_evaluated and _evaluated(workdir, step)):
                    step = evaluate_fn(checkpoint)
                    evaluated.append(step)
            except tf.errors.NotFoundError:  # listed, then deleted by the trainer
                _report_lost(config, [_number(checkpoint)])
                continue
            if step >= config.train.steps:
                logging.info("evaluated the final step %d; done", config.train.steps)
                return evaluated
        last_new = time.monotonic()
