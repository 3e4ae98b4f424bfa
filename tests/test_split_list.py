"""Split lists: a line is one name (spaces included); a name that repeats, or that leads out
of the data set's folders (`..`, an absolute path, a symbolic link out), is refused naming
the list and the line, before TFDS writes anything."""
import os
import shutil

import numpy as np
import pytest

from deeplab_tf import data, synthetic, synthetic_exports
from deeplab_tf.data import validation

import data_layouts


def test_a_repeated_name_is_refused_with_the_file_the_name_and_its_lines(tmp_path):
    split = tmp_path / "train.txt"
    # Blank lines count: the numbers are the file's own line numbers. White space around
    # a name is not part of it ("b " is b); inside it, it is ("a x" is not a).
    split.write_text("a\nb\n\nc\na\nb \na\na x\n")
    with pytest.raises(validation.DataError) as error:
        validation.read_split_list(str(split), lambda name: None)
    message = str(error.value)
    assert message.startswith(f"{split}: names an image more than once: ")
    assert "'a' on lines 1, 5, 7" in message and "'b' on lines 2, 6" in message
    assert "'c'" not in message and "'a x'" not in message


def test_a_line_is_one_name_spaces_and_dots_included(tmp_path):
    """CVAT keeps the photos' own names: each line names one image, whole (before, each
    line was cut at its first space, so this list "named an image more than once")."""
    split = tmp_path / "default.txt"
    split.write_bytes("IMG 0001\r\nIMG 0002\n  frame 0000.v2 \n\nfoto 3\tb\n".encode())
    seen = []
    names = validation.read_split_list(str(split), lambda name: seen.append(name))
    assert names == seen == ["IMG 0001", "IMG 0002", "frame 0000.v2", "foto 3\tb"]


def test_names_and_missing_files_keep_their_line_numbers(tmp_path):
    split = tmp_path / "val.txt"
    split.write_text("\nx\n\ny\n")
    assert validation.read_split_list(str(split), lambda name: None) == ["x", "y"]
    with pytest.raises(validation.DataError,
                       match=r"line 4 names 'y', but /nowhere/y.jpg does not exist"):
        validation.read_split_list(str(split), lambda name: validation.missing_or_outside(
            "/nowhere/y.jpg", "/nowhere") if name == "y" else None)


@pytest.mark.parametrize("name, reason", [
    ("../../outside/evil", "a '..' that climbs out"),
    ("sub/../../evil", "a '..' that climbs out"),
    ("..\\evil", "a '..' that climbs out"),
    ("/etc/passwd", "an absolute path"),
])
def test_a_name_that_leads_out_is_refused_before_any_file_is_looked_at(tmp_path, name,
                                                                       reason):
    split = tmp_path / "train.txt"
    split.write_text(f"fine\n{name}\n")
    looked_at = []
    with pytest.raises(validation.DataError) as error:
        validation.read_split_list(str(split), lambda n: looked_at.append(n))
    assert str(error.value).startswith(f"{split}: line 2 names {name!r}: {reason}")
    assert looked_at == ["fine"]


def test_build_refuses_a_duplicated_voc_split_list(tmp_path):
    source = tmp_path / "src"
    splits = synthetic.generate(str(source), seed=0, num_train=3, num_val=2, min_size=20,
                                max_size=24)
    listing = source / "ImageSets" / "Segmentation" / "val.txt"
    first = splits["val"][0]
    listing.write_text("\n".join(splits["val"] + [first]) + "\n")
    with pytest.raises(validation.DataError,
                       match=f"val.txt: names an image more than once: '{first}' on lines 1, 3"):
        data.build("synthetic_voc", str(source), str(tmp_path / "tfds"))


# ---------------------------------------------------------------- builds


@pytest.fixture
def voc(tmp_path):
    """A synthetic VOC copy, and an image with its label outside it (tmp_path/outside)."""
    source = tmp_path / "source"
    synthetic.generate(str(source), seed=1, num_train=3, num_val=2, min_size=16,
                       max_size=20)
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(source / "JPEGImages" / "syn_000000.jpg", outside / "evil.jpg")
    shutil.copy(source / "SegmentationClass" / "syn_000000.png", outside / "evil.png")
    return source, outside


def refused(manual_dir, tmp_path, dataset, *expected):
    with pytest.raises(data.DataError) as error:
        data.build(dataset, manual_dir, tmp_path / "tfds")
    for text in expected:
        assert str(text) in str(error.value), str(error.value)
    # Nothing written (TFDS may leave the empty folders it made).
    assert [f for _, _, files in os.walk(tmp_path / "tfds") for f in files] == []


@pytest.mark.parametrize("kind", ["dotdot", "absolute"])
def test_voc_list_naming_a_file_outside(voc, tmp_path, kind):
    """Before, both built: the image and label outside the copy were read into it."""
    source, outside = voc
    name = "../outside/evil" if kind == "dotdot" else str(outside / "evil")
    listing = source / "ImageSets" / "Segmentation" / "val.txt"
    listing.write_text(listing.read_text() + name + "\n")
    refused(source, tmp_path, "synthetic_voc", f"{listing}: line 3 names {name!r}: ",
            "leads out of the data set's folders")


