"""Each TFDS builder builds from generated files in the real layout (tests/data_layouts.py)
and reads back exactly the pixels and labels it was given, split by split (paper 4: VOC +
SBD train_aug, Cityscapes fine and coarse, COCO->VOC)."""
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from cityscapesscripts.helpers import labels as cityscapes_labels  # test extra: no skip
from pycocotools import mask as mask_api  # test extra: no skip

from deeplab_tf import data, visualization
from deeplab_tf import synthetic

import data_layouts


def read_split(data_dir, name, split):
    """{file_name: (image, label, classes)} of a built split, decoded by TFDS."""
    dataset = tfds.load(name, data_dir=data_dir, split=split)
    return {ex["file_name"].decode(): (ex["image"], ex["label"][..., 0], ex["classes"])
            for ex in tfds.as_numpy(dataset)}


def decoded(path):
    """The source file decoded by TensorFlow (JPEG is lossy: compare decoded bytes)."""
    return tf.io.decode_image(tf.io.read_file(path), channels=3).numpy()


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


def check_split(data_dir, split, names, labels, images):
    """The split holds exactly `names`, each with its label map, image pixels and classes."""
    examples = read_split(str(data_dir), "pascal_voc_seg", split)
    assert sorted(examples) == sorted(names), split
    for name, (image, label, classes) in examples.items():
        np.testing.assert_array_equal(label, labels[name], err_msg=f"{split} {name}")
        np.testing.assert_array_equal(image, decoded(str(images[name])))
        present = np.unique(labels[name])
        np.testing.assert_array_equal(classes, present[present != 255])


@pytest.mark.parametrize("sbd", ["mat", "aug", "both"])
def test_pascal_voc_splits_read_back_and_voc_labels_take_precedence(tmp_path, sbd):
    """train/val/trainval come from VOC's own PNGs; train_aug = VOC train + SBD - VOC val,
    labelled by VOC's PNG where there is one, else SegmentationClassAug, else SBD's .mat
    (the fixture's annotations differ between sources, so precedence shows)."""
    layout = data_layouts.make_voc_with_sbd(tmp_path / "manual", np.random.default_rng(0),
                                            sbd)
    builder = data.build("pascal_voc_seg", tmp_path / "manual", tmp_path / "tfds")
    counts = {name: split.num_examples for name, split in builder.info.splits.items()}
    assert counts == {"train": 4, "val": 3, "trainval": 7, "train_aug": 4 + 6}
    check_split(tmp_path / "tfds", "train", layout.voc_train, layout.labels, layout.images)
    check_split(tmp_path / "tfds", "val", layout.voc_val, layout.labels, layout.images)
    check_split(tmp_path / "tfds", "trainval", layout.voc_train + layout.voc_val,
                layout.labels, layout.images)
    # train_aug: VOC train's first image also has an SBD annotation (a different one): VOC
    # wins. The extra images carry SBD's (the Aug PNG over the .mat file when both exist).
    expected = {n: layout.labels[n] for n in layout.voc_train}
    expected.update({n: layout.sbd_labels[n] for n in layout.extra})
    assert not np.array_equal(layout.sbd_labels[layout.voc_train[0]],
                              layout.labels[layout.voc_train[0]])
    check_split(tmp_path / "tfds", "train_aug", sorted(expected), expected, layout.images)
    if sbd == "mat":  # the last extra image is only in SBD's img/ folder
        assert "benchmark_RELEASE" in str(layout.images[layout.extra[-1]])


