"""Bad input stops the build with an error naming the file and the problem; nothing is
dropped or clipped silently. VOC layout, SBD .mat files, COCO annotations, Cityscapes."""
import json
import os

import numpy as np
import pytest
import scipy.io
import tensorflow_datasets as tfds
from PIL import Image

from deeplab_tf import config as config_lib
from deeplab_tf import data
from deeplab_tf import synthetic

import data_layouts


@pytest.fixture
def source(tmp_path):
    """A tiny synthetic VOC layout (train 4, val 2) to break in one place."""
    directory = tmp_path / "source"
    synthetic.generate(str(directory), seed=5, num_train=4, num_val=2)
    return directory


def build(source, tmp_path, dataset="synthetic_voc"):
    return data.build(dataset, source, tmp_path / "tfds")


def expect_error(source, tmp_path, *patterns):
    with pytest.raises(data.DataError) as error:
        build(source, tmp_path)
    for pattern in patterns:
        assert pattern in str(error.value), str(error.value)


def test_intact_copy_builds(source, tmp_path):
    """The copy every other test breaks in one place builds whole: their errors come from
    the one change."""
    builder = build(source, tmp_path)
    assert {n: s.num_examples for n, s in builder.info.splits.items()} == {
        "train": 4, "val": 2, "trainval": 6}
    names = {ex["file_name"].decode() for ex in tfds.as_numpy(
        tfds.load("synthetic_voc", data_dir=str(tmp_path / "tfds"), split="trainval"))}
    assert names == {f"syn_{i:06d}" for i in range(6)}


def test_corrupt_image(source, tmp_path):
    path = source / "JPEGImages" / "syn_000001.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG" * 10)
    expect_error(source, tmp_path, str(path), "corrupt or truncated")


def test_truncated_image(source, tmp_path):
    path = source / "JPEGImages" / "syn_000002.jpg"
    path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])
    expect_error(source, tmp_path, str(path), "corrupt or truncated")


def test_image_label_size_mismatch(source, tmp_path):
    path = source / "SegmentationClass" / "syn_000003.png"
    label = np.array(Image.open(path))
    Image.fromarray(label[:-3]).save(path)
    expect_error(source, tmp_path, str(path), "does not match image",
                 str(source / "JPEGImages" / "syn_000003.jpg"))


@pytest.mark.parametrize("value", [21, 200])
def test_label_value_out_of_range(source, tmp_path, value):
    path = source / "SegmentationClass" / "syn_000000.png"
    label = np.array(Image.open(path))
    label[0, 0] = value
    Image.fromarray(label).save(path)
    expect_error(source, tmp_path, str(path), f"label values [{value}] outside [0, 21)")


def test_colour_label_png(source, tmp_path):
    path = source / "SegmentationClass" / "syn_000000.png"
    Image.open(path).convert("RGB").save(path)
    expect_error(source, tmp_path, str(path), "colour mode 'RGB'")


def test_split_names_a_missing_file(source, tmp_path):
    os.remove(source / "JPEGImages" / "syn_000004.jpg")
    expect_error(source, tmp_path, str(source / "ImageSets" / "Segmentation" / "val.txt"),
                 "line 1 names 'syn_000004'", "syn_000004.jpg does not exist")


def test_split_names_a_missing_label(source, tmp_path):
    os.remove(source / "SegmentationClass" / "syn_000001.png")
    expect_error(source, tmp_path, "train.txt", "line 2 names 'syn_000001'",
                 "syn_000001.png does not exist")


def test_empty_directory(source, tmp_path):
    for name in os.listdir(source / "JPEGImages"):
        os.remove(source / "JPEGImages" / name)
    expect_error(source, tmp_path, str(source / "JPEGImages"), "holds no *.jpg files")


def test_missing_split_list(source, tmp_path):
    os.remove(source / "ImageSets" / "Segmentation" / "trainval.txt")
    expect_error(source, tmp_path, "trainval.txt", "split list does not exist")


def test_cityscapes_label_id_outside_the_table(tmp_path):
    root = tmp_path / "cityscapes"
    for folder, suffix, array in (
            ("leftImg8bit", "leftImg8bit", np.zeros((8, 8, 3), np.uint8)),
            ("gtFine", "gtFine_labelIds", np.full((8, 8), 40, np.uint8))):
        for split in ("train", "val"):
            os.makedirs(root / folder / split / "ulm")
            Image.fromarray(array).save(root / folder / split / "ulm" /
                                        f"ulm_000000_000019_{suffix}.png")
    with pytest.raises(data.DataError, match=r"gtFine_labelIds.png: labelIds \[40\] are not"):
        data.build("cityscapes_seg", root, tmp_path / "tfds")


def test_class_count_that_does_not_match_the_data(source, tmp_path):
    build(source, tmp_path)
    config = config_lib.DataConfig(dataset="synthetic_voc", data_dir=str(tmp_path / "tfds"),
                                   num_classes=19)
    with pytest.raises(ValueError, match=r"synthetic_voc.*has 21 classes, but "
                                         r"data.num_classes is 19"):
        data.train_input(config, 2)
    with pytest.raises(ValueError, match=r"has 21 classes"):
        data.eval_input(config, "val", 16)


