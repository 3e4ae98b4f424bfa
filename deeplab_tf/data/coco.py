"""COCO 2017 relabelled to the 20 VOC classes, for pre-training (paper 4.3).

The paper pre-trains on COCO images "whose annotation regions [of VOC classes] exceed 1000
pixels", with every non-VOC class as background. The user's copy is the TFDS manual_dir:

    manual_dir/annotations/instances_{train,val}2017.json
    manual_dir/{train2017,val2017}/*.jpg

Instances (polygons and RLE, crowd included) are rasterised with pycocotools (the
optional `coco` extra), larger instances first so smaller ones stay visible on top.
"""
import os

import numpy as np
import tensorflow_datasets as tfds

from deeplab_tf import visualization
from deeplab_tf.data import features, validation

NUM_CLASSES = 21
MIN_VOC_PIXELS = 1000
# COCO category name -> VOC class name, where they differ.
COCO_TO_VOC_NAMES = {"airplane": "aeroplane", "dining table": "diningtable",
                     "motorcycle": "motorbike", "potted plant": "pottedplant",
                     "couch": "sofa", "tv": "tvmonitor"}


def _coco_api(annotation_file):
    try:
        from pycocotools.coco import COCO
    except ImportError:
        raise ImportError("coco_voc_seg needs pycocotools: pip install "
                          "'deeplab_tf[coco]'") from None
    if not os.path.isfile(annotation_file):
        raise validation.DataError(f"{annotation_file}: annotation file does not exist")
    try:
        return COCO(annotation_file)
    except (ValueError, KeyError) as error:
        raise validation.DataError(f"{annotation_file}: not a COCO instances file "
                                   f"({error})") from None


def voc_category_map(coco):
    """COCO category id -> VOC class id for the 20 VOC classes; an error if one is absent."""
    voc_ids = {name: i for i, name in enumerate(visualization.VOC_CLASSES)}
    mapping = {}
    for category in coco.loadCats(coco.getCatIds()):
        voc_name = COCO_TO_VOC_NAMES.get(category["name"], category["name"])
        if voc_name in voc_ids and voc_name != "background":
            mapping[category["id"]] = voc_ids[voc_name]
    if len(set(mapping.values())) != NUM_CLASSES - 1:
        missing = set(visualization.VOC_CLASSES[1:]) - {
            visualization.VOC_CLASSES[i] for i in mapping.values()}
        raise validation.DataError(f"COCO categories lack VOC classes {sorted(missing)}")
    return mapping


def voc_label(coco, image_info, mapping):
    """The VOC class map of one COCO image: VOC instances painted largest first."""
    label = np.zeros((image_info["height"], image_info["width"]), dtype=np.uint8)
    annotations = coco.loadAnns(coco.getAnnIds(imgIds=image_info["id"], iscrowd=None))
    annotations = [a for a in annotations if a["category_id"] in mapping]
    for annotation in sorted(annotations, key=lambda a: -a["area"]):
        label[coco.annToMask(annotation).astype(bool)] = mapping[annotation["category_id"]]
    return label


def split_images(coco, mapping):
    """Image records (sorted by id) that hold any VOC-class annotation at all."""
    image_ids = {a["image_id"] for a in coco.loadAnns(coco.getAnnIds(
        catIds=list(mapping), iscrowd=None))}
    return coco.loadImgs(sorted(image_ids))


class CocoVocSeg(tfds.core.GeneratorBasedBuilder):
    """COCO 2017 images with > 1000 VOC-class pixels, labelled with the 21 VOC classes."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "train (train2017), val (val2017)."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = __doc__

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self, description=self.__doc__,
            features=features.segmentation_features(visualization.VOC_CLASSES, "jpeg"))

    def _split_generators(self, dl_manager):
        manual_dir = os.fspath(dl_manager.manual_dir)
        splits = {}
        for split, folder in (("train", "train2017"), ("val", "val2017")):
            annotation_file = os.path.join(manual_dir, "annotations",
                                           f"instances_{folder}.json")
            if os.path.isfile(annotation_file):
                image_dir = os.path.join(manual_dir, folder)
                validation.require_nonempty_dir(image_dir, ".jpg")
                splits[split] = self._generate_examples(annotation_file, image_dir)
        if not splits:
            raise validation.DataError(f"{manual_dir}/annotations: no "
                                       f"instances_train2017.json or instances_val2017.json")
        return splits

    def _generate_examples(self, annotation_file, image_dir):
        coco = _coco_api(annotation_file)
        mapping = voc_category_map(coco)
        for image_info in split_images(coco, mapping):
            label = voc_label(coco, image_info, mapping)
            if np.count_nonzero((label > 0) & (label < NUM_CLASSES)) <= MIN_VOC_PIXELS:
                continue  # the paper's selection rule, not a silent drop of bad data
            image_path = os.path.join(image_dir, image_info["file_name"])
            yield image_info["file_name"], features.checked_example(
                image_path, label, annotation_file, image_info["file_name"], NUM_CLASSES,
                "jpeg")
