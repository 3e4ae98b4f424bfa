"""`--overwrite` keeps the old build of one's own data until the new one is completely
written: a rebuild that fails while TFDS writes leaves the old one exactly as it was."""
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from deeplab_tf import data, synthetic_exports

from test_data_custom_exports import read_back



def snapshot(data_dir, dataset):
    """Every example of every split, as stored: {split: {name: (image bytes, label)}}."""
    builder = tfds.builder(dataset, data_dir=str(data_dir))
    return {split: {name: (image, label.tobytes()) for name, (image, label) in
                    read_back(data_dir, dataset, split, decoded=False).items()}
            for split in builder.info.splits}


def test_a_rebuild_that_fails_while_writing_keeps_the_old_build(tmp_path):
    """A good build; then --overwrite from an export whose damage shows only when an
    image is decoded (its header reads, its data is cut short): the build fails while
    TFDS writes, and the old data set reads back exactly, with nothing left over.
    (Before, TFDS's FORCE_REDOWNLOAD had deleted the old version first.)"""
    data_dir = tmp_path / "tfds"
    synthetic_exports.write_cvat_export(tmp_path / "good", seed=8, num_images=5,
                                        min_size=16, max_size=24)
    data.build("custom_seg/kept", tmp_path / "good", data_dir)
    before = snapshot(data_dir, "custom_seg/kept")
    assert sum(len(split) for split in before.values()) == 5
    version_dir = tfds.builder("custom_seg/kept", data_dir=str(data_dir)).data_dir
    files_before = sorted(os.listdir(version_dir))

    damaged = synthetic_exports.write_cvat_export(tmp_path / "damaged", seed=9,
                                                  num_images=4, min_size=16, max_size=24)
    path = tmp_path / "damaged" / "JPEGImages" / f"{damaged.names[-1]}.jpg"
    path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])
    with pytest.raises(data.DataError, match=f"{path}: corrupt or truncated image") as error:
        data.build("custom_seg/kept", tmp_path / "damaged", data_dir, overwrite=True)
    # Found while TFDS wrote the examples, not by the checks before.
    assert "_generate_examples" in {entry.name for entry in error.traceback}

    assert snapshot(data_dir, "custom_seg/kept") == before
    assert sorted(os.listdir(version_dir)) == files_before
    assert os.listdir(os.path.dirname(version_dir)) == [os.path.basename(version_dir)]


def test_a_rebuild_that_succeeds_replaces_the_build(tmp_path):
    """The new version is swapped in whole; its files do not name the temporary folder
    it was written in, and nothing else is left beside it."""
    data_dir = tmp_path / "tfds"
    synthetic_exports.write_plain_folder(tmp_path / "first", seed=10, num_images=3,
                                         min_size=16, max_size=20)
    data.build("custom_seg/swap", tmp_path / "first", data_dir)
    other = tmp_path / "other"
    new_export = synthetic_exports.write_cvat_export(other, seed=11, num_images=5,
                                                     min_size=16, max_size=24)
    builder = data.build("custom_seg/swap", other, data_dir, overwrite=True)
    version_dir = builder.data_dir
    assert version_dir == tfds.builder("custom_seg/swap", data_dir=str(data_dir)).data_dir
    assert os.listdir(os.path.dirname(version_dir)) == [os.path.basename(version_dir)]
    after = read_back(data_dir, "custom_seg/swap", "train+val")
    assert sorted(after) == new_export.names
    for name in new_export.names:
        np.testing.assert_array_equal(after[name][1], new_export.labels[name])
    assert data.class_table("custom_seg/swap", data_dir).names == new_export.table.names
    for file_name in os.listdir(version_dir):
        if file_name.endswith(".json"):
            with open(os.path.join(version_dir, file_name)) as f:
                assert ".rebuild-" not in f.read(), file_name
    assert builder.info.splits["train"].num_examples + \
        builder.info.splits["val"].num_examples == 5