# ---------------------------------------------------------------- SBD .mat files

def broken_sbd(tmp_path, contents):
    """A VOC + SBD copy whose first SBD-only .mat file holds `contents` (bytes or a dict
    for scipy.io.savemat); returns (manual_dir, the .mat path)."""
    manual = tmp_path / "manual"
    layout = data_layouts.make_voc_with_sbd(manual, np.random.default_rng(0), "mat")
    path = manual / "benchmark_RELEASE" / "dataset" / "cls" / f"{layout.extra[0]}.mat"
    if isinstance(contents, bytes):
        path.write_bytes(contents)
    else:
        scipy.io.savemat(str(path), contents)
    return manual, path


@pytest.mark.parametrize("contents,message", [
    (b"MATLAB 5.0 MAT-file, truncated" * 3, "not a readable MATLAB .mat file"),
    ({"inst": np.zeros((3, 3))}, "no GTcls.Segmentation"),
    ({"GTcls": {"Boundaries": np.zeros(1)}}, "no GTcls.Segmentation"),
    ({"GTcls": {"Segmentation": np.zeros((4, 5, 2), np.uint8)}},
     "GTcls.Segmentation is not a 2-D map of class ids (shape (4, 5, 2)"),
    ({"GTcls": {"Segmentation": np.full((4, 5), 300, np.uint16)}},
     "holds values that are not class ids 0..255"),
    ({"GTcls": {"Segmentation": np.full((4, 5), 0.5)}},
     "holds values that are not class ids 0..255"),
], ids=["not_mat", "no_gtcls", "no_segmentation", "3d", "300", "fraction"])
def test_sbd_mat_file_that_is_not_a_class_map(tmp_path, contents, message):
    manual, path = broken_sbd(tmp_path, contents)
    with pytest.raises(data.DataError) as error:
        data.build("pascal_voc_seg", manual, tmp_path / "tfds")
    assert str(path) in str(error.value) and message in str(error.value), str(error.value)


def test_sbd_mat_class_out_of_range_and_wrong_size(tmp_path):
    manual, path = broken_sbd(tmp_path, {"GTcls": {"Segmentation": np.full((7, 9), 30,
                                                                           np.uint8)}})
    with pytest.raises(data.DataError) as error:
        data.build("pascal_voc_seg", manual, tmp_path / "tfds")
    assert str(path) in str(error.value) and "label size 7x9 does not match image" in str(
        error.value)
    image = Image.open(manual / "VOCdevkit" / "VOC2012" / "JPEGImages" /
                       (path.stem + ".jpg"))
    data_layouts.write_sbd_mat(path, np.full((image.height, image.width), 30, np.uint8))
    with pytest.raises(data.DataError) as error:
        data.build("pascal_voc_seg", manual, tmp_path / "tfds2")
    assert f"{path}: label values [30] outside [0, 21)" in str(error.value)


def test_sbd_list_names_a_file_without_annotation(tmp_path):
    manual, path = broken_sbd(tmp_path, b"")
    os.remove(path)
    with pytest.raises(data.DataError) as error:
        data.build("pascal_voc_seg", manual, tmp_path / "tfds")
    listed = manual / "benchmark_RELEASE" / "dataset" / "train.txt"
    assert f"{listed}: line 1 names '{path.stem}'" in str(error.value), str(error.value)


# ---------------------------------------------------------------- COCO annotations

def broken_coco(tmp_path, change):
    """A COCO copy whose instances file `change(dataset)` has edited; returns its path."""
    layout = data_layouts.make_coco(tmp_path / "manual", np.random.default_rng(2))
    dataset = json.loads(json.dumps(layout.dataset))
    replaced = change(dataset)
    data_layouts.write_coco_json(layout.annotation_file,
                                 dataset if replaced is None else replaced)
    return layout


def _set(container, key, value):
    container[key] = value


def _image_size_differs(dataset):
    """Image 1 declared 59 pixels high (its JPEG has 60); its RLE instance dropped, whose
    size would not match either."""
    dataset["images"][0]["height"] = 59
    dataset["annotations"] = [a for a in dataset["annotations"] if a["id"] != 2]


def _remove_voc_class(dataset):
    dataset["categories"] = [c for c in dataset["categories"] if c["name"] != "couch"]
    dataset["annotations"] = [a for a in dataset["annotations"] if a["category_id"] in
                              {c["id"] for c in dataset["categories"]}]


