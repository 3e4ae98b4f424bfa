"""Colormaps and tools.predict: palette PNGs, colour masks, overlays; bad files skipped."""
import io
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from deeplab_tf import config as config_lib
from deeplab_tf import classes, visualization
from deeplab_tf.evaluation import inference

import known_answer
import serving_fuzz
from test_predict_exif import with_orientation


def test_voc_palette_matches_the_devkit_colours():
    palette = visualization.voc_palette()
    assert palette.shape == (256, 3) and palette.dtype == np.uint8
    # Colours of the VOC ground-truth PNGs: aeroplane, bicycle, person, tvmonitor, void.
    assert palette[0].tolist() == [0, 0, 0]
    assert palette[1].tolist() == [128, 0, 0]
    assert palette[2].tolist() == [0, 128, 0]
    assert palette[15].tolist() == [192, 128, 128]
    assert palette[20].tolist() == [0, 64, 128]
    assert palette[255].tolist() == [224, 224, 192]
    assert len({tuple(c) for c in palette}) == 256


def test_cityscapes_colours_match_the_official_label_table():
    from cityscapesscripts.helpers.labels import labels
    official = {label.trainId: label.color for label in labels if 0 <= label.trainId < 19}
    palette = visualization.cityscapes_palette()
    for train_id, colour in official.items():
        assert tuple(palette[train_id]) == colour
    names = {label.trainId: label.name for label in labels if 0 <= label.trainId < 19}
    assert visualization.CITYSCAPES_CLASSES == tuple(names[i] for i in range(19))
    assert classes.builtin("cityscapes_seg").names == visualization.CITYSCAPES_CLASSES


def test_label_png_round_trip_and_overlay(tmp_path):
    label = np.array([[0, 1, 2], [15, 255, 20]], np.uint8)
    palette = visualization.voc_palette()
    path = tmp_path / "label.png"
    visualization.label_png(label, palette).save(path)
    reread = Image.open(path)
    assert reread.mode == "P"
    np.testing.assert_array_equal(np.array(reread), label)
    np.testing.assert_array_equal(np.array(reread.convert("RGB")),
                                  visualization.colorize(label, palette))
    image = np.full((2, 3, 3), 100, np.uint8)
    blended = visualization.overlay(image, label, palette, alpha=0.5)
    np.testing.assert_array_equal(blended[1, 1], [100, 100, 100])  # 255: image kept
    np.testing.assert_array_equal(blended[0, 1], [114, 50, 50])  # half of (128,0,0)+100
    strip = visualization.batch_side_by_side(image[None], label[None], label[None], palette)
    assert strip.shape == (1, 2, 9, 3)
    with pytest.raises(ValueError, match="sizes differ"):
        visualization.overlay(image[:1], label, palette)


def write_workdir(workdir, model, config):
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(config_lib.to_json(config))
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=model),
                                         os.path.join(workdir, "checkpoints"), max_to_keep=1)
    return manager.save()


