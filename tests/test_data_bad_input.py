"""Bad input stops the build with an error naming the file and the problem; nothing is
dropped or clipped silently."""
import os

import numpy as np
import pytest
from PIL import Image

from deeplab_tf import config as config_lib
from deeplab_tf import data
from deeplab_tf.data import synthetic


@pytest.fixture
def source(tmp_path):
    """A tiny synthetic VOC layout (train 4, val 2) to break in one place."""
    directory = tmp_path / "source"
    synthetic.generate(str(directory), seed=5, num_train=4, num_val=2)
    return directory


def build(source, tmp_path, dataset="synthetic_voc"):
    data.build(dataset, source, tmp_path / "tfds")


def expect_error(source, tmp_path, *patterns):
    with pytest.raises(data.DataError) as error:
        build(source, tmp_path)
    for pattern in patterns:
        assert pattern in str(error.value), str(error.value)


def test_intact_copy_builds(source, tmp_path):
    build(source, tmp_path)


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
