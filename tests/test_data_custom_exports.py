"""One's own data as annotation tools really export it: photo names with spaces and dots,
JPEG and PNG images in one export (each stored byte for byte, decoded by its own format).
(`--overwrite`: tests/test_data_rebuild.py.)"""
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from deeplab_tf import config as config_lib
from deeplab_tf import data, synthetic_exports

# As cameras and people name files: spaces, several dots, a space before a dot.
NAMES = ("IMG 0001", "IMG 0002", "frame 0000.v2", "frame 0001.v2", "holiday photo .final",
         "plain_name")
PNG_NAMES = ("IMG 0002", "frame 0001.v2", "plain_name")


def read_back(data_dir, dataset, split, decoded=True):
    """{file_name: (image, label)} of a built split; the image's stored bytes when not
    `decoded`."""
    decoders = None if decoded else {"image": tfds.decode.SkipDecoding()}
    examples = tfds.load(dataset, data_dir=str(data_dir), split=split, decoders=decoders)
    return {ex["file_name"].decode(): (ex["image"], ex["label"][..., 0])
            for ex in tfds.as_numpy(examples)}


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """A CVAT export whose names have spaces and dots, half its images PNG, built."""
    root = tmp_path_factory.mktemp("mixed")
    export = synthetic_exports.write_cvat_export(root / "export", seed=3, min_size=16,
                                                 max_size=24, names=NAMES,
                                                 png_names=PNG_NAMES)
    listed = (root / "export" / "ImageSets" / "Segmentation" / "default.txt").read_text()
    assert "IMG 0001\n" in listed and "frame 0000.v2\n" in listed
    builder = data.build("custom_seg/mixed", root / "export", root / "tfds")
    return export, builder, root


def image_file(root, name):
    stem = root / "export" / "JPEGImages" / name
    return stem.with_name(name + (".png" if name in PNG_NAMES else ".jpg"))


def test_names_with_spaces_and_dots_are_read_whole(mixed):
    export, builder, root = mixed
    splits = {split: set(read_back(root / "tfds", "custom_seg/mixed", split))
              for split in builder.info.splits}
    assert set(splits) == {"train", "val"}
    assert splits["train"] | splits["val"] == set(NAMES)
    assert not splits["train"] & splits["val"]
    labels = read_back(root / "tfds", "custom_seg/mixed", "train+val")
    for name in NAMES:
        np.testing.assert_array_equal(labels[name][1], export.labels[name])


def test_jpeg_and_png_images_are_stored_byte_for_byte(mixed):
    export, builder, root = mixed
    assert builder.info.features["image"].encoding_format is None
    stored = read_back(root / "tfds", "custom_seg/mixed", "train+val", decoded=False)
    decoded = read_back(root / "tfds", "custom_seg/mixed", "train+val")
    for name in NAMES:
        assert stored[name][0] == image_file(root, name).read_bytes(), name
        if name in PNG_NAMES:  # lossless: the very pixels the export was written from
            np.testing.assert_array_equal(decoded[name][0], export.images[name])
        else:
            np.testing.assert_array_equal(decoded[name][0], tf.io.decode_jpeg(
                image_file(root, name).read_bytes(), channels=3).numpy())


def test_the_input_pipeline_decodes_both_formats(mixed):
    """eval_input decodes each image by its own format (exactly the file's pixels);
    train_input's windowed decode runs over both."""
    export, _, root = mixed
    config = config_lib.DataConfig(dataset="custom_seg/mixed", data_dir=str(root / "tfds"),
                                   num_classes=3, crop_size=17, train_split="train+val")
    seen = set()
    for element in data.eval_input(config, "train+val", 8, (33, 33)):
        name = element["file_name"].numpy().decode()
        height, width = export.labels[name].shape
        expected = (export.images[name] if name in PNG_NAMES else tf.io.decode_jpeg(
            image_file(root, name).read_bytes(), channels=3).numpy())
        np.testing.assert_array_equal(element["image"][0, :height, :width].numpy(),
                                      expected.astype(np.float32))
        seen.add(name)
    assert seen == set(NAMES)
    images, labels = next(iter(data.train_input(config, 12)))
    assert images.shape == (12, 17, 17, 3) and labels.shape == (12, 17, 17)
    assert np.isfinite(images.numpy()).all()


def test_a_single_format_set_keeps_its_fixed_encoding(tmp_path):
    export = synthetic_exports.write_cvat_export(tmp_path / "export", seed=4, num_images=3,
                                                 min_size=16, max_size=20,
                                                 names=("a b", "c d", "e.f g"),
                                                 png_names=("a b", "c d", "e.f g"))
    builder = data.build("custom_seg/pngs", tmp_path / "export", tmp_path / "tfds")
    assert builder.info.features["image"].encoding_format == "png"
    assert set(read_back(tmp_path / "tfds", "custom_seg/pngs", "train+val")) == set(
        export.names)