def test_predict_tool_writes_masks_turns_phone_photos_and_lists_what_it_skips(tmp_path):
    """On a model with a known answer (tests/known_answer.py: class k is the nearest of 21
    colours), a mosaic of the 21 colours must come back as the 21 VOC classes; a JPEG with
    EXIF orientation 6 is predicted upright; files of other kinds in the folder are listed
    as ignored, undecodable and missing ones as skipped."""
    config = config_lib.ExperimentConfig(name="test")
    config.model.depth = 50
    config.eval.output_stride = 16
    config.eval.crop_size = (33, 33)  # every input below is padded to 33x33
    config.data.dataset = "synthetic_voc"
    colours = known_answer.distinct_colours(21)
    model = known_answer.set_nearest_colour_weights(config_lib.build_model(config.model),
                                                    colours)
    write_workdir(str(tmp_path / "work"), model, config)

    inputs = tmp_path / "inputs"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (21, 30, 3), dtype=np.uint8)
    Image.fromarray(photo).save(inputs / "photo.png")
    mosaic, mosaic_classes = known_answer.mosaic(np.arange(21).reshape(3, 7), colours, 64)
    Image.fromarray(mosaic).save(inputs / "mosaic.png")
    Image.fromarray(photo[:9, :13, 0]).save(inputs / "gray.png")
    (inputs / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    (inputs / "notes.txt").write_text("not an image, and not picked from the directory")
    single = tmp_path / "single.jpg"
    Image.fromarray(photo[:17, :11]).save(single, quality=95)
    missing = tmp_path / "missing.png"
    rows, cols = np.mgrid[:18, :29]
    stored = np.stack([rows * 14, cols * 8, (rows + cols) * 5], -1).astype(np.uint8)
    # Orientation 6: the camera was turned; viewers show the stored pixels turned 90
    # degrees clockwise, 29 high and 18 wide.
    (inputs / "phone.jpg").write_bytes(with_orientation(stored, 6))
    Image.fromarray(stored).save(inputs / "clip.webp")
    (inputs / "damaged.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(30))
    # 4 x 5000 = 20,000 pixels, but padded to a 33 x 5009 canvas: over max_side=4097.
    (inputs / "thin.png").write_bytes(serving_fuzz.hostile_png(4, 5000))
    (inputs / "more").mkdir()

    output = tmp_path / "out"
    process = subprocess.run(
        [sys.executable, "-m", "tools.predict", f"--workdir={tmp_path / 'work'}",
         f"--input={inputs},{single},{missing}", f"--output={output}"],
        capture_output=True, text=True, timeout=300)
    assert process.returncode == 1, process.stderr[-3000:]  # some files were skipped
    errors = process.stderr.splitlines()
    assert f"ignored {inputs / 'clip.webp'}: not a .jpg/.jpeg/.png file" in errors
    assert f"ignored {inputs / 'notes.txt'}: not a .jpg/.jpeg/.png file" in errors
    assert f"ignored {inputs / 'more'}: a directory (directories are not searched)" in errors
    for name in (inputs / "broken.jpg", inputs / "damaged.png", missing):
        assert any(f"] {name}: skipped: " in line for line in errors), name
    assert (f"skipped {inputs / 'thin.png'}: too_large: 4x5000 pixels is padded to 33x5009, "
            f"a side over max_side=4097") in errors
    assert "[3/9]" in process.stdout and "done: 5 predicted, 4 skipped" in process.stdout

    predict = inference.make_predict_fn(model, crop_size=(33, 33))
    for name, image in (("photo", photo), ("gray", np.dstack([photo[:9, :13, 0]] * 3)),
                        ("mosaic", mosaic),
                        ("single", tf.io.decode_jpeg(single.read_bytes()).numpy())):
        labels = np.array(Image.open(output / "labels" / f"{name}.png"))
        expected = predict(tf.constant(image[None], tf.float32))[0].numpy()[0]
        np.testing.assert_array_equal(labels, expected)
        colours = np.array(Image.open(output / "colors" / f"{name}.png"))
        np.testing.assert_array_equal(colours, visualization.voc_palette()[expected])
        assert np.array(Image.open(output / "overlays" / f"{name}.png")).shape == image.shape
    assert sorted(os.listdir(output / "labels")) == ["gray.png", "mosaic.png", "phone.png",
                                                      "photo.png", "single.png"]

    labels = np.array(Image.open(output / "labels" / "phone.png"))
    assert labels.shape == (29, 18)
    decoded = tf.io.decode_jpeg((inputs / "phone.jpg").read_bytes()).numpy()
    upright = np.rot90(decoded, k=-1)  # 90 degrees clockwise, written independently
    expected = predict(tf.constant(upright[None].copy(), tf.float32))[0].numpy()[0]
    assert len(np.unique(expected)) > 1  # a turn the wrong way would not match
    np.testing.assert_array_equal(labels, expected)
    assert np.array(Image.open(output / "overlays" / "phone.png")).shape == (29, 18, 3)
    labels = np.array(Image.open(output / "labels" / "mosaic.png"))
    safe = known_answer.safe_mask(mosaic_classes)
    assert safe.sum() == 21 * 8 * 8
    np.testing.assert_array_equal(labels[safe], mosaic_classes[safe])
    assert sorted(np.unique(labels)) == list(range(21))


def test_decode_image_names_each_problem():
    from deeplab_tf.export import serving
    rgb = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    encoded = buffer.getvalue()
    np.testing.assert_array_equal(serving.decode_image(encoded), rgb)
    with pytest.raises(ValueError, match="^not_an_image: not a JPEG or PNG image"):
        serving.decode_image(b"\x00" + bytes(40))
    with pytest.raises(ValueError, match="^unsupported_format: a GIF"):
        serving.decode_image(b"GIF89a" + bytes(40))
    bounds = serving.DEFAULT_BOUNDS._replace(max_pixels=34)
    with pytest.raises(ValueError, match="^too_large: 5x7 pixels is more than max_pixels=34"):
        serving.decode_image(encoded, bounds)
    # The canvas the bounds count is the image padded as the model runs it (crop 513).
    with pytest.raises(ValueError, match="^too_large: 4x1000000 pixels is padded to "
                                         "513x1000001, a side over max_side=4097"):
        serving.decode_image(serving_fuzz.hostile_png(4, 1_000_000), serving.DEFAULT_BOUNDS,
                             16, (513, 513))
    with pytest.raises(ValueError, match="^decode_failed: corrupt image data"):
        serving.decode_image(encoded[:40])  # header intact, pixel data cut off
    with pytest.raises(ValueError, match="^decode_failed: corrupt image header"):
        serving.decode_image(encoded[:20])


def test_predict_refuses_two_inputs_that_would_write_one_output(tmp_path):
    for name in ("a.jpg", "a.png", "b.png"):
        (tmp_path / name).write_bytes(b"never read")
    process = subprocess.run(
        [sys.executable, "-m", "tools.predict", f"--workdir={tmp_path / 'work'}",
         f"--input={tmp_path}", f"--output={tmp_path / 'out'}"],
        capture_output=True, text=True, timeout=300)
    assert process.returncode == 1
    assert (f"tools.predict: error: {tmp_path / 'a.jpg'} and {tmp_path / 'a.png'} would both "
            f"write a.png") in process.stderr
    assert not (tmp_path / "out").exists()  # refused before anything was written
