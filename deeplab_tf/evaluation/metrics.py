"""Mean intersection-over-union as the paper reports it (Section 4, "mIOU").

One confusion matrix is accumulated over the whole split (not an average of per-image
scores), pixels whose ground truth is the ignore label 255 are left out, and

    IoU_c = TP_c / (TP_c + FP_c + FN_c),   mIoU = mean of IoU_c over the classes present,

where a class is "present" when it occurs in the ground truth or in the prediction. A class
absent from both has no IoU (0/0); it is reported as absent and not averaged in, as the
PASCAL VOC devkit and the official Cityscapes script do.

The counts are int64 numpy: `keras.metrics.MeanIoU` keeps its matrix in float32, whose
integers stop being exact at 2**24 = 16.7M pixels per cell, fewer than one class covers on
the Cityscapes val split (500 images of 2M pixels).
"""
import numpy as np


class ConfusionMatrix:
    """Confusion matrix over a split: rows are ground-truth classes, columns predictions."""

    def __init__(self, num_classes, ignore_label=255, class_names=None):
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
        self.num_classes = num_classes
        self.ignore_label = ignore_label
        self.class_names = tuple(class_names or (str(c) for c in range(num_classes)))
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
        self.num_images = 0

    def update(self, labels, predictions, name=""):
        """Adds one image (or a batch) of ground-truth `labels` and `predictions` (class ids).

        `name` (e.g. the file name) only serves the error message.
        """
        labels = np.asarray(labels)
        predictions = np.asarray(predictions)
        if labels.ndim == predictions.ndim + 1 and labels.shape[-1] == 1:
            labels = labels[..., 0]  # HxWx1 labels, as TFDS stores them
        if labels.shape != predictions.shape:
            raise ValueError(f"{name or 'image'}: labels {labels.shape} and predictions "
                             f"{predictions.shape} differ in shape")
        labels = labels.reshape(-1).astype(np.int64)
        predictions = predictions.reshape(-1).astype(np.int64)
        keep = labels != self.ignore_label
        labels, predictions = labels[keep], predictions[keep]
        for what, values in (("label", labels), ("prediction", predictions)):
            bad = (values < 0) | (values >= self.num_classes)
            if bad.any():
                raise ValueError(
                    f"{name or 'image'}: {what} value {values[bad][0]} is outside 0.."
                    f"{self.num_classes - 1} (and is not the ignore label "
                    f"{self.ignore_label})")
        # One bincount over (label, prediction) pairs fills the whole matrix at once.
        self.matrix += np.bincount(labels * self.num_classes + predictions,
                                   minlength=self.num_classes ** 2).reshape(
                                       self.num_classes, self.num_classes)
        self.num_images += 1

    def merge(self, other):
        if other.matrix.shape != self.matrix.shape:
            raise ValueError("cannot merge confusion matrices of different class counts")
        self.matrix += other.matrix
        self.num_images += other.num_images

    def per_class_iou(self):
        """IoU per class as a float array; NaN for classes absent from labels and predictions."""
        true_positives = np.diag(self.matrix).astype(np.float64)
        union = self.matrix.sum(0) + self.matrix.sum(1) - np.diag(self.matrix)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(union > 0, true_positives / np.maximum(union, 1), np.nan)

    def result(self):
        """A JSON-ready dict: miou, pixel_accuracy, per_class_iou (None = absent), counts."""
        iou = self.per_class_iou()
        present = ~np.isnan(iou)
        total = int(self.matrix.sum())
        return {
            "miou": float(iou[present].mean()) if present.any() else None,
            "pixel_accuracy": float(np.trace(self.matrix) / total) if total else None,
            "per_class_iou": {name: (float(value) if ok else None)
                              for name, value, ok in zip(self.class_names, iou, present)},
            "absent_classes": [name for name, ok in zip(self.class_names, present) if not ok],
            "num_classes_averaged": int(present.sum()),
            "num_pixels": total,
            "num_images": self.num_images,
            "confusion_matrix": self.matrix.tolist(),
        }


def format_table(result, title=""):
    """A readable per-class table of a `ConfusionMatrix.result()` dict (IoU in percent)."""
    names = list(result["per_class_iou"])
    width = max([len(n) for n in names] + [len("pixel accuracy")])
    lines = [title] if title else []
    lines.append(f"{'class'.ljust(width)}   IoU (%)")
    lines.append("-" * (width + 10))
    for name in names:
        value = result["per_class_iou"][name]
        shown = "  absent" if value is None else f"{100 * value:8.2f}"
        lines.append(f"{name.ljust(width)} {shown}")
    lines.append("-" * (width + 10))
    miou = result["miou"]
    accuracy = result["pixel_accuracy"]
    lines.append(f"{'mIoU'.ljust(width)} " + ("     n/a" if miou is None else f"{100 * miou:8.2f}")
                 + f"   (over {result['num_classes_averaged']} classes present)")
    lines.append(f"{'pixel accuracy'.ljust(width)} "
                 + ("     n/a" if accuracy is None else f"{100 * accuracy:8.2f}"))
    lines.append(f"{result['num_images']} images, {result['num_pixels']} labelled pixels")
    return "\n".join(lines)
