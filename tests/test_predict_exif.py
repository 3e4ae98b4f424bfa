"""EXIF orientation as PIL applies it. (tools.predict on a phone photo and on a folder
with other files: tests/test_predict.py.)"""
import io

import numpy as np
import pytest
from PIL import Image, ImageOps

from deeplab_tf import visualization


def with_orientation(array, orientation, image_format="JPEG"):
    """Encoded bytes of `array` (as stored) carrying an EXIF orientation tag."""
    image = Image.fromarray(array)
    exif = image.getexif()
    exif[visualization.EXIF_ORIENTATION_TAG] = orientation
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, exif=exif, **(
        {"quality": 95} if image_format == "JPEG" else {}))
    return buffer.getvalue()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_as_pil_does(orientation):
    array = np.random.default_rng(orientation).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    encoded = with_orientation(array, orientation, "PNG")  # lossless: exact comparison
    assert visualization.exif_orientation(encoded) == orientation
    expected = np.array(ImageOps.exif_transpose(Image.open(io.BytesIO(encoded))))
    np.testing.assert_array_equal(
        visualization.apply_exif_orientation(array, orientation), expected)


def test_no_or_unreadable_exif_means_as_stored():
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((3, 4, 3), np.uint8)).save(buffer, format="PNG")
    assert visualization.exif_orientation(buffer.getvalue()) == 1
    assert visualization.exif_orientation(b"not an image") == 1
