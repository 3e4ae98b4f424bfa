"""The PNG pictures: contact sheet, training curves from event files, per-class IoU bars."""
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from deeplab_tf import classes, plots, visualization


def colours_in(path):
    pixels = np.array(Image.open(path).convert("RGB")).reshape(-1, 3)
    return {tuple(int(v) for v in c) for c in np.unique(pixels, axis=0)}


def test_contact_sheet_shows_every_class_colour_exactly(tmp_path):
    rng = np.random.default_rng(0)
    label = np.zeros((30, 40), np.uint8)
    label[5:20, 5:25] = 15  # person
    label[20:22] = 255      # border
    prediction = np.zeros((30, 40), np.uint8)
    prediction[10:25, 10:30] = 7  # car: only in the prediction
    rows = [(f"img{i}", rng.integers(0, 256, (30, 40, 3), dtype=np.uint8), label, prediction)
            for i in range(3)]
    table = classes.voc()
    palette = table.palette()
    path = plots.contact_sheet(str(tmp_path / "sheet.png"), rows, table, dpi=50)
    picture = Image.open(path)
    # figsize (6, 2 * rows + 0.6) inches at 50 dots per inch.
    assert picture.size == (300, 330)
    present = colours_in(path)
    for class_id in (0, 7, 15, 255):  # noisy images beside them, still exact
        assert tuple(int(v) for v in palette[class_id]) in present, class_id
    assert len(present) <= 128
    with pytest.raises(ValueError, match="at least one row"):
        plots.contact_sheet(str(tmp_path / "none.png"), [], table)


def test_legend_shows_each_class_colour_of_its_table(tmp_path):
    table = classes.ClassTable(("background", "car", "road"),
                               ((0, 0, 0), (250, 50, 83), (128, 64, 128)))
    path = plots.legend(str(tmp_path / "legend.png"), table, dpi=50)
    present = colours_in(path)
    for colour in table.colors + (table.ignore_color,):
        assert colour in present, colour
    assert (0, 64, 128) not in present  # VOC's tvmonitor: only the table's colours


def test_scalars_read_back_from_event_files_and_curves_drawn(tmp_path):
    writer = tf.summary.create_file_writer(str(tmp_path / "train"))
    with writer.as_default():
        for step, loss in ((10, 2.5), (20, 1.25), (30, 0.75)):
            tf.summary.scalar("loss", loss, step=step)
            tf.summary.scalar("learning_rate", 0.01 / step, step=step)
            tf.summary.scalar("mean_iou", step / 100, step=step)
        tf.summary.image("prediction", np.zeros((1, 4, 4, 3), np.uint8), step=10)
    writer.close()
    scalars = plots.read_scalars(str(tmp_path / "train"))
    assert set(scalars) == {"loss", "learning_rate", "mean_iou"}  # not the image
    steps, values = scalars["loss"]
    np.testing.assert_array_equal(steps, [10, 20, 30])
    np.testing.assert_allclose(values, [2.5, 1.25, 0.75])
    np.testing.assert_allclose(scalars["learning_rate"][1], [0.001, 0.0005, 0.01 / 30],
                               rtol=1e-6)
    evaluated = {"eval/miou": (np.array([30]), np.array([0.4]))}
    path = plots.training_curves(str(tmp_path / "curves.png"), scalars, evaluated, dpi=40)
    assert Image.open(path).size == (400, 120)  # figsize (10, 3)


def test_per_class_iou_chart(tmp_path):
    result = {"miou": 0.5, "per_class_iou": {"background": 0.9, "aeroplane": 0.1,
                                              "bicycle": None}}
    path = plots.per_class_iou_chart(str(tmp_path / "iou.png"), result,
                                     visualization.voc_palette(), dpi=50)
    picture = Image.open(path)
    assert picture.size == (200, 175)  # figsize (max(4, 0.4 * 3 + 1), 3.5)
    # The bars carry the class colours: aeroplane's dark red is drawn.
    assert (128, 0, 0) in colours_in(path)
