"""What a hostile file cannot make a build do: decode an image or mask over the pixel bound
(or one PIL takes for a decompression bomb), or allocate a label of the size a COCO file
claims. Each is one line naming the file. (Classes files: tests/test_data_class_files.py.)"""
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from deeplab_tf import data, synthetic, synthetic_exports
from deeplab_tf.data import validation

import data_layouts

def png_header(width, height, mode="RGB"):
    """A PNG of only a header claiming width x height (a few dozen bytes): what PIL reads
    to learn the size, with no pixel data behind it."""
    def chunk(kind, body):
        return (struct.pack(">I", len(body)) + kind + body +
                struct.pack(">I", zlib.crc32(kind + body) & 0xffffffff))
    color_type = {"RGB": 2, "L": 0}[mode]
    return (b"\x89PNG\r\n\x1a\n" +
            chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)) +
            chunk(b"IEND", b""))


def jpeg_claiming(path, width, height):
    """Rewrites the JPEG at `path` so its frame header (SOF0) claims width x height."""
    data_bytes = bytearray(path.read_bytes())
    sof = data_bytes.index(b"\xff\xc0")
    data_bytes[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    path.write_bytes(bytes(data_bytes))


OVER = (9000, 9000)  # 81 million pixels: over MAX_PIXELS, under PIL's bomb warning
BOMB = (60000, 60000)  # PIL raises DecompressionBombError from the header alone


def test_the_bound_is_below_pils_own_warning():
    assert validation.MAX_PIXELS < OVER[0] * OVER[1] < Image.MAX_IMAGE_PIXELS
    with Image.open(io.BytesIO(png_header(*OVER))) as image:
        assert image.size == OVER  # PIL alone would go on and decode it


def refused(build, *expected):
    with pytest.raises(data.DataError) as error:
        build()
    message = str(error.value)
    assert "\n" not in message
    for text in expected:
        assert str(text) in message, message
    return message


@pytest.mark.parametrize("size, which", [(OVER, "image"), (BOMB, "image"), (BOMB, "mask")])
def test_own_data_image_or_mask_over_the_bound(tmp_path, size, which):
    export = synthetic_exports.write_plain_folder(tmp_path / "export", seed=1, num_images=3,
                                                  min_size=12, max_size=16)
    folder = "images" if which == "image" else "masks"
    path = tmp_path / "export" / folder / f"{export.names[1]}.png"
    path.write_bytes(png_header(*size, "RGB" if which == "image" else "L"))
    refused(lambda: data.build("custom_seg/big", tmp_path / "export", tmp_path / "tfds"),
            f"{path}: {which}", "over the bound of 67,108,864 pixels")


@pytest.mark.parametrize("size", [OVER, BOMB])
def test_voc_jpeg_over_the_bound(tmp_path, size):
    source = tmp_path / "source"
    synthetic.generate(str(source), seed=2, num_train=2, num_val=1, min_size=16,
                       max_size=20)
    path = source / "JPEGImages" / "syn_000001.jpg"
    jpeg_claiming(path, *size)
    refused(lambda: data.build("synthetic_voc", source, tmp_path / "tfds"),
            f"{path}: image", "over the bound")


def test_cityscapes_label_bomb(tmp_path):
    root = tmp_path / "cityscapes"
    data_layouts.make_cityscapes(root, np.random.default_rng(3))
    label = root / "gtFine" / "train" / "bonn" / "bonn_000000_000019_gtFine_labelIds.png"
    label.write_bytes(png_header(*BOMB, "L"))
    refused(lambda: data.build("cityscapes_seg", root, tmp_path / "tfds"),
            f"{label}: label PNG over the bound")


@pytest.mark.parametrize("height, width, message", [
    (10 ** 6, 10 ** 6, "image 2: 1000000x1000000 = 1,000,000,000,000 pixels is over the "
                       "bound"),
    (0, 80, "image 2: height 0 and width 80 must be positive integers"),
    (60.0, 80, "image 2: height 60.0 and width 80 must be positive integers"),
    (True, 80, "image 2: height True and width 80 must be positive integers"),
], ids=["huge", "zero", "float", "bool"])
def test_coco_image_size_is_bounded_before_the_label_is_allocated(tmp_path, height, width,
                                                                  message):
    """Before, image 2's label was allocated from these numbers (np.zeros of a terabyte,
    or a TypeError)."""
    layout = data_layouts.make_coco(tmp_path / "manual", np.random.default_rng(2))
    layout.dataset["images"][1].update(height=height, width=width)
    data_layouts.write_coco_json(layout.annotation_file, layout.dataset)
    refused(lambda: data.build("coco_voc_seg", layout.root, tmp_path / "tfds"),
            f"{layout.annotation_file}: {message}")
