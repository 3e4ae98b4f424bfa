"""Evaluation alongside training: each new checkpoint of a work dir, once (paper Section 4).

Used by `tools.evaluate --watch` and by the `evaluator` task of a training cluster
(TensorFlow's side-car evaluator: `tools.train` with TF_CONFIG task type "evaluator").
Each checkpoint goes through `run.evaluate_checkpoint`; results go to WORKDIR/eval (results_<step>.json,
the table, and TensorBoard scalars `eval/miou`, beside the training summaries in
WORKDIR/train). With `skip_evaluated` (the cluster evaluator), a checkpoint whose
results_<step>.json exists is not evaluated again, so a restarted evaluator picks up where
it stopped.
"""
import os

import tensorflow as tf
from absl import logging

from deeplab_tf.evaluation import checkpoints, evaluator, run


def _evaluated(workdir, step):
    return tf.io.gfile.exists(os.path.join(workdir, evaluator.EVAL_DIR,
                                           f"results_{step}.json"))


def watch(config, workdir, evaluate_fn=None, timeout=None, min_interval_secs=1,
          skip_evaluated=False):
    """Evaluates each new checkpoint of `workdir` until the one of step train.steps.

    `evaluate_fn(checkpoint) -> step` (default: `run.evaluate_checkpoint` with `config`);
    stops after `timeout` seconds without a new checkpoint (None: waits for the last).
    Returns the steps evaluated.
    """
    if evaluate_fn is None:
        def evaluate_fn(checkpoint):
            return run.evaluate_checkpoint(config, workdir, checkpoint)[0]
    directory = os.path.join(workdir, checkpoints.CHECKPOINT_DIR)
    evaluated = []
    for checkpoint in tf.train.checkpoints_iterator(directory, min_interval_secs,
                                                    timeout=timeout):
        try:
            step = evaluator.checkpoint_step(checkpoint)
            if not (skip_evaluated and _evaluated(workdir, step)):
                step = evaluate_fn(checkpoint)
                evaluated.append(step)
        except tf.errors.NotFoundError as error:  # deleted by the trainer's max_to_keep
            logging.warning("skipping %s: %s", checkpoint, str(error).splitlines()[0])
            continue
        if step >= config.train.steps:
            logging.info("evaluated the final step %d; done", config.train.steps)
            return evaluated
    logging.info("no new checkpoint in %s s; done", timeout)
    return evaluated
