"""One's own data (`custom_seg/NAME`): a generated CVAT "Segmentation mask 1.1" export and a
plain images/ + masks/ folder build, and read back exactly: every pixel of every mask, the
split membership, the seeded hold-out (the same on a second build), the recorded class
table and counts; the input pipeline trains and evaluates on them by name."""
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from deeplab_tf import config as config_lib
from deeplab_tf import data, synthetic_exports, visualization
from deeplab_tf.data import own_layout

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read_split(data_dir, dataset, split):
    """{file_name: (image, label, classes)} of a built split, decoded by TFDS."""
    return {ex["file_name"].decode(): (ex["image"], ex["label"][..., 0], ex["classes"])
            for ex in tfds.as_numpy(tfds.load(dataset, data_dir=str(data_dir),
                                              split=split))}


def decoded(path):
    return tf.io.decode_image(tf.io.read_file(str(path)), channels=3).numpy()


def expected_holdout(names, fraction, seed):
    """The hold-out, computed here from its definition: `fraction` of the sorted names
    (rounded, at least one), the first of a seeded permutation."""
    names = sorted(names)
    count = max(1, int(round(fraction * len(names))))
    order = np.random.default_rng(seed).permutation(len(names))
    return sorted(names[i] for i in order[:count])


@pytest.fixture(scope="module")
def cvat(tmp_path_factory):
    """A CVAT export of 12 images (outlines in the ignore colour) built as custom_seg/cvat."""
    root = tmp_path_factory.mktemp("custom")
    export = synthetic_exports.write_cvat_export(root / "export", seed=0, num_images=12,
                                                 min_size=24, max_size=40, void_border=True)
    builder = data.build("custom_seg/cvat", root / "export", root / "tfds")
    return export, builder, root / "tfds"


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    root = tmp_path_factory.mktemp("plain")
    export = synthetic_exports.write_plain_folder(root / "export", seed=1, num_images=7,
                                                  min_size=20, max_size=32)
    builder = data.build("custom_seg/plain", root / "export", root / "tfds",
                         val_fraction=0.3, split_seed=4)
    return export, builder, root / "tfds"


def check_reads_back(export, data_dir, dataset, splits, lossless):
    seen = []
    for split, names in splits.items():
        examples = read_split(data_dir, dataset, split)
        assert sorted(examples) == sorted(names), split
        for name, (image, label, classes) in examples.items():
            np.testing.assert_array_equal(label, export.labels[name], err_msg=name)
            source = export.images[name] if lossless else decoded(
                os.path.join(export.root, "JPEGImages", name + ".jpg"))
            np.testing.assert_array_equal(image, source, err_msg=name)
            present = np.unique(export.labels[name])
            np.testing.assert_array_equal(classes, present[present != 255])
            seen.append(name)
    assert sorted(seen) == export.names  # every image in exactly one split


def pixel_counts(export, names, num_classes):
    total = sum(np.bincount(export.labels[n].ravel(), minlength=256) for n in names)
    return total[:num_classes].tolist(), int(total[255])


def check_metadata(builder, export, data_dir, dataset, splits):
    built = tfds.builder(dataset, data_dir=str(data_dir))  # as training finds it
    assert built.is_prepared()
    assert {n: s.num_examples for n, s in built.info.splits.items()} == {
        s: len(n) for s, n in splits.items()}
    assert built.info.features["classes"].feature.names == list(export.table.names)
    metadata = built.info.metadata
    assert metadata["split_counts"] == {s: len(n) for s, n in splits.items()}
    for split, names in splits.items():
        counts, ignored = pixel_counts(export, names, export.table.num_classes)
        assert metadata["pixel_counts"][split] == counts and \
            metadata["ignored_pixels"][split] == ignored, split
    assert data.class_table(dataset, str(data_dir)) == export.table
    assert builder.info.metadata == metadata