@pytest.mark.parametrize("change,message", [
    (lambda d: [d], "not a COCO instances file (top level is a list)"),
    (lambda d: d.pop("annotations") and None, "no 'annotations' list"),
    (lambda d: d.pop("images") and None, "no 'images' list"),
    (lambda d: _set(d["annotations"][0], "image_id", 99), "annotation 1 names image id 99"),
    (lambda d: _set(d["annotations"][1], "category_id", 5),
     "annotation 2 names category id 5, which is not in 'categories'"),
    (lambda d: d["annotations"][0].pop("segmentation") and None,
     "annotation 1 lacks segmentation"),
    (lambda d: _set(d["annotations"][0], "segmentation", [[10, 10, 50, 10, 50]]),
     "annotation 1: a polygon needs x,y pairs of at least 3 points, got 5 numbers"),
    (lambda d: _set(d["annotations"][1]["segmentation"], "size", [30, 40]),
     "annotation 2: RLE size [30, 40] is not its image's 60x80"),
    (lambda d: _set(d["annotations"][1]["segmentation"], "counts", "not RLE counts"),
     "annotation 2 does not rasterise"),
    (_image_size_differs, "label size 59x80 does not match image"),
    (_remove_voc_class, "the categories lack VOC classes ['sofa']"),
], ids=["list", "no_annotations", "no_images", "dangling_image", "dangling_category",
        "no_segmentation", "odd_polygon", "rle_size", "rle_counts", "image_size",
        "voc_class_missing"])
def test_coco_annotation_file_problems(tmp_path, change, message):
    layout = broken_coco(tmp_path, change)
    with pytest.raises(data.DataError) as error:
        data.build("coco_voc_seg", layout.root, tmp_path / "tfds")
    assert str(layout.annotation_file) in str(error.value), str(error.value)
    assert message in str(error.value), str(error.value)


def test_coco_invalid_json_and_missing_image(tmp_path):
    layout = data_layouts.make_coco(tmp_path / "manual", np.random.default_rng(2))
    text = layout.annotation_file.read_text()
    layout.annotation_file.write_text(text[:-20])
    with pytest.raises(data.DataError, match=r"instances_val2017.json: not a COCO instances "
                                             r"file \(invalid JSON"):
        data.build("coco_voc_seg", layout.root, tmp_path / "tfds")
    layout.annotation_file.write_text(text)
    image = layout.root / "val2017" / "000000000001.jpg"
    os.remove(image)
    with pytest.raises(data.DataError, match=f"{image}: image file does not exist"):
        data.build("coco_voc_seg", layout.root, tmp_path / "tfds")


# ---------------------------------------------------------------- Cityscapes

def cityscapes_copy(tmp_path):
    root = tmp_path / "cityscapes"
    data_layouts.make_cityscapes(root, np.random.default_rng(3))
    return root


def test_cityscapes_image_without_its_label(tmp_path):
    root = cityscapes_copy(tmp_path)
    label = root / "gtFine" / "val" / "lindau" / "lindau_000001_000019_gtFine_labelIds.png"
    os.remove(label)
    with pytest.raises(data.DataError) as error:
        data.build("cityscapes_seg", root, tmp_path / "tfds")
    assert "lindau_000001_000019_leftImg8bit.png: no label" in str(error.value)
    assert str(label) in str(error.value)


def test_cityscapes_coarse_label_missing_for_train_extra(tmp_path):
    root = cityscapes_copy(tmp_path)
    label = root / "gtCoarse" / "train_extra" / "erfurt" / \
        "erfurt_000000_000019_gtCoarse_labelIds.png"
    os.remove(label)
    with pytest.raises(data.DataError, match=f"no label {label}"):
        data.build("cityscapes_seg", root, tmp_path / "tfds")


@pytest.mark.parametrize("problem", ["size", "colour_label", "jpeg_image", "truncated_image"])
def test_cityscapes_bad_files(tmp_path, problem):
    root = cityscapes_copy(tmp_path)
    city = root / "leftImg8bit" / "train" / "bonn"
    image = city / "bonn_000000_000019_leftImg8bit.png"
    label = root / "gtFine" / "train" / "bonn" / "bonn_000000_000019_gtFine_labelIds.png"
    if problem == "size":
        Image.fromarray(np.array(Image.open(label))[:, :-2]).save(label)
        expected = (label, "label size 16x30 does not match image")
    elif problem == "colour_label":  # gtFine_color saved under the labelIds name
        Image.open(label).convert("RGB").save(label)
        expected = (label, "colour mode 'RGB'")
    elif problem == "jpeg_image":
        Image.open(image).save(image, format="JPEG")
        expected = (image, "expected a PNG image, found JPEG")
    else:
        image.write_bytes(image.read_bytes()[:60])
        expected = (image, "corrupt or truncated image")
    with pytest.raises(data.DataError) as error:
        data.build("cityscapes_seg", root, tmp_path / "tfds")
    assert f"{expected[0]}: " in str(error.value) and expected[1] in str(error.value), \
        str(error.value)


def test_cityscapes_split_without_images(tmp_path):
    root = cityscapes_copy(tmp_path)
    for path in (root / "leftImg8bit" / "val" / "lindau").iterdir():
        os.remove(path)
    with pytest.raises(data.DataError, match=f"{root / 'leftImg8bit' / 'val' / 'lindau'}: "
                                             "directory holds no"):
        data.build("cityscapes_seg", root, tmp_path / "tfds")
    os.rmdir(root / "leftImg8bit" / "val" / "lindau")
    with pytest.raises(data.DataError, match=f"{root / 'leftImg8bit' / 'val'}: no "):
        data.build("cityscapes_seg", root, tmp_path / "tfds")
