"""Builds one of the registered data sets from the user's local copy (TFDS manual_dir)."""
import os

import tensorflow_datasets as tfds

BUILDERS = ("pascal_voc_seg", "synthetic_voc", "cityscapes_seg", "coco_voc_seg")


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
