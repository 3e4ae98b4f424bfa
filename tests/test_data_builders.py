"""Each TFDS builder builds from generated files in the real layout and reads back exactly
the pixels and labels it was given (paper 4: VOC + SBD train_aug, Cityscapes, COCO->VOC)."""
import json
import os

import numpy as np
import pytest
import scipy.io
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from deeplab_tf import data, visualization
from deeplab_tf.data import synthetic


def read_split(data_dir, name, split):
    """{file_name: (image, label, classes)} of a built split, decoded by TFDS."""
    dataset = tfds.load(name, data_dir=data_dir, split=split)
    return {ex["file_name"].decode(): (ex["image"], ex["label"][..., 0], ex["classes"])
            for ex in tfds.as_numpy(dataset)}


def decoded(path):
    """The source file decoded by TensorFlow (JPEG is lossy: compare decoded bytes)."""
    return tf.io.decode_image(tf.io.read_file(path), channels=3).numpy()


def write_jpeg(path, rng, height, width):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(
        path, quality=90)


def test_synthetic_is_deterministic_and_seeded():
    a = synthetic.make_scene(seed=3, index=5)
    b = synthetic.make_scene(seed=3, index=5)
    c = synthetic.make_scene(seed=4, index=5)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert a[0].shape != c[0].shape or not np.array_equal(a[0], c[0])
    image, label = a
    assert image.dtype == np.uint8 and label.shape == image.shape[:2]
    assert set(np.unique(label)) <= set(synthetic.CLASSES) | {0, 255}


def test_synthetic_voc_reads_back_exactly(synthetic_voc):
    builder = tfds.builder("synthetic_voc", data_dir=synthetic_voc.data_dir)
    counts = {name: split.num_examples for name, split in builder.info.splits.items()}
    assert counts == {"train": 16, "val": 6, "trainval": 22}
    examples = read_split(synthetic_voc.data_dir, "synthetic_voc", "trainval")
    assert sorted(examples) == sorted(synthetic_voc.splits["trainval"])
    for name, (image, label, classes) in examples.items():
        png = Image.open(os.path.join(synthetic_voc.source_dir, "SegmentationClass",
                                      name + ".png"))
        assert png.mode == "P"
        np.testing.assert_array_equal(label, np.array(png))
        np.testing.assert_array_equal(image, decoded(os.path.join(
            synthetic_voc.source_dir, "JPEGImages", name + ".jpg")))
        present = np.unique(np.array(png))
        np.testing.assert_array_equal(classes, present[present != 255])


def make_voc_with_sbd(root, rng, aug_folder=False):
    """A VOCdevkit/VOC2012 copy with 4 train and 3 val images, plus SBD (as .mat files or
    as the SegmentationClassAug folder) over 6 more images and 2 VOC val and 1 VOC train."""
    voc = root / "VOCdevkit" / "VOC2012"
    names = [f"2008_{i:06d}" for i in range(13)]
    voc_train, voc_val, extra = names[:4], names[4:7], names[7:]
    labels = {}
    for name in names:
        height, width = rng.integers(20, 40, size=2)
        write_jpeg(str(voc / "JPEGImages" / f"{name}.jpg"), rng, height, width)
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
    if aug_folder:
        os.makedirs(root / "SegmentationClassAug")
        for name in sbd_names:
            Image.fromarray(labels[name]).save(root / "SegmentationClassAug" / f"{name}.png")
    else:
        sbd = root / "benchmark_RELEASE" / "dataset"
        os.makedirs(sbd / "cls")
        for name in sbd_names:
            scipy.io.savemat(str(sbd / "cls" / f"{name}.mat"), {"GTcls": {
                "Segmentation": labels[name], "Boundaries": np.zeros(1),
                "CategoriesPresent": np.unique(labels[name])}})
        (sbd / "train.txt").write_text("".join(n + "\n" for n in sbd_names[:4]))
        (sbd / "val.txt").write_text("".join(n + "\n" for n in sbd_names[4:]))
    return voc, labels, voc_train, voc_val, extra


@pytest.mark.parametrize("aug_folder", [False, True], ids=["sbd_mat", "aug_png"])
def test_pascal_voc_train_aug_excludes_val(tmp_path, aug_folder):
    voc, labels, voc_train, voc_val, extra = make_voc_with_sbd(
        tmp_path / "manual", np.random.default_rng(0), aug_folder)
    builder = data.build("pascal_voc_seg", tmp_path / "manual", tmp_path / "tfds")
    counts = {name: split.num_examples for name, split in builder.info.splits.items()}
    assert counts == {"train": 4, "val": 3, "trainval": 7, "train_aug": 4 + 6}
    train_aug = read_split(str(tmp_path / "tfds"), "pascal_voc_seg", "train_aug")
    assert sorted(train_aug) == sorted(voc_train + extra)
    assert not set(train_aug) & set(voc_val)
    for name, (image, label, _) in train_aug.items():
        np.testing.assert_array_equal(label, labels[name])
        np.testing.assert_array_equal(image, decoded(str(voc / "JPEGImages" / f"{name}.jpg")))


CITYSCAPES_IDS = np.arange(34)


def make_cityscapes(root, rng, counts=(("train", "aachen", 2), ("train", "bonn", 1),
                                       ("val", "lindau", 2))):
    label_ids = {}
    for split, city, count in counts:
        for i in range(count):
            name = f"{city}_{i:06d}_000019"
            image = rng.integers(0, 256, (16, 32, 3), dtype=np.uint8)
            ids = rng.choice(CITYSCAPES_IDS, (16, 32)).astype(np.uint8)
            for folder, suffix, array in (("leftImg8bit", "leftImg8bit", image),
                                          ("gtFine", "gtFine_labelIds", ids)):
                os.makedirs(root / folder / split / city, exist_ok=True)
                Image.fromarray(array).save(root / folder / split / city /
                                            f"{name}_{suffix}.png")
            label_ids[name] = (image, ids)
    return label_ids