def test_cvat_export_reads_back_exactly(cvat):
    export, builder, data_dir = cvat
    val = expected_holdout(export.names, 0.2, 0)
    splits = {"train": sorted(set(export.names) - set(val)), "val": val}
    assert len(val) == 2
    check_reads_back(export, data_dir, "custom_seg/cvat", splits, lossless=False)
    check_metadata(builder, export, data_dir, "custom_seg/cvat", splits)
    assert builder.info.features["image"].encoding_format == "jpeg"
    assert builder.info.metadata["source"]["held_out_from"] == "default"
    assert sum(builder.info.metadata["ignored_pixels"].values()) > 0  # the ignore colour


def test_plain_folder_reads_back_exactly(plain):
    export, builder, data_dir = plain
    val = expected_holdout(export.names, 0.3, 4)
    splits = {"train": sorted(set(export.names) - set(val)), "val": val}
    check_reads_back(export, data_dir, "custom_seg/plain", splits, lossless=True)
    check_metadata(builder, export, data_dir, "custom_seg/plain", splits)
    # classes.txt gives car's colour; background and person take the first free VOC ones.
    assert export.table.colors == ((0, 0, 0), (250, 50, 83), (128, 0, 0))
    assert builder.info.features["image"].encoding_format == "png"


def test_the_hold_out_is_the_same_on_every_build(cvat, tmp_path):
    """A second build of the same files (listed in another order) holds out the same
    images; another seed holds out others."""
    export, builder, data_dir = cvat
    listing = os.path.join(export.root, "ImageSets", "Segmentation", "default.txt")
    with open(listing) as f:
        lines = f.readlines()
    with open(listing, "w") as f:
        f.writelines(reversed(lines))
    try:
        again = data.build("custom_seg/cvat", export.root, tmp_path / "tfds")
        data.build("custom_seg/other_seed", export.root, tmp_path / "tfds",
                   split_seed=1)
    finally:
        with open(listing, "w") as f:
            f.writelines(lines)
    assert sorted(read_split(tmp_path / "tfds", "custom_seg/cvat", "val")) == sorted(
        read_split(data_dir, "custom_seg/cvat", "val"))
    assert again.info.metadata["split_counts"] == builder.info.metadata["split_counts"]
    assert sorted(read_split(tmp_path / "tfds", "custom_seg/other_seed", "val")) == \
        expected_holdout(export.names, 0.2, 1) != expected_holdout(export.names, 0.2, 0)


def test_list_files_are_splits_and_palette_masks_are_read_by_index(tmp_path):
    """A VOC-style tree with train.txt and val.txt and palette PNGs whose palette is not
    the labelmap's colours: the lists are the splits (no hold-out), the indices the ids."""
    export = synthetic_exports.write_cvat_export(tmp_path / "export", seed=2, num_images=5,
                                                 min_size=16, max_size=24)
    lists = tmp_path / "export" / "ImageSets" / "Segmentation"
    os.remove(lists / "default.txt")
    (lists / "train.txt").write_text("".join(n + "\n" for n in export.names[:3]))
    (lists / "val.txt").write_text("".join(n + "\n" for n in export.names[3:]))
    for name, label in export.labels.items():
        visualization.label_png(label, visualization.voc_palette()).save(
            tmp_path / "export" / "SegmentationClass" / f"{name}.png")
    builder = data.build("custom_seg/lists", tmp_path / "export", tmp_path / "tfds")
    assert builder.info.metadata["source"]["held_out_from"] is None
    check_reads_back(export, tmp_path / "tfds", "custom_seg/lists",
                     {"train": export.names[:3], "val": export.names[3:]}, lossless=False)


