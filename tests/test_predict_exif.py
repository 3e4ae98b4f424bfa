"""tools.predict on phone photos (EXIF orientation) and on folders with other files."""
import io
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageOps

from deeplab_tf import config as config_lib
from deeplab_tf import visualization
from deeplab_tf.evaluation import inference


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


def test_predict_turns_phone_photos_and_lists_what_it_skips(tmp_path):
    config = config_lib.ExperimentConfig(name="test")
    config.model.depth = 50
    config.eval.output_stride = 16
    config.eval.crop_size = (33, 33)  # the 29x18 picture is padded to 33x33
    config.data.dataset = "synthetic_voc"
    tf.keras.utils.set_random_seed(3)
    model = config_lib.build_model(config.model)
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "config.json").write_text(config_lib.to_json(config))
    tf.train.CheckpointManager(tf.train.Checkpoint(model=model), str(workdir / "checkpoints"),
                               max_to_keep=1).save()

    inputs = tmp_path / "inputs"
    (inputs / "more").mkdir(parents=True)
    rows, cols = np.mgrid[:18, :29]
    stored = np.stack([rows * 14, cols * 8, (rows + cols) * 5], -1).astype(np.uint8)
    # Orientation 6: the camera was turned; viewers show the stored pixels turned 90
    # degrees clockwise, 29 high and 18 wide.
    (inputs / "phone.jpg").write_bytes(with_orientation(stored, 6))
    Image.fromarray(stored).save(inputs / "clip.webp")
    (inputs / "notes.txt").write_text("not an image")
    (inputs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(30))
    output = tmp_path / "out"
    process = subprocess.run(
        [sys.executable, "-m", "tools.predict", f"--workdir={workdir}", f"--input={inputs}",
         f"--output={output}"], capture_output=True, text=True, timeout=300)
    assert process.returncode == 1, process.stderr[-3000:]  # broken.png was skipped
    errors = process.stderr.splitlines()
    assert f"ignored {inputs / 'clip.webp'}: not a .jpg/.jpeg/.png file" in errors
    assert f"ignored {inputs / 'notes.txt'}: not a .jpg/.jpeg/.png file" in errors
    assert f"ignored {inputs / 'more'}: a directory (directories are not searched)" in errors
    assert any(line.startswith(f"skipped {inputs / 'broken.png'}: ") for line in errors)
    assert "done: 1 predicted, 1 skipped" in process.stdout

    labels = np.array(Image.open(output / "labels" / "phone.png"))
    assert labels.shape == (29, 18)
    decoded = tf.io.decode_jpeg((inputs / "phone.jpg").read_bytes()).numpy()
    upright = np.rot90(decoded, k=-1)  # 90 degrees clockwise, written independently
    expected = inference.predict_labels(model, tf.constant(upright[None].copy(), tf.float32),
                                        crop_size=(33, 33)).numpy()[0]
    assert len(np.unique(expected)) > 1  # a turn the wrong way would not match
    np.testing.assert_array_equal(labels, expected)
    overlay = np.array(Image.open(output / "overlays" / "phone.png"))
    assert overlay.shape == (29, 18, 3)
    assert sorted(os.listdir(output / "labels")) == ["phone.png"]
