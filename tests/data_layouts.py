"""Small copies of the real data set layouts, written by the tests (nothing is downloaded).

PASCAL VOC 2012 + SBD, Cityscapes (fine and coarse) and COCO, each in the directory layout
its builder's docstring gives (deeplab_tf/data/), with the exact pixels and labels kept so
that a test can compare what a build reads back.
"""
import json
import os
import types

import numpy as np
import scipy.io
from PIL import Image

from deeplab_tf import visualization


def write_jpeg(path, rng, height, width):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(
        path, quality=90)


def write_sbd_mat(path, segmentation):
    """An SBD cls/*.mat file: the struct GTcls with Segmentation, Boundaries, Categories."""
    scipy.io.savemat(str(path), {"GTcls": {
        "Segmentation": segmentation, "Boundaries": np.zeros(1),
        "CategoriesPresent": np.unique(segmentation)}})


def _shifted(label, shift):
    """The same map with every class id moved by `shift` (mod 21); 255 stays 255."""
    return np.where(label == 255, 255, (label.astype(np.int64) + shift) % 21).astype(np.uint8)


def make_voc_with_sbd(root, rng, sbd="mat"):
    """VOCdevkit/VOC2012 with 4 train and 3 val images, plus SBD over 6 more images,
    2 VOC val and 1 VOC train ones.

    `sbd`: "mat" (benchmark_RELEASE/dataset/cls/*.mat, the last extra image only in SBD's
    img/ folder), "aug" (the SegmentationClassAug folder) or "both". Where a name has
    several annotations they differ, so a test sees which one the build took: SBD's are
    VOC's shifted by one class, and with "both" the .mat files by two more.
    Returns a namespace: voc (the VOC2012 path), labels (VOC's map where VOC has one, else
    SBD's), images (paths), voc_train, voc_val, extra (SBD-only names), sbd_labels.
    """
    voc = root / "VOCdevkit" / "VOC2012"
    names = [f"2008_{i:06d}" for i in range(13)]
    voc_train, voc_val, extra = names[:4], names[4:7], names[7:]
    labels, images = {}, {}
    for name in names:
        height, width = rng.integers(20, 40, size=2)
        images[name] = voc / "JPEGImages" / f"{name}.jpg"
        if sbd == "mat" and name == extra[-1]:
            images[name] = root / "benchmark_RELEASE" / "dataset" / "img" / f"{name}.jpg"
        write_jpeg(str(images[name]), rng, height, width)
        label = rng.integers(0, 21, (height, width), dtype=np.uint8)
        label[0] = 255  # VOC's void border
        labels[name] = label
    os.makedirs(voc / "SegmentationClass")
    for name in voc_train + voc_val:
        visualization.label_png(labels[name], visualization.voc_palette()).save(
            voc / "SegmentationClass" / f"{name}.png")
    os.makedirs(voc / "ImageSets" / "Segmentation")
    for split, split_names in (("train", voc_train), ("val", voc_val),
                               ("trainval", voc_train + voc_val)):
        (voc / "ImageSets" / "Segmentation" / f"{split}.txt").write_text(
            "".join(n + "\n" for n in split_names))
    sbd_names = extra + voc_val[:2] + voc_train[:1]
    sbd_labels = {n: labels[n] if n in extra else _shifted(labels[n], 1) for n in sbd_names}
    if sbd in ("aug", "both"):
        os.makedirs(root / "SegmentationClassAug")
        for name in sbd_names:
            Image.fromarray(sbd_labels[name]).save(root / "SegmentationClassAug" /
                                                   f"{name}.png")
    if sbd in ("mat", "both"):
        dataset = root / "benchmark_RELEASE" / "dataset"
        os.makedirs(dataset / "cls")
        for name in sbd_names:
            write_sbd_mat(dataset / "cls" / f"{name}.mat",
                          _shifted(sbd_labels[name], 2) if sbd == "both" else sbd_labels[name])
        (dataset / "train.txt").write_text("".join(n + "\n" for n in sbd_names[:4]))
        (dataset / "val.txt").write_text("".join(n + "\n" for n in sbd_names[4:]))
    return types.SimpleNamespace(voc=voc, labels=labels, images=images, voc_train=voc_train,
                                 voc_val=voc_val, extra=extra, sbd_labels=sbd_labels)


