"""One's own data with a problem: the build stops with one line that names the file (and
the colour, value, names, sizes or line), and leaves nothing `tfds.load` would read."""
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from deeplab_tf import data, synthetic_exports


def cvat_export(root, num_images=4):
    return synthetic_exports.write_cvat_export(root / "export", seed=5,
                                               num_images=num_images, min_size=16,
                                               max_size=24)


def plain_folder(root, num_images=4):
    return synthetic_exports.write_plain_folder(root / "export", seed=6,
                                                num_images=num_images, min_size=16,
                                                max_size=24)


def refused(tmp_path, *expected, name="bad", **options):
    """Builds tmp_path/export as custom_seg/NAME; returns the error after checking it
    names every `expected` text and that nothing was left prepared."""
    with pytest.raises(data.DataError) as error:
        data.build(f"custom_seg/{name}", tmp_path / "export", tmp_path / "tfds", **options)
    message = str(error.value)
    assert "\n" not in message
    for text in expected:
        assert str(text) in message, message
    assert_nothing_prepared(tmp_path / "tfds", name)
    return message


def assert_nothing_prepared(data_dir, name):
    assert not tfds.builder(f"custom_seg/{name}", data_dir=str(data_dir)).is_prepared()
    with pytest.raises(AssertionError, match="could not find data"):
        tfds.load(f"custom_seg/{name}", data_dir=str(data_dir), split="train",
                  download=False)
    leftovers = [os.path.join(d, f) for d, _, files in os.walk(data_dir) for f in files]
    assert leftovers == [], leftovers


def mask_path(root, name):
    return root / "export" / "SegmentationClass" / f"{name}.png"


def test_the_intact_copies_build(tmp_path):
    """The copies the other tests break in one place build whole."""
    names = cvat_export(tmp_path / "cvat").names
    builder = data.build("custom_seg/good", tmp_path / "cvat" / "export", tmp_path / "tfds")
    assert sum(s.num_examples for s in builder.info.splits.values()) == len(names) == 4
    plain_folder(tmp_path / "plain")
    builder = data.build("custom_seg/good2", tmp_path / "plain" / "export",
                         tmp_path / "tfds")
    assert sum(s.num_examples for s in builder.info.splits.values()) == 4


def test_mask_colour_not_in_the_labelmap(tmp_path):
    export = cvat_export(tmp_path)
    path = mask_path(tmp_path, export.names[1])
    rgb = np.array(Image.open(path))
    rgb[:3, :5] = (10, 20, 30)
    rgb[-1, -2:] = (11, 20, 30)
    Image.fromarray(rgb).save(path)
    refused(tmp_path, f"{path}: colour 10,20,30 (15 pixels) is not in",
            tmp_path / "export" / "labelmap.txt", "(and 1 more unknown colours)")


@pytest.mark.parametrize("value", [3, 200])
def test_mask_value_that_is_no_class(tmp_path, value):
    export = plain_folder(tmp_path)
    path = tmp_path / "export" / "masks" / f"{export.names[2]}.png"
    label = np.array(Image.open(path))
    label[0, :4] = value
    Image.fromarray(label).save(path)
    refused(tmp_path, f"{path}: value {value} (4 pixels) is not a class id (0..2",
            "nor the ignore value 255")


def test_ignore_value_declared_elsewhere_makes_255_a_bad_value(tmp_path):
    export = plain_folder(tmp_path)  # its outlines are 255
    refused(tmp_path, "value 255 (", "nor the ignore value 254", ignore_value=254)
    assert (np.stack([(l == 255).any() for l in export.labels.values()])).any()


def test_image_without_a_mask_and_mask_without_an_image(tmp_path):
    export = cvat_export(tmp_path)
    os.remove(mask_path(tmp_path, export.names[0]))
    os.remove(mask_path(tmp_path, export.names[3]))
    refused(tmp_path, f"{tmp_path / 'export' / 'JPEGImages'}: 2 image(s) without a mask",
            f"{export.names[0]}, {export.names[3]}")
    os.remove(tmp_path / "export" / "JPEGImages" / f"{export.names[0]}.jpg")
    os.remove(tmp_path / "export" / "JPEGImages" / f"{export.names[3]}.jpg")
    Image.new("RGB", (4, 4)).save(mask_path(tmp_path, "orphan"))
    refused(tmp_path, f"{tmp_path / 'export' / 'SegmentationClass'}: 1 mask(s) without "
                      f"an image", "orphan")


