"""PASCAL VOC 2012 segmentation (+ SBD train_aug) and the synthetic set, as TFDS builders.

Paper 4 trains on VOC 2012 augmented by the SBD annotations ("train_aug", 10,582 images)
and evaluates on val (1,449). The user's local copy is the TFDS `manual_dir`:

    manual_dir/VOCdevkit/VOC2012/{JPEGImages, SegmentationClass, ImageSets/Segmentation}
    manual_dir/benchmark_RELEASE/dataset/{cls/*.mat, img/*.jpg, train.txt, val.txt}  (SBD)
    manual_dir/SegmentationClassAug/*.png  (the common converted SBD folder; either works)

train_aug = VOC train + SBD train + SBD val, minus every VOC val image. Labels come from
VOC's own PNGs where they exist, else SegmentationClassAug, else the SBD .mat file.
"""
import os

import numpy as np
import scipy.io
import tensorflow_datasets as tfds

from deeplab_tf import visualization
from deeplab_tf.data import features, validation

NUM_CLASSES = 21
SPLITS = ("train", "val", "trainval")


def find_voc_root(manual_dir):
    for candidate in (os.path.join(manual_dir, "VOCdevkit", "VOC2012"),
                      os.path.join(manual_dir, "VOC2012"), manual_dir):
        if os.path.isdir(os.path.join(candidate, "JPEGImages")):
            return candidate
    raise validation.DataError(
        f"{manual_dir}: no VOC layout found (expected VOCdevkit/VOC2012/JPEGImages or "
        f"JPEGImages in this directory)")


def read_sbd_label(path):
    """SBD's class map: GTcls.Segmentation of a MATLAB .mat file, as uint8."""
    try:
        contents = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)
    except Exception as error:  # scipy's parser fails on garbage in many ways (IndexError...)
        raise validation.DataError(f"{path}: not a readable MATLAB .mat file "
                                   f"({type(error).__name__}: {error})") from None
    segmentation = getattr(contents.get("GTcls"), "Segmentation", None)
    if segmentation is None:
        raise validation.DataError(f"{path}: no GTcls.Segmentation (an SBD cls/*.mat file "
                                   f"holds the struct GTcls; found {sorted(contents)})")
    segmentation = np.asarray(segmentation)
    if segmentation.ndim != 2 or not (np.issubdtype(segmentation.dtype, np.integer) or
                                      np.issubdtype(segmentation.dtype, np.floating)):
        raise validation.DataError(f"{path}: GTcls.Segmentation is not a 2-D map of class "
                                   f"ids (shape {segmentation.shape}, {segmentation.dtype})")
    if segmentation.size and (segmentation.min() < 0 or segmentation.max() > 255 or
                              np.any(segmentation != np.round(segmentation))):
        raise validation.DataError(f"{path}: GTcls.Segmentation holds values that are not "
                                   f"class ids 0..255 (from {segmentation.min()} to "
                                   f"{segmentation.max()})")
    return segmentation.astype("uint8")


def read_label(source):
    kind, path = source
    return read_sbd_label(path) if kind == "mat" else validation.read_label_png(path)


class VocLayout:
    """The items (name, image path, label source) of each split of one local copy."""

    def __init__(self, manual_dir):
        self.manual_dir = os.fspath(manual_dir)
        self.root = find_voc_root(self.manual_dir)
        self.images = os.path.join(self.root, "JPEGImages")
        validation.require_nonempty_dir(self.images, ".jpg")
        self.labels = os.path.join(self.root, "SegmentationClass")
        self.sbd = os.path.join(self.manual_dir, "benchmark_RELEASE", "dataset")
        self.aug = next((p for p in (os.path.join(self.root, "SegmentationClassAug"),
                                     os.path.join(self.manual_dir, "SegmentationClassAug"))
                         if os.path.isdir(p)), None)

    def _image_path(self, name):
        """(path, the folder it is in) of the image of `name`: VOC's, else SBD's."""
        path = os.path.join(self.images, name + ".jpg")
        sbd_path = os.path.join(self.sbd, "img", name + ".jpg")
        if not os.path.isfile(path) and os.path.isfile(sbd_path):
            return sbd_path, os.path.join(self.sbd, "img")
        return path, self.images

    def _label_source(self, name):
        """(kind, path, folder) of the label of `name`, or None: VOC's PNG, else the
        converted SBD PNG, else SBD's .mat file."""
        for kind, folder in (("png", self.labels), ("png", self.aug or self.labels),
                             ("mat", os.path.join(self.sbd, "cls"))):
            path = os.path.join(folder, name + "." + kind)
            if os.path.isfile(path):
                return kind, path, folder
        return None

    def _problem(self, name):
        """What a split entry lacks (image first, then label), or where a file of it leads
        out of its folder (a symbolic link); None when both are there."""
        image, folder = self._image_path(name)
        problem = validation.missing_or_outside(image, folder)
        if problem:
            return problem
        source = self._label_source(name)
        if source is None:
            return f"but {os.path.join(self.labels, name + '.png')} does not exist"
        link = validation.link_out(source[1], source[2])
        return link and f"but {link}"

    def _items(self, names):
        return [(name, self._image_path(name)[0], self._label_source(name)[:2])
                for name in names]

    def split_names(self):
        lists = os.path.join(self.root, "ImageSets", "Segmentation")
        names = {split: validation.read_split_list(os.path.join(lists, split + ".txt"),
                                                   self._problem) for split in SPLITS}
        if os.path.isdir(self.sbd) or self.aug:
            names["train_aug"] = self._train_aug_names(names["train"], names["val"])
        return names

    def _train_aug_names(self, voc_train, voc_val):
        if os.path.isdir(self.sbd):
            sbd = [n for split in ("train", "val") for n in validation.read_split_list(
                os.path.join(self.sbd, split + ".txt"), self._problem)]
        else:
            sbd = [n[:-4] for n in validation.require_nonempty_dir(self.aug, ".png")]
            for name in sbd:
                problem = self._problem(name)
                if problem:
                    raise validation.DataError(f"{self.aug}/{name}.png names {name!r}, "
                                               f"{problem}")
        return sorted((set(voc_train) | set(sbd)) - set(voc_val))

    def split_items(self):
        return {split: self._items(names) for split, names in self.split_names().items()}


class PascalVocSeg(tfds.core.GeneratorBasedBuilder):
    """PASCAL VOC 2012 segmentation, with SBD's train_aug split when SBD is present."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "train, val, trainval; train_aug with SBD."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = __doc__

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self, description=self.__doc__,
            features=features.segmentation_features(visualization.VOC_CLASSES, "jpeg"))

    def _split_generators(self, dl_manager):
        # Every split list is checked for missing files before the first example is written.
        return {split: self._generate_examples(items)
                for split, items in VocLayout(dl_manager.manual_dir).split_items().items()}

    def _generate_examples(self, items):
        for name, image_path, label_source in items:
            label = read_label(label_source)
            yield name, features.checked_example(image_path, label, label_source[1], name,
                                                 NUM_CLASSES, "jpeg")


class SyntheticVoc(PascalVocSeg):
    """The generated VOC-layout set of `tools/make_synthetic.py`, read by the VOC code."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Generated scenes; train, val, trainval."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = ("Run `python -m tools.make_synthetic --output_dir=DIR` "
                                    "and pass DIR as manual_dir.")