def test_training_and_evaluation_find_it_by_name(cvat):
    """data.dataset="custom_seg/cvat" + data.data_dir: the input pipeline's batches hold
    the three classes; a config with another class count is refused naming both."""
    export, _, data_dir = cvat
    config = config_lib.DataConfig(dataset="custom_seg/cvat", data_dir=str(data_dir),
                                   num_classes=3, crop_size=33, shuffle_buffer=4)
    images, labels = next(iter(data.train_input(config, batch_size=2)))
    assert images.shape == (2, 33, 33, 3) and labels.shape == (2, 33, 33)
    assert set(np.unique(labels.numpy())) <= {0, 1, 2, 255}
    example = next(iter(data.eval_input(config, "val", output_stride=16, crop_size=None)))
    name = example["file_name"].numpy().decode()
    height, width = export.labels[name].shape
    np.testing.assert_array_equal(example["label"][0, :height, :width],
                                  export.labels[name])
    wrong = config_lib.DataConfig(dataset="custom_seg/cvat", data_dir=str(data_dir),
                                  num_classes=21)
    with pytest.raises(ValueError, match=r"custom_seg/cvat.*has 3 classes, but "
                                         r"data.num_classes is 21"):
        data.train_input(wrong, 2)


def test_a_name_not_built_says_how_to_build_it(cvat):
    _, _, data_dir = cvat
    with pytest.raises(FileNotFoundError, match=r"'custom_seg/missing' is not built in .*"
                                                r"tools.build_dataset "
                                                r"--dataset=custom_seg/missing"):
        data.class_table("custom_seg/missing", str(data_dir))
    config = config_lib.DataConfig(dataset="custom_seg/missing", data_dir=str(data_dir),
                                   num_classes=3)
    with pytest.raises(FileNotFoundError, match="--dataset=custom_seg/missing"):
        data.train_input(config, 2)
    assert data.class_table("pascal_voc_seg").num_classes == 21  # built-ins: fixed tables


def test_build_dataset_tool_builds_a_plain_folder_with_its_flags(tmp_path):
    """tools.build_dataset with a classes file elsewhere, a declared ignore value (254),
    no hold-out: one split, 'train', the 254s stored as 255."""
    export = synthetic_exports.write_plain_folder(tmp_path / "export", seed=3, num_images=3,
                                                  min_size=16, max_size=20)
    os.rename(tmp_path / "export" / "classes.txt", tmp_path / "names.txt")
    for name, label in export.labels.items():
        Image.fromarray(np.where(label == 255, 254, label).astype(np.uint8)).save(
            tmp_path / "export" / "masks" / f"{name}.png")
    result = subprocess.run(
        [sys.executable, "-m", "tools.build_dataset", "--dataset=custom_seg/tool",
         f"--manual_dir={tmp_path / 'export'}", f"--data_dir={tmp_path / 'tfds'}",
         f"--classes={tmp_path / 'names.txt'}", "--ignore_value=254", "--val_fraction=0"],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "built custom_seg/tool in " in result.stdout
    assert "train 3; 3 classes: background, car, person (ignore label 255)" in result.stdout
    examples = read_split(tmp_path / "tfds", "custom_seg/tool", "train")
    assert sorted(examples) == export.names
    for name, (_, label, _) in examples.items():
        np.testing.assert_array_equal(label, export.labels[name])
    source = tfds.builder("custom_seg/tool", data_dir=str(tmp_path / "tfds")).info.metadata
    assert source["source"]["ignore_value"] == 254
    assert source["source"]["class_file"] == str(tmp_path / "names.txt")


def test_hold_out_definition():
    """own_layout.hold_out against the definition above, and its edges."""
    names = [f"n{i}" for i in range(10)]
    train, val = own_layout.hold_out(reversed(names), 0.25, 7)
    assert val == expected_holdout(names, 0.25, 7) and len(val) == 2
    assert sorted(train + val) == names and not set(train) & set(val)
    assert own_layout.hold_out(["a", "b"], 0.01, 0)[1] != []  # at least one held out
    assert len(own_layout.hold_out(["a", "b"], 0.9, 0)[0]) == 1  # at least one kept