def test_image_and_mask_sizes_differ(tmp_path):
    export = plain_folder(tmp_path)
    name = export.names[1]
    path = tmp_path / "export" / "masks" / f"{name}.png"
    Image.fromarray(export.labels[name][:-2]).save(path)
    height, width = export.labels[name].shape
    refused(tmp_path, f"{path}: mask size {height - 2}x{width} does not match image",
            f"{name}.png size {height}x{width}")


def test_a_mask_drawn_on_the_photo_turned_by_its_exif_tag(tmp_path):
    """The tool showed the JPEG turned by its EXIF orientation (6: 90 degrees clockwise)
    and the mask follows; the stored pixels are not turned: the error says so."""
    export = cvat_export(tmp_path)
    name = export.names[0]
    jpeg = tmp_path / "export" / "JPEGImages" / f"{name}.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(export.images[name]).save(jpeg, exif=exif)
    path = mask_path(tmp_path, name)
    Image.fromarray(np.rot90(np.array(Image.open(path)), -1)).save(path)
    height, width = export.labels[name].shape
    assert height != width
    refused(tmp_path, f"{path}: mask size {width}x{height} does not match",
            f"size {height}x{width}; the image's EXIF orientation 6 turns it")


LABELMAP = "# label:color_rgb:parts:actions\nbackground:0,0,0::\ncar:250,50,83::\n" \
           "person:61,61,245::\n"


@pytest.mark.parametrize("text, message", [
    (LABELMAP + "car:1,2,3::\n", "line 5: class name 'car' repeats line 3"),
    (LABELMAP.replace("61,61,245", "250,50,83"), "line 4: colour 250,50,83 repeats line 3"),
    (LABELMAP.replace("car:250,50,83::", "car 250,50,83"),
     "line 3: 'car 250,50,83' is not name:r,g,b:parts:actions"),
    (LABELMAP.replace("250,50,83", "250,50"), "line 3: 'car:250,50::': colour '250,50'"),
    (LABELMAP.replace("250,50,83", "250,50,256"), "line 3: 'car:250,50,256::': colour"),
    (LABELMAP.replace("car:", ":"), "line 3: ':250,50,83::' has no class name"),
    (LABELMAP.replace("61,61,245", "224,224,192"),
     "line 4: class 'person' has the ignore colour 224,224,192"),
    ("# label:color_rgb:parts:actions\n", "names no classes"),
], ids=["duplicate_name", "duplicate_colour", "no_colons", "two_numbers", "256",
        "no_name", "ignore_colour", "empty"])
def test_bad_labelmap(tmp_path, text, message):
    cvat_export(tmp_path)
    (tmp_path / "export" / "labelmap.txt").write_text(text)
    refused(tmp_path, f"{tmp_path / 'export' / 'labelmap.txt'}: {message}")


@pytest.mark.parametrize("text, message", [
    ("background\ncar\nbackground\n", "line 3: class name 'background' repeats line 1"),
    ("background 1,2,3\n\n# a comment\ncar 1 2 3\nperson\n",
     "line 4: colour 1,2,3 repeats line 1"),
    ("background\ncar 250,50\nperson\n", "line 2: 'car 250,50' is not a class name"),
], ids=["duplicate_name", "duplicate_colour", "half_colour"])
def test_bad_classes_file(tmp_path, text, message):
    plain_folder(tmp_path)
    (tmp_path / "export" / "classes.txt").write_text(text)
    refused(tmp_path, f"{tmp_path / 'export' / 'classes.txt'}: {message}")


def test_ignore_value_that_is_a_class(tmp_path):
    plain_folder(tmp_path)
    refused(tmp_path, "classes.txt: the ignore value 2 is class 2 ('person', line 3)",
            ignore_value=2)


