"""Cityscapes semantic segmentation as a TFDS builder (paper 4.4: 19 train ids).

The user's copy is the TFDS `manual_dir`:

    manual_dir/leftImg8bit/{train,val,train_extra}/CITY/CITY_SEQ_FRAME_leftImg8bit.png
    manual_dir/gtFine/{train,val}/CITY/CITY_SEQ_FRAME_gtFine_labelIds.png
    manual_dir/gtCoarse/train_extra/CITY/CITY_SEQ_FRAME_gtCoarse_labelIds.png  (optional)

Splits: train (2,975) and val (500) with the fine labels, train_extra (19,998) with the
coarse ones when gtCoarse is present. labelIds are mapped to the 19 train ids, 255 for the
rest, by the official label table (cityscapesscripts/helpers/labels.py), written here as
data so cityscapesscripts is not needed to build.
"""
import os

import numpy as np
import tensorflow_datasets as tfds

from deeplab_tf import visualization
from deeplab_tf.data import features, validation

NUM_CLASSES = 19
# labelId -> trainId for ids 0..33 (the table's `trainId` column; 255 = ignored in eval).
LABEL_ID_TO_TRAIN_ID = (
    255, 255, 255, 255, 255, 255, 255,  # unlabeled, ego vehicle, rectification border,
                                        # out of roi, static, dynamic, ground
    0, 1, 255, 255,                     # road, sidewalk, parking, rail track
    2, 3, 4, 255, 255, 255,             # building, wall, fence, guard rail, bridge, tunnel
    5, 255, 6, 7,                       # pole, polegroup, traffic light, traffic sign
    8, 9, 10, 11, 12, 13, 14, 15,       # vegetation, terrain, sky, person, rider, car,
                                        # truck, bus
    255, 255, 16, 17, 18)               # caravan, trailer, train, motorcycle, bicycle
SPLITS = {"train": ("gtFine", "train"), "val": ("gtFine", "val"),
          "train_extra": ("gtCoarse", "train_extra")}


def to_train_ids(label_ids, path):
    """Maps a labelIds map to train ids; an id outside the table is an error."""
    table = np.full(256, -1, dtype=np.int64)
    table[:len(LABEL_ID_TO_TRAIN_ID)] = LABEL_ID_TO_TRAIN_ID
    mapped = table[label_ids]
    if (mapped < 0).any():
        bad = np.unique(label_ids[mapped < 0]).tolist()
        raise validation.DataError(f"{path}: labelIds {bad} are not in the Cityscapes label "
                                   f"table (0..{len(LABEL_ID_TO_TRAIN_ID) - 1})")
    return mapped.astype(np.uint8)


def split_items(manual_dir, split):
    """[(name, image path, label path)] of one split, checking that every label exists."""
    annotation, folder = SPLITS[split]
    image_root = os.path.join(manual_dir, "leftImg8bit", folder)
    cities = sorted(os.listdir(image_root)) if os.path.isdir(image_root) else []
    items = []
    for city in cities:
        for image_name in validation.require_nonempty_dir(
                os.path.join(image_root, city), "_leftImg8bit.png"):
            name = image_name[:-len("_leftImg8bit.png")]
            label_path = os.path.join(manual_dir, annotation, folder, city,
                                      f"{name}_{annotation}_labelIds.png")
            if not os.path.isfile(label_path):
                raise validation.DataError(f"{os.path.join(image_root, city, image_name)}: "
                                           f"no label {label_path}")
            items.append((name, os.path.join(image_root, city, image_name), label_path))
    if not items:
        raise validation.DataError(f"{image_root}: no *_leftImg8bit.png images in city "
                                   f"folders")
    return items


class CityscapesSeg(tfds.core.GeneratorBasedBuilder):
    """Cityscapes fine (train, val) and coarse (train_extra) labels, 19 train ids."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "train, val (gtFine), train_extra (gtCoarse) when present."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = __doc__

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self, description=self.__doc__,
            features=features.segmentation_features(visualization.CITYSCAPES_CLASSES, "png"))

    def _split_generators(self, dl_manager):
        manual_dir = os.fspath(dl_manager.manual_dir)
        splits = ["train", "val"]
        if os.path.isdir(os.path.join(manual_dir, "gtCoarse", "train_extra")):
            splits.append("train_extra")
        return {split: self._generate_examples(split_items(manual_dir, split))
                for split in splits}

    def _generate_examples(self, items):
        for name, image_path, label_path in items:
            label = to_train_ids(validation.read_label_png(label_path), label_path)
            yield name, features.checked_example(image_path, label, label_path, name,
                                                 NUM_CLASSES, "png")
