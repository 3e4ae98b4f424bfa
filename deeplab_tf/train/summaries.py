"""TensorBoard summaries and the console progress line of a training run.

Scalars (under WORKDIR/train): `loss` (cross-entropy + weight decay), `cross_entropy`,
`weight_decay`, `learning_rate`, `pixel_accuracy` and `mean_iou` of the training batches
since the previous summary, `step_time` (seconds per step) and `examples_per_second`.
Images: `image`, `ground_truth` and `prediction` of the first example of a batch, the masks
in the data set's colours (its `classes.ClassTable`), at `train.image_summary_every`.
Text: `recipe`, the run's departures from the paper's recipe (deeplab_tf/recipe.py), once
at the step each run starts from.
"""
import datetime

import numpy as np
import tensorflow as tf
from absl import logging

from deeplab_tf import visualization


def pixel_accuracy(confusion):
    total = confusion.sum()
    return float(np.trace(confusion) / total) if total else 0.0


def mean_iou(confusion):
    """Mean IoU over the classes present in the ground truth or the predictions."""
    intersection = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - intersection
    present = union > 0
    return float(np.mean(intersection[present] / union[present])) if present.any() else 0.0


class TrainSummaries:
    """Writes the scalars and images above; a no-op writer on non-chief workers."""

    def __init__(self, logdir, class_table, enabled=True):
        self._writer = (tf.summary.create_file_writer(logdir) if enabled
                        else tf.summary.create_noop_writer())
        self._palette = class_table.palette()
        num_classes = class_table.num_classes
        self._confusion = np.zeros((num_classes, num_classes), np.float64)

    def accumulate(self, confusion):
        self._confusion += confusion

    def write_scalars(self, step, scalars):
        """Writes `scalars` plus accuracy and mIoU of the batches accumulated so far."""
        scalars = dict(scalars, pixel_accuracy=pixel_accuracy(self._confusion),
                       mean_iou=mean_iou(self._confusion))
        self._confusion[:] = 0
        with self._writer.as_default(step=step):
            for name, value in scalars.items():
                tf.summary.scalar(name, value)
        return scalars

    def write_images(self, step, image, label, prediction):
        with self._writer.as_default(step=step):
            tf.summary.image("image", np.clip(image, 0, 255).astype(np.uint8)[None])
            tf.summary.image("ground_truth",
                             visualization.colorize(label, self._palette)[None])
            tf.summary.image("prediction",
                             visualization.colorize(prediction, self._palette)[None])

    def write_recipe(self, config, step):
        """The `recipe` text summary: the run's departures from the paper's protocol."""
        from deeplab_tf import recipe
        try:
            text = recipe.markdown(recipe.report(config))
        except ValueError as error:  # a broken paper section must not stop training
            text = f"recipe: {error}"
        with self._writer.as_default(step=step):
            # A vector of one string, not a scalar: readers of the scalars (plots.
            # read_scalars) take every rank-0 tensor for a number.
            tf.summary.text("recipe", [text])

    def flush(self):
        self._writer.flush()


class Progress:
    """The console line: step, loss, learning rate, steps/s, images/s and ETA."""

    def __init__(self, total_steps, start_step, batch_size, clock):
        self._total, self._batch_size, self._clock = total_steps, batch_size, clock
        self._start = (start_step, clock())
        self._marks = {}

    def rate(self, step, window):
        """(seconds per step, examples per second) since the previous call for `window`.

        The console line and the TensorBoard scalars keep separate windows ("log",
        "summary") because their intervals differ.
        """
        now = self._clock()
        last_step, last_time = self._marks.get(window, self._start)
        seconds_per_step = (now - last_time) / max(step - last_step, 1)
        self._marks[window] = (step, now)
        return seconds_per_step, self._batch_size / max(seconds_per_step, 1e-9)

    def log(self, step, loss, learning_rate, seconds_per_step, examples_per_second):
        eta = datetime.timedelta(seconds=round(seconds_per_step * (self._total - step)))
        logging.info("step %d/%d (%.0f%%) loss %.4f lr %.3g | %.2f steps/s %.1f img/s | "
                     "ETA %s", step, self._total, 100.0 * step / self._total, loss,
                     learning_rate, 1.0 / max(seconds_per_step, 1e-9), examples_per_second,
                     eta)
