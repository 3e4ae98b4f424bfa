"""COCO 2017 relabelled to the 20 VOC classes, for pre-training (paper 4.3).

The paper pre-trains on COCO images "whose annotation regions [of VOC classes] exceed 1000
pixels", with every non-VOC class as background. The user's copy is the TFDS manual_dir:

    manual_dir/annotations/instances_{train,val}2017.json
    manual_dir/{train2017,val2017}/*.jpg

Instances (polygons and RLE, crowd included) are rasterised with pycocotools (the
optional `coco` extra), larger instances first so smaller ones stay visible on top.
pycocotools trusts its input (a dangling image id is a KeyError, an odd-length polygon is
rasterised anyway), so the instances file is checked first: every problem is a DataError
naming the file and the annotation or image. An image's height and width, from which the
label array is allocated, are bounded by `validation.MAX_PIXELS` before anything is; a
`file_name` must stay in the image folder (no absolute path, no `..`, no link out).
"""
import json
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
    """A pycocotools COCO index of `annotation_file`, after `check_instances`."""
    try:
        from pycocotools.coco import COCO
    except ImportError:
        raise ImportError("coco_voc_seg needs pycocotools: pip install "
                          "'deeplab_tf[coco]'") from None
    if not os.path.isfile(annotation_file):
        raise validation.DataError(f"{annotation_file}: annotation file does not exist")
    try:
        with open(annotation_file) as f:
            dataset = json.load(f)
    except (ValueError, UnicodeDecodeError) as error:
        raise validation.DataError(f"{annotation_file}: not a COCO instances file (invalid "
                                   f"JSON: {error})") from None
    check_instances(dataset, annotation_file)
    coco = COCO()
    coco.dataset = dataset
    coco.createIndex()
    coco.annotation_file = annotation_file
    return coco


def _check_segmentation(segmentation, image):
    """A polygon list (each polygon x,y pairs, at least 3 points) or an RLE of the image size."""
    if isinstance(segmentation, list):
        for polygon in segmentation:
            if not isinstance(polygon, list) or len(polygon) < 6 or len(polygon) % 2:
                length = len(polygon) if isinstance(polygon, list) else type(polygon).__name__
                return (f"a polygon needs x,y pairs of at least 3 points, got {length} "
                        f"numbers")
        return None if segmentation else "an empty polygon list"
    if isinstance(segmentation, dict) and "counts" in segmentation:
        size = list(segmentation.get("size", ()))
        if size != [image["height"], image["width"]]:
            return (f"RLE size {size} is not its image's {image['height']}x"
                    f"{image['width']}")
        return None
    return f"segmentation is neither polygons nor RLE ({type(segmentation).__name__})"


def _check_image(image, fail):
    """An image entry's size (positive integers, at most MAX_PIXELS: the label array is
    allocated from them) and file_name (a name inside the image folder)."""
    where = f"image {str(image['id'])[:40]}"
    height, width = image["height"], image["width"]
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
               for v in (height, width)):
        fail(f"{where}: height {str(height)[:40]} and width {str(width)[:40]} must be "
             f"positive integers")
    if height * width > validation.MAX_PIXELS:
        fail(f"{where}: {height}x{width} = {height * width:,} pixels is over the bound of "
             f"{validation.MAX_PIXELS:,} pixels")
    name = image["file_name"]
    if not isinstance(name, str) or not name:
        fail(f"{where}: file_name {str(name)[:40]} is not a file name")
    reason = validation.escape(name)
    if reason:
        fail(f"{where} has file_name {name!r}: {reason}, which leads out of the image "
             f"folder")


def check_instances(dataset, annotation_file):
    """Raises a DataError naming the file for anything pycocotools would misread."""
    def fail(message):
        raise validation.DataError(f"{annotation_file}: {message}")

    if not isinstance(dataset, dict):
        fail(f"not a COCO instances file (top level is a {type(dataset).__name__})")
    for key in ("images", "annotations", "categories"):
        if not isinstance(dataset.get(key), list):
            fail(f"not a COCO instances file (no '{key}' list)")
    images, categories = {}, set()
    for image in dataset["images"]:
        if not isinstance(image, dict) or not all(
                k in image for k in ("id", "file_name", "height", "width")):
            fail(f"image entry {str(image)[:80]} lacks id, file_name, height or width")
        _check_image(image, fail)
        images[image["id"]] = image
    for category in dataset["categories"]:
        if not isinstance(category, dict) or "id" not in category or "name" not in category:
            fail(f"category entry {str(category)[:80]} lacks id or name")
        categories.add(category["id"])
    for annotation in dataset["annotations"]:
        if not isinstance(annotation, dict):
            fail(f"annotation entry {str(annotation)[:80]} is not an object")
        where = f"annotation {annotation.get('id', '?')}"
        missing = [k for k in ("image_id", "category_id", "segmentation", "area")
                   if k not in annotation]
        if missing:
            fail(f"{where} lacks {', '.join(missing)}")
        if annotation["image_id"] not in images:
            fail(f"{where} names image id {annotation['image_id']}, which is not in "
                 f"'images'")
        if annotation["category_id"] not in categories:
            fail(f"{where} names category id {annotation['category_id']}, which is not in "
                 f"'categories'")
        problem = _check_segmentation(annotation["segmentation"],
                                      images[annotation["image_id"]])
        if problem:
            fail(f"{where}: {problem}")


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
        raise validation.DataError(f"{coco.annotation_file}: the categories lack VOC "
                                   f"classes {sorted(missing)}")
    return mapping


def voc_label(coco, image_info, mapping):
    """The VOC class map of one COCO image: VOC instances painted largest first."""
    label = np.zeros((image_info["height"], image_info["width"]), dtype=np.uint8)
    annotations = coco.loadAnns(coco.getAnnIds(imgIds=image_info["id"], iscrowd=None))
    annotations = [a for a in annotations if a["category_id"] in mapping]
    for annotation in sorted(annotations, key=lambda a: -a["area"]):
        try:
            mask = coco.annToMask(annotation).astype(bool)
        except (ValueError, TypeError) as error:  # e.g. RLE counts that do not decode
            raise validation.DataError(f"{coco.annotation_file}: annotation "
                                       f"{annotation.get('id', '?')} does not rasterise "
                                       f"({error})") from None
        label[mask] = mapping[annotation["category_id"]]
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
            link = os.path.isfile(image_path) and validation.link_out(image_path, image_dir)
            if link:
                raise validation.DataError(f"{annotation_file}: image {image_info['id']} "
                                           f"({image_info['file_name']!r}): {link}")
            yield image_info["file_name"], features.checked_example(
                image_path, label, annotation_file, image_info["file_name"], NUM_CLASSES,
                "jpeg")
