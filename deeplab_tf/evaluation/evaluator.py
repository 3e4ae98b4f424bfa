"""Evaluating a checkpoint over a split: mIoU as in paper Section 4 (Tables 4-7).

`evaluate` takes any iterable of (image, label) numpy pairs, so it runs on the data
helper's `eval_input` (via `examples_from_eval_input`) as well as on arrays a test writes.
Results go to WORKDIR/eval: results.json (latest) and results_<step>.json, a readable
table (results_<step>.txt) and TensorBoard scalars.
"""
import json
import os

import numpy as np
import tensorflow as tf
from absl import logging

from deeplab_tf import atomic, console
from deeplab_tf.evaluation import metrics

EVAL_DIR = "eval"


def examples_from_eval_input(dataset):
    """(image HxWx3, label HxW) pairs from `deeplab_tf.data.eval_input` elements.

    eval_input pads each image to the evaluation size; the padding is cut off here and
    inference pads again (to the same size, given the same crop_size), so the caller may
    pass padded or unpadded images alike.
    """
    for element in dataset.as_numpy_iterator():
        height = int(np.asarray(element["height"]).reshape(-1)[0])
        width = int(np.asarray(element["width"]).reshape(-1)[0])
        image = np.asarray(element["image"])
        label = np.asarray(element["label"])
        if image.ndim == 4:  # [1,H,W,3]: one image per element
            image, label = image[0], label[0]
        if label.ndim == 3:  # HxWx1
            label = label[..., 0]
        yield image[:height, :width], label[:height, :width]


def evaluate(predict_fn, examples, num_classes, class_names=None, ignore_label=255,
             num_examples=None, verbose=True):
    """Accumulates one confusion matrix over `examples`; returns the `ConfusionMatrix`.

    Args:
      predict_fn: images float32 [1,H,W,3] -> (labels [1,H,W], ...), e.g.
        `inference.make_predict_fn(model, scales, flip)`.
      examples: iterable of (image HxWx3, label HxW or HxWx1) arrays.
      num_examples: the split's size, for the progress lines' ETA (optional).
    """
    confusion = metrics.ConfusionMatrix(num_classes, ignore_label, class_names)
    # Log lines, not a redrawn bar: they read the same in a terminal and in a log file.
    every = max(1, (num_examples or 100) // 10)
    progress = console.Progress("evaluated", num_examples, "images", every) if verbose else None
    for image, label in examples:
        image = np.asarray(image, dtype=np.float32)
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"expected an HxWx3 image, got shape {image.shape}")
        predicted = predict_fn(tf.constant(image[None]))[0]
        confusion.update(label, np.asarray(predicted)[0],
                         name=f"image {confusion.num_images}")
        if progress is not None:
            progress.update()
    if confusion.num_images == 0:
        raise ValueError("the evaluation split is empty")
    return confusion


def checkpoint_step(checkpoint):
    """The training step saved in a checkpoint (its `step` variable), else save_counter."""
    names = dict(tf.train.list_variables(checkpoint))
    for key in ("step/.ATTRIBUTES/VARIABLE_VALUE", "save_counter/.ATTRIBUTES/VARIABLE_VALUE"):
        if key in names:
            return int(tf.train.load_variable(checkpoint, key))
    return 0


def write_results(workdir, result, step, settings=None):
    """Writes the JSON, the table and TensorBoard scalars to WORKDIR/eval; returns the table.

    Each file is written atomically, and results_<step>.json, which tells a restarted
    evaluator that `step` is done (continuous.py), goes last: a kill at any point leaves
    the step to be evaluated again, not a record without its scalars.
    """
    eval_dir = os.path.join(workdir, EVAL_DIR)
    tf.io.gfile.makedirs(eval_dir)
    settings = settings or {}
    record = dict(result, step=step, settings=settings)
    text = json.dumps(record, indent=2)
    described = ", ".join(f"{k}={v}" for k, v in settings.items())
    table = metrics.format_table(result, title=f"step {step}: {described}")
    atomic.write_text(os.path.join(eval_dir, f"results_{step}.txt"), table + "\n")
    writer = tf.summary.create_file_writer(eval_dir)
    with writer.as_default():
        if result["miou"] is not None:
            tf.summary.scalar("eval/miou", result["miou"], step=step)
        if result["pixel_accuracy"] is not None:
            tf.summary.scalar("eval/pixel_accuracy", result["pixel_accuracy"], step=step)
        for name, value in result["per_class_iou"].items():
            if value is not None:  # absent classes have no IoU; no point is better than 0
                tf.summary.scalar(f"eval_iou/{name}", value, step=step)
    writer.flush()
    atomic.write_text(os.path.join(eval_dir, "results.json"), text)
    atomic.write_text(os.path.join(eval_dir, results_file(step)), text)
    return table


def results_file(step):
    """The name of the record of `step`'s evaluation in WORKDIR/eval."""
    return f"results_{step}.json"


def read_results(workdir, step):
    """The record of `step`'s evaluation, or None where there is none or it cannot be read
    (empty, truncated, not JSON, of another step): such a step counts as not evaluated."""
    path = os.path.join(workdir, EVAL_DIR, results_file(step))
    try:
        with tf.io.gfile.GFile(path, "r") as f:
            record = json.loads(f.read())
    except (tf.errors.NotFoundError, FileNotFoundError):
        return None
    except (ValueError, UnicodeDecodeError, tf.errors.OpError, OSError):
        logging.warning("%s cannot be read (a write that was interrupted?): step %d is "
                        "evaluated again", path, step)
        return None
    if not isinstance(record, dict) or record.get("step") != step or "miou" not in record:
        logging.warning("%s is not the record of step %d's evaluation: it is evaluated "
                        "again", path, step)
        return None
    return record
