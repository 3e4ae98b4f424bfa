"""Builds one of the registered data sets from the user's local copy (TFDS manual_dir)."""
import os

import tensorflow_datasets as tfds

BUILDERS = ("pascal_voc_seg", "synthetic_voc", "cityscapes_seg", "coco_voc_seg")
# Split sizes of the complete public data sets (paper 4; Cityscapes' README), to compare
# a build of the user's copy against.
FULL_COUNTS = {
    "pascal_voc_seg": {"train": 1464, "val": 1449, "trainval": 2913, "train_aug": 10582},
    "cityscapes_seg": {"train": 2975, "val": 500, "train_extra": 19998},
}


def count_report(builder):
    """"train 1464, val 1449, ..." with the full data set's count beside any that differ."""
    expected = FULL_COUNTS.get(builder.name, {})
    parts = []
    for name, split in sorted(builder.info.splits.items()):
        full = expected.get(name)
        note = f" (the full data set has {full})" if full and full != split.num_examples else ""
        parts.append(f"{name} {split.num_examples}{note}")
    return ", ".join(parts)


def build(dataset, manual_dir, data_dir=None):
    """Builds `dataset` from `manual_dir` into `data_dir`; returns the builder."""
    if dataset not in BUILDERS:
        raise ValueError(f"unknown dataset {dataset!r}; one of {', '.join(BUILDERS)}")
    manual_dir = os.path.expanduser(os.fspath(manual_dir))
    if not os.path.isdir(manual_dir):
        raise FileNotFoundError(f"manual_dir {manual_dir}: directory does not exist")
    builder = tfds.builder(dataset, data_dir=data_dir and os.path.expanduser(
        os.fspath(data_dir)))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=manual_dir))
    return builder