def test_cityscapes_maps_label_ids_with_the_official_table(tmp_path):
    table = np.full(256, 255, dtype=np.uint8)
    for label in cityscapes_labels.labels:  # the independent source of the mapping
        if label.id >= 0 and label.trainId not in (-1, 255):
            table[label.id] = label.trainId
    sources = data_layouts.make_cityscapes(tmp_path / "manual", np.random.default_rng(1))
    builder = data.build("cityscapes_seg", tmp_path / "manual", tmp_path / "tfds")
    assert {n: s.num_examples for n, s in builder.info.splits.items()} == {
        "train": 3, "val": 2, "train_extra": 2}
    assert builder.info.features["classes"].feature.num_classes == 19
    seen = set()
    for split, prefixes in (("train", ("aachen", "bonn")), ("val", ("lindau",)),
                            ("train_extra", ("erfurt",))):  # train_extra: the gtCoarse maps
        examples = read_split(str(tmp_path / "tfds"), "cityscapes_seg", split)
        assert all(name.startswith(prefixes) for name in examples), split
        for name, (image, label, _) in examples.items():
            source_image, ids = sources[name]
            np.testing.assert_array_equal(image, source_image)  # PNG: lossless
            np.testing.assert_array_equal(label, table[ids])
            seen.add(name)
    assert seen == set(sources)


def test_coco_keeps_voc_classes_and_large_regions(tmp_path):
    layout = data_layouts.make_coco(tmp_path / "manual", np.random.default_rng(2))
    root = layout.root
    builder = data.build("coco_voc_seg", root, tmp_path / "tfds")
    assert {n: s.num_examples for n, s in builder.info.splits.items()} == {"val": 1}
    (name, (image, label, classes)), = read_split(str(tmp_path / "tfds"), "coco_voc_seg",
                                                  "val").items()
    assert name == "000000000001.jpg"
    np.testing.assert_array_equal(image, decoded(str(root / "val2017" / name)))
    person, chair = visualization.VOC_CLASSES.index("person"), \
        visualization.VOC_CLASSES.index("chair")
    rle_mask = layout.rle_mask.astype(bool)
    np.testing.assert_array_equal(label[rle_mask], chair)  # RLE, exact
    np.testing.assert_array_equal(label[12:39, 12:49], person)  # polygon interior
    assert (label[45:] == 0).all() and (label[:, :9] == 0).all()
    assert classes.tolist() == sorted([0, person, chair])
    # The rasterisation, independently: pycocotools' own polygon mask of the person.
    height, width = label.shape
    polygon = mask_api.decode(mask_api.merge(mask_api.frPyObjects(
        layout.dataset["annotations"][0]["segmentation"], height, width))).astype(bool)
    np.testing.assert_array_equal(label[polygon & ~rle_mask], person)
    assert (label[~polygon & ~rle_mask] == 0).all()


def test_build_dataset_lists_the_builders():
    """tools.build_dataset --list; its make-and-build path runs in tests/test_demo.py."""
    import subprocess
    import sys
    listed = subprocess.run([sys.executable, "-m", "tools.build_dataset", "--list"],
                            check=True, capture_output=True, text=True,
                            cwd=os.path.dirname(os.path.dirname(__file__))).stdout
    assert [line.split()[0] for line in listed.splitlines()] == list(data.BUILDERS)
    assert "custom_seg/NAME" in listed.splitlines()[-1]


def test_make_synthetic_runs_without_tensorflow(tmp_path):
    """The demo's first step needs numpy and PIL only: tools.make_synthetic runs where
    TensorFlow cannot be imported (tests/no_tensorflow) and writes `synthetic.generate`'s
    files for the same seed and sizes."""
    import subprocess
    import sys
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    shim = os.path.join(repo, "tests", "no_tensorflow")
    sizes = dict(num_train=3, num_val=2, min_size=16, max_size=24)
    result = subprocess.run(
        [sys.executable, "-m", "tools.make_synthetic", f"--output_dir={tmp_path / 'tool'}",
         *[f"--{name}={value}" for name, value in sizes.items()]],
        env=dict(os.environ, PYTHONPATH=os.pathsep.join([shim, repo])), cwd=repo,
        capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "wrote" in result.stdout and "(train 3, val 2, trainval 5)" in result.stdout
    synthetic.generate(str(tmp_path / "library"), seed=0, **sizes)
    files = sorted(p.relative_to(tmp_path / "library")
                   for p in (tmp_path / "library").rglob("*") if p.is_file())
    assert len(files) == 5 + 5 + 3  # images, labels, three split lists
    assert all((tmp_path / "tool" / f).read_bytes() == (tmp_path / "library" / f).read_bytes()
               for f in files)