CITYSCAPES_COUNTS = (("gtFine", "train", "aachen", 2), ("gtFine", "train", "bonn", 1),
                     ("gtFine", "val", "lindau", 2), ("gtCoarse", "train_extra", "erfurt", 2))


def make_cityscapes(root, rng, counts=CITYSCAPES_COUNTS, size=(16, 32)):
    """leftImg8bit + gtFine (+ gtCoarse) PNGs with random labelIds 0..33.

    Returns {name: (image, label ids)}; `counts` rows are (annotation, split, city, n).
    """
    sources = {}
    for annotation, split, city, count in counts:
        for i in range(count):
            name = f"{city}_{i:06d}_000019"
            image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            ids = rng.integers(0, 34, size).astype(np.uint8)
            for folder, suffix, array in (("leftImg8bit", "leftImg8bit", image),
                                          (annotation, f"{annotation}_labelIds", ids)):
                os.makedirs(root / folder / split / city, exist_ok=True)
                Image.fromarray(array).save(root / folder / split / city /
                                            f"{name}_{suffix}.png")
            sources[name] = (image, ids)
    return sources


# The COCO names of the 20 VOC classes (person is added with its own id below).
COCO_VOC_NAMES = ("airplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
                  "cow", "dining table", "dog", "horse", "motorcycle", "potted plant",
                  "sheep", "couch", "train", "tv")


def coco_categories():
    """person (1), chair (62), toilet (70, not VOC), and the other VOC classes at 100+."""
    categories = [{"id": 1, "name": "person"}, {"id": 62, "name": "chair"},
                  {"id": 70, "name": "toilet"}]
    return categories + [{"id": 100 + i, "name": n} for i, n in enumerate(COCO_VOC_NAMES)]


def make_coco(root, rng, folder="val2017"):
    """Three images and four instances in annotations/instances_{folder}.json.

    Image 1 (60x80): a 40x30 person polygon (1200 px) under a crowd chair given as RLE;
    image 2: a toilet (not VOC) and a 100 px person (< 1000 px: not kept); image 3: none.
    Returns a namespace: root, annotation_file, dataset (the JSON dict), rle_mask.
    """
    from pycocotools import mask as mask_api
    sizes = {1: (60, 80), 2: (60, 80), 3: (50, 40)}
    for image_id, (height, width) in sizes.items():
        write_jpeg(str(root / folder / f"{image_id:012d}.jpg"), rng, height, width)
    rle_mask = np.zeros((60, 80), dtype=np.uint8, order="F")
    rle_mask[5:15, 50:70] = 1
    rle = mask_api.encode(rle_mask)
    rle["counts"] = rle["counts"].decode()
    annotations = [
        {"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 1200.0,
         "segmentation": [[10, 10, 50, 10, 50, 40, 10, 40]], "bbox": [10, 10, 40, 30]},
        {"id": 2, "image_id": 1, "category_id": 62, "iscrowd": 1, "area": 200.0,
         "segmentation": rle, "bbox": [50, 5, 20, 10]},
        {"id": 3, "image_id": 2, "category_id": 70, "iscrowd": 0, "area": 2400.0,
         "segmentation": [[0, 0, 60, 0, 60, 40, 0, 40]], "bbox": [0, 0, 60, 40]},
        {"id": 4, "image_id": 2, "category_id": 1, "iscrowd": 0, "area": 100.0,
         "segmentation": [[0, 0, 10, 0, 10, 10, 0, 10]], "bbox": [0, 0, 10, 10]},
    ]
    images = [{"id": i, "file_name": f"{i:012d}.jpg", "height": h, "width": w}
              for i, (h, w) in sizes.items()]
    dataset = {"images": images, "annotations": annotations, "categories": coco_categories()}
    annotation_file = root / "annotations" / f"instances_{folder}.json"
    write_coco_json(annotation_file, dataset)
    return types.SimpleNamespace(root=root, annotation_file=annotation_file, dataset=dataset,
                                 rle_mask=rle_mask)


def write_coco_json(path, dataset):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(dataset, f)