def test_colour_masks_need_the_colours(tmp_path):
    export = cvat_export(tmp_path)
    os.remove(tmp_path / "export" / "labelmap.txt")
    (tmp_path / "export" / "classes.txt").write_text("background\ncar\nperson\n")
    refused(tmp_path, f"{mask_path(tmp_path, export.names[0])}: an RGB colour mask, but",
            "classes.txt does not give every class a colour")


def test_an_empty_split_list(tmp_path):
    export = cvat_export(tmp_path)
    lists = tmp_path / "export" / "ImageSets" / "Segmentation"
    (lists / "train.txt").write_text("".join(n + "\n" for n in export.names))
    (lists / "val.txt").write_text("\n")
    refused(tmp_path, f"{lists / 'val.txt'}: split list is empty")


def test_a_list_naming_a_missing_image(tmp_path):
    cvat_export(tmp_path)
    listing = tmp_path / "export" / "ImageSets" / "Segmentation" / "default.txt"
    listing.write_text(listing.read_text() + "frame_0099\n")
    refused(tmp_path, f"{listing}: line 5 names 'frame_0099'", "frame_0099.jpg does not "
                                                               "exist")


def test_too_few_images_to_hold_out(tmp_path):
    cvat_export(tmp_path, num_images=1)
    refused(tmp_path, "cannot hold out a validation split from 1 image(s)")


def test_an_image_whose_suffix_lies_about_its_format(tmp_path):
    """JPEG and PNG may be mixed (tests/test_data_custom_exports.py), but each file must
    be what its suffix says: the pipeline would decode the stored bytes by it."""
    export = cvat_export(tmp_path)
    jpeg = tmp_path / "export" / "JPEGImages" / f"{export.names[2]}.jpg"
    os.rename(jpeg, jpeg.with_suffix(".png"))
    refused(tmp_path, f"{jpeg.with_suffix('.png')}: expected a PNG image, found JPEG")


def test_no_layout_and_no_class_list(tmp_path):
    (tmp_path / "export").mkdir()
    refused(tmp_path, f"{tmp_path / 'export'}: neither a VOC-style tree")
    plain_folder(tmp_path)
    os.remove(tmp_path / "export" / "classes.txt")
    refused(tmp_path, "no labelmap.txt or classes.txt; pass the class list with --classes")


def test_a_corrupt_image_found_while_writing_leaves_nothing(tmp_path):
    """A JPEG whose header reads but whose data is cut short passes the checks before the
    build and fails in it: TFDS's temporary folder goes, nothing is prepared."""
    export = cvat_export(tmp_path)
    path = tmp_path / "export" / "JPEGImages" / f"{export.names[-1]}.jpg"
    path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])
    with pytest.raises(data.DataError) as error:
        data.build("custom_seg/bad", tmp_path / "export", tmp_path / "tfds")
    assert str(error.value).startswith(f"{path}: corrupt or truncated image")
    assert "_generate_examples" in {entry.name for entry in error.traceback}
    assert_nothing_prepared(tmp_path / "tfds", "bad")


def test_a_refused_rebuild_keeps_the_old_build(tmp_path):
    """--overwrite replaces a build only after the new files pass every check."""
    export = cvat_export(tmp_path)
    data.build("custom_seg/kept", tmp_path / "export", tmp_path / "tfds")
    with pytest.raises(FileExistsError, match="custom_seg/kept is already built in .*"
                                              "pass --overwrite"):
        data.build("custom_seg/kept", tmp_path / "export", tmp_path / "tfds")
    os.remove(tmp_path / "export" / "JPEGImages" / f"{export.names[0]}.jpg")
    with pytest.raises(data.DataError, match="mask\\(s\\) without an image"):
        data.build("custom_seg/kept", tmp_path / "export", tmp_path / "tfds",
                   overwrite=True)
    examples = tfds.load("custom_seg/kept", data_dir=str(tmp_path / "tfds"),
                         split="train+val")
    assert sorted(ex["file_name"].decode() for ex in tfds.as_numpy(examples)) == \
        export.names


@pytest.mark.parametrize("fraction", [1.0, -0.1])
def test_a_validation_fraction_outside_0_1(tmp_path, fraction):
    cvat_export(tmp_path)
    refused(tmp_path, f"the validation fraction must lie in [0, 1), got {fraction}",
            val_fraction=fraction)