def test_cityscapes_maps_label_ids_with_the_official_table(tmp_path):
    labels_module = pytest.importorskip("cityscapesscripts.helpers.labels")
    table = np.full(256, 255, dtype=np.uint8)
    for label in labels_module.labels:  # the independent source of the mapping
        if label.id >= 0 and label.trainId not in (-1, 255):
            table[label.id] = label.trainId
    sources = make_cityscapes(tmp_path / "manual", np.random.default_rng(1))
    builder = data.build("cityscapes_seg", tmp_path / "manual", tmp_path / "tfds")
    assert {n: s.num_examples for n, s in builder.info.splits.items()} == {
        "train": 3, "val": 2}
    assert builder.info.features["classes"].feature.num_classes == 19
    for split in ("train", "val"):
        for name, (image, label, _) in read_split(str(tmp_path / "tfds"), "cityscapes_seg",
                                                  split).items():
            source_image, ids = sources[name]
            np.testing.assert_array_equal(image, source_image)  # PNG: lossless
            np.testing.assert_array_equal(label, table[ids])


def test_coco_keeps_voc_classes_and_large_regions(tmp_path):
    mask_api = pytest.importorskip("pycocotools.mask")
    root = tmp_path / "manual"
    rng = np.random.default_rng(2)
    sizes = {1: (60, 80), 2: (60, 80), 3: (50, 40)}
    for image_id, (height, width) in sizes.items():
        write_jpeg(str(root / "val2017" / f"{image_id:012d}.jpg"), rng, height, width)
    categories = [{"id": 1, "name": "person"}, {"id": 62, "name": "chair"},
                  {"id": 70, "name": "toilet"}]
    voc_names = ["airplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
                 "cow", "dining table", "dog", "horse", "motorcycle", "potted plant",
                 "sheep", "couch", "train", "tv"]
    categories += [{"id": 100 + i, "name": n} for i, n in enumerate(voc_names)]
    rle_mask = np.zeros((60, 80), dtype=np.uint8, order="F")
    rle_mask[5:15, 50:70] = 1
    rle = mask_api.encode(rle_mask)
    rle["counts"] = rle["counts"].decode()
    annotations = [
        # image 1: a 40x30 person rectangle (1200 px) with a chair (RLE, crowd) on top.
        {"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 1200.0,
         "segmentation": [[10, 10, 50, 10, 50, 40, 10, 40]], "bbox": [10, 10, 40, 30]},
        {"id": 2, "image_id": 1, "category_id": 62, "iscrowd": 1, "area": 200.0,
         "segmentation": rle, "bbox": [50, 5, 20, 10]},
        # image 2: a toilet (not VOC: background) and a small person (< 1000 px): dropped.
        {"id": 3, "image_id": 2, "category_id": 70, "iscrowd": 0, "area": 2400.0,
         "segmentation": [[0, 0, 60, 0, 60, 40, 0, 40]], "bbox": [0, 0, 60, 40]},
        {"id": 4, "image_id": 2, "category_id": 1, "iscrowd": 0, "area": 100.0,
         "segmentation": [[0, 0, 10, 0, 10, 10, 0, 10]], "bbox": [0, 0, 10, 10]},
    ]
    images = [{"id": i, "file_name": f"{i:012d}.jpg", "height": h, "width": w}
              for i, (h, w) in sizes.items()]
    os.makedirs(root / "annotations")
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(
        {"images": images, "annotations": annotations, "categories": categories}))
    builder = data.build("coco_voc_seg", root, tmp_path / "tfds")
    assert {n: s.num_examples for n, s in builder.info.splits.items()} == {"val": 1}
    (name, (image, label, classes)), = read_split(str(tmp_path / "tfds"), "coco_voc_seg",
                                                  "val").items()
    assert name == "000000000001.jpg"
    np.testing.assert_array_equal(image, decoded(str(root / "val2017" / name)))
    person, chair = visualization.VOC_CLASSES.index("person"), \
        visualization.VOC_CLASSES.index("chair")
    np.testing.assert_array_equal(label[rle_mask.astype(bool)], chair)  # RLE, exact
    np.testing.assert_array_equal(label[12:39, 12:49], person)  # polygon interior
    assert (label[45:] == 0).all() and (label[:, :9] == 0).all()
    assert classes.tolist() == sorted([0, person, chair])


def test_command_line_tools(tmp_path):
    """make_synthetic writes the same files for the same seed; build_dataset builds them;
    tfds.load reads them back once deeplab_tf.data is imported."""
    import subprocess
    import sys

    def run(*args):
        return subprocess.run([sys.executable, "-m", *args], check=True, capture_output=True,
                              text=True, cwd=os.path.dirname(os.path.dirname(__file__))).stdout

    assert run("tools.build_dataset", "--list").split() == list(data.BUILDERS)
    source, again = tmp_path / "source", tmp_path / "again"
    run("tools.make_synthetic", f"--output_dir={source}", "--num_train=3", "--num_val=2")
    synthetic.generate(str(again), seed=0, num_train=3, num_val=2)
    files = sorted(p.relative_to(source) for p in source.rglob("*") if p.is_file())
    assert len(files) == 5 + 5 + 3
    assert all((source / f).read_bytes() == (again / f).read_bytes() for f in files)
    output = run("tools.build_dataset", "--dataset=synthetic_voc", f"--manual_dir={source}",
                 f"--data_dir={tmp_path / 'tfds'}")
    assert "train 3, trainval 5, val 2" in output
    assert len(tfds.load("synthetic_voc", split="val", data_dir=str(tmp_path / "tfds"))) == 2
