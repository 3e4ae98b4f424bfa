"""Builds one of the registered data sets from the user's local copy (TFDS manual_dir).

A rebuild of one's own data (`overwrite`) writes the new version into a temporary data dir
beside the old one and swaps it in only once TFDS has finished writing it: a build that
fails while writing (damage found only when an image is decoded, a full disk, Ctrl-C)
leaves the old build as it was. (TFDS's own FORCE_REDOWNLOAD deletes the old version
before it starts generating.)
"""
import os
import shutil
import tempfile
import time
import uuid

import tensorflow_datasets as tfds
from absl import logging

from deeplab_tf.data import custom

BUILDERS = ("pascal_voc_seg", "synthetic_voc", "cityscapes_seg", "coco_voc_seg",
            custom.NAME)
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


def build(dataset, manual_dir, data_dir=None, progress_every=500, overwrite=False,
          **options):
    """Builds `dataset` from `manual_dir` into `data_dir`; returns the builder.

    "custom_seg/NAME" is one's own data (deeplab_tf/data/custom.py): `options` are
    `own_layout.OwnLayout`'s (class_file, ignore_value, ignore_color, val_fraction,
    split_seed), the whole folder is read and checked before anything is written, and an
    existing build of NAME is replaced only with `overwrite`, and only once the new one
    is completely written (`_rebuild`). The built-in data sets take
    no options and reuse an existing build.
    """
    if dataset not in BUILDERS and not custom.is_custom(dataset):
        raise ValueError(f"unknown dataset {dataset!r}; one of {', '.join(BUILDERS[:-1])} "
                         f"or {custom.NAME}/NAME")
    manual_dir = os.path.expanduser(os.fspath(manual_dir))
    if not os.path.isdir(manual_dir):
        raise FileNotFoundError(f"manual_dir {manual_dir}: directory does not exist")
    data_dir = data_dir and os.path.expanduser(os.fspath(data_dir))
    if custom.is_custom(dataset):
        builder = custom.make_builder(dataset, manual_dir, data_dir, **options)
        # Not is_prepared(): TFDS warns about a folder that is not there. An existing
        # folder is a finished build (TFDS renames its temporary folder at the end).
        if os.path.exists(builder.data_dir):
            if not overwrite:
                raise FileExistsError(f"{dataset} is already built in {builder.data_dir}; "
                                      f"pass --overwrite to build it again from "
                                      f"{manual_dir}")
            return _rebuild(dataset, builder, manual_dir, data_dir, progress_every)
    else:
        if options or overwrite:
            raise ValueError(f"{dataset} takes no options "
                             f"({', '.join(sorted(options) + ['overwrite'] * overwrite)}): "
                             f"they are for {custom.NAME}/NAME")
        builder = tfds.builder(dataset, data_dir=data_dir)
    _prepare(builder, manual_dir, progress_every)
    return builder


def _prepare(builder, manual_dir, progress_every):
    """TFDS's download_and_prepare of `builder`, logging progress in plain lines."""
    # TFDS's tqdm bars redraw with carriage returns, which a log file keeps as clutter;
    # one line every `progress_every` examples per split instead. TFDS has no progress
    # hook, so the builder's split generators are wrapped.
    tfds.disable_progress_bar()
    split_generators = builder._split_generators  # pylint: disable=protected-access

    def logged_split_generators(dl_manager):
        return {split: _logged(split, examples, progress_every)
                for split, examples in split_generators(dl_manager).items()}

    builder._split_generators = logged_split_generators  # pylint: disable=protected-access
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=manual_dir, download_mode=tfds.download.GenerateMode.
        REUSE_DATASET_IF_EXISTS))


def _rebuild(dataset, old_builder, manual_dir, data_dir, progress_every):
    """Builds `dataset` again and swaps it in for `old_builder`'s version only when the
    new one is completely written; returns a builder that reads the new one.

    The new version is written under a temporary data dir inside the data set's own
    folder (DATA_DIR/custom_seg/NAME/.rebuild-XXXX, the same file system, so the swap is
    two renames). Between them the old version is at VERSION.old-XXXX, so even a kill at
    that instant loses nothing. Nothing TFDS writes names the data dir (the shard paths in
    dataset_info.json are relative), so the moved version reads from its new place.
    """
    final = old_builder.data_dir
    parent = os.path.dirname(final)
    scratch = tempfile.mkdtemp(prefix=".rebuild-", dir=parent)
    try:
        # The same config, whose export folder was read and checked once already.
        builder = custom.CustomSeg(config=old_builder.builder_config, data_dir=scratch)
        _prepare(builder, manual_dir, progress_every)
        built = builder.data_dir
        if os.path.basename(built) != os.path.basename(final):
            raise RuntimeError(f"rebuilt {dataset} as version {os.path.basename(built)}, "
                               f"not {os.path.basename(final)}")
        old = f"{final}.old-{uuid.uuid4().hex[:8]}"
        os.rename(final, old)
        try:
            os.rename(built, final)
        except BaseException:
            os.rename(old, final)
            raise
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return tfds.builder(dataset, data_dir=data_dir)


def _logged(split, examples, every):
    """Yields `examples`, logging the count and rate every `every` and at the end."""
    start, count = time.monotonic(), 0
    for count, example in enumerate(examples, 1):
        if count % every == 0:
            elapsed = time.monotonic() - start
            logging.info("%s: %d examples read and checked (%.1f/s)", split, count,
                         count / max(elapsed, 1e-9))
        yield example
    logging.info("%s: %d examples in %.1f s", split, count, time.monotonic() - start)