def test_voc_image_that_links_outside(voc, tmp_path):
    source, outside = voc
    image = source / "JPEGImages" / "syn_000004.jpg"
    os.remove(image)
    os.symlink(outside / "evil.jpg", image)
    refused(source, tmp_path, "synthetic_voc",
            f"{source / 'ImageSets' / 'Segmentation' / 'val.txt'}: line 2 names "
            f"'syn_000004', but {image} leads to {outside / 'evil.jpg'}, outside "
            f"{source / 'JPEGImages'}")


def test_voc_label_that_links_outside(voc, tmp_path):
    source, outside = voc
    label = source / "SegmentationClass" / "syn_000001.png"
    os.remove(label)
    os.symlink(outside / "evil.png", label)
    refused(source, tmp_path, "synthetic_voc", "train.txt: line 2 names 'syn_000001', "
            f"but {label} leads to {outside / 'evil.png'}")


def test_a_linked_folder_is_fine(voc, tmp_path):
    """A data set kept on another disk and linked in: the folder resolves, its files stay
    inside it."""
    source, _ = voc
    elsewhere = tmp_path / "disk" / "JPEGImages"
    shutil.move(source / "JPEGImages", elsewhere)
    os.symlink(elsewhere, source / "JPEGImages")
    builder = data.build("synthetic_voc", source, tmp_path / "tfds")
    assert builder.info.splits["trainval"].num_examples == 5


def test_sbd_list_naming_a_file_outside(tmp_path):
    manual = tmp_path / "manual"
    data_layouts.make_voc_with_sbd(manual, np.random.default_rng(0), "mat")
    listing = manual / "benchmark_RELEASE" / "dataset" / "train.txt"
    listing.write_text(listing.read_text() + "../../../../outside\n")
    refused(manual, tmp_path, "pascal_voc_seg", f"{listing}: line 5 names "
            f"'../../../../outside': a '..' that climbs out")


def cvat(tmp_path):
    export = synthetic_exports.write_cvat_export(tmp_path / "export", seed=2, num_images=4,
                                                 min_size=16, max_size=20)
    return export, tmp_path / "export" / "ImageSets" / "Segmentation" / "default.txt"


def test_cvat_list_naming_a_file_outside(tmp_path):
    export, listing = cvat(tmp_path)
    listing.write_text(listing.read_text() + "../../../outside\n")
    refused(tmp_path / "export", tmp_path, "custom_seg/out",
            f"{listing}: line 5 names '../../../outside': a '..' that climbs out")
    assert len(export.names) == 4


@pytest.mark.parametrize("which", ["image", "mask"])
def test_cvat_file_that_links_outside(tmp_path, which):
    export, listing = cvat(tmp_path)
    folder = "JPEGImages" if which == "image" else "SegmentationClass"
    path = tmp_path / "export" / folder / (export.names[2] + (
        ".jpg" if which == "image" else ".png"))
    target = tmp_path / ("secret" + path.suffix)
    shutil.move(path, target)
    os.symlink(target, path)
    refused(tmp_path / "export", tmp_path, "custom_seg/out",
            f"{listing}: line 3 names '{export.names[2]}', but {path} leads to {target}, "
            f"outside {tmp_path / 'export' / folder}")


def test_plain_folder_file_that_links_outside(tmp_path):
    """No list: the file is named."""
    export = synthetic_exports.write_plain_folder(tmp_path / "export", seed=2, num_images=3,
                                                  min_size=16, max_size=20)
    path = tmp_path / "export" / "images" / f"{export.names[1]}.png"
    target = tmp_path / "secret.png"
    shutil.move(path, target)
    os.symlink(target, path)
    refused(tmp_path / "export", tmp_path, "custom_seg/out",
            f"{path} leads to {target}, outside {tmp_path / 'export' / 'images'}; copy "
            f"the file into the export")


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "link"])
def test_coco_file_name_outside(tmp_path, kind):
    layout = data_layouts.make_coco(tmp_path / "manual", np.random.default_rng(2))
    outside = tmp_path / "outside.jpg"
    image = layout.root / "val2017" / "000000000001.jpg"
    shutil.copy(image, outside)
    if kind == "link":
        os.remove(image)
        os.symlink(outside, image)
        expected = (f"{layout.annotation_file}: image 1 ('000000000001.jpg'): {image} "
                    f"leads to {outside}, outside {layout.root / 'val2017'}")
    else:
        name = "../../outside.jpg" if kind == "dotdot" else str(outside)
        layout.dataset["images"][0]["file_name"] = name
        data_layouts.write_coco_json(layout.annotation_file, layout.dataset)
        expected = (f"{layout.annotation_file}: image 1 has file_name {name!r}: "
                    f"{'an absolute path' if kind == 'absolute' else 'a'}")
    refused(layout.root, tmp_path, "coco_voc_seg", expected)
