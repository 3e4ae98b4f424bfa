"""What the training run writes to TensorBoard, read back from the event files: the
`mean_iou` and `pixel_accuracy` scalars equal `evaluation.metrics.ConfusionMatrix` on the
batches since the previous summary, and the `image`, `ground_truth` and `prediction`
images are the input and the two class maps in the VOC colours.

The model has a known answer (tests/known_answer.py) and does not move (batch norm frozen,
learning rate 0, no dropout), so its predictions are known where the colour is uniform; the labels
differ from them on purpose, so the IoUs are neither 0 nor 1 everywhere.
"""
import os

import numpy as np
import pytest
import tensorflow as tf

from deeplab_tf import config as config_lib
from deeplab_tf.evaluation import metrics
from deeplab_tf.train import loop

import event_files
import known_answer

SIZE = 97  # 16 * 6 + 1: feature pixel j sits on image pixel 16 j, as for a 513 crop
# At scale 1 a label reads the features within 16 + 2 px (tests/known_answer.py).
MARGIN = 20


def voc_colour(class_id):
    """The PASCAL VOC devkit colour map (VOClabelcolormap.m), written out independently:
    the bits of the class id go, three at a time, to the high bits of R, G and B."""
    red = green = blue = 0
    for bit in range(8):
        red |= ((class_id >> (3 * bit)) & 1) << (7 - bit)
        green |= ((class_id >> (3 * bit + 1)) & 1) << (7 - bit)
        blue |= ((class_id >> (3 * bit + 2)) & 1) << (7 - bit)
    return red, green, blue


VOC_COLOURS = np.array([voc_colour(i) for i in range(256)], np.uint8)


def batches():
    """Three batches of one 97x97 mosaic each: (images, labels, known prediction classes).
    Three, so that the two summary windows (steps 1-2 and 3-4) see different batches.

    Labels = the colours' classes, except one tile labelled with another class and the
    top rows ignored (255)."""
    colours = known_answer.distinct_colours(21)
    out = []
    for grid, relabel in (([[0, 3], [15, 9]], (1, 1, 7)), ([[12, 0], [20, 3]], (0, 0, 5)),
                          ([[4, 4], [0, 18]], (0, 1, 0))):
        image, classes = known_answer.mosaic(grid, colours, 49)
        image, classes = image[:SIZE, :SIZE], classes[:SIZE, :SIZE]
        labels = classes.copy()
        row, column, new_class = relabel
        labels[row * 49:(row + 1) * 49, column * 49:(column + 1) * 49] = new_class
        labels[:3] = 255
        out.append((image, labels, classes))
    return out


def decoded_png(tensor, tag):
    """An image summary's [width, height, PNG bytes] as the decoded image."""
    assert tensor[:2].tolist() == [str(SIZE).encode()] * 2, tag
    return tf.io.decode_png(tensor[2]).numpy()


def class_ids(colour_image):
    """Class ids of a VOC-coloured image (every colour of the map is distinct)."""
    lookup = {tuple(c): i for i, c in enumerate(VOC_COLOURS)}
    flat = [lookup[tuple(c)] for c in colour_image.reshape(-1, 3)]
    return np.array(flat).reshape(colour_image.shape[:2])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    data = batches()
    images = np.stack([b[0] for b in data]).astype(np.float32)[:, None]
    labels = np.stack([b[1] for b in data]).astype(np.int32)[:, None]

    def dataset_fn(input_context=None, seed=0):  # batch k at steps k + 1, k + 4, ...
        return tf.data.Dataset.from_tensor_slices((images, labels)).repeat()

    config = config_lib.load_experiment("smoke", [
        f"data.crop_size={SIZE}", "train.batch_size=1", "train.steps=4",
        # No ASPP dropout: the known answer holds only for the deterministic forward pass.
        "model.aspp_dropout_rate=0.0",
        "train.freeze_batch_norm=True", "train.base_learning_rate=0.0",
        "train.summary_every=2", "train.image_summary_every=1",
        "train.checkpoint_every=100"])
    workdir = str(tmp_path_factory.mktemp("summaries"))
    trainer = loop.Trainer(config, workdir, dataset_fn=dataset_fn)
    known_answer.set_nearest_colour_weights(trainer.model, known_answer.distinct_colours(21))
    trainer.run()
    return data, event_files.read(os.path.join(workdir, "train"), image=decoded_png)


def test_image_summaries_are_the_input_and_the_coloured_class_maps(run):
    data, found = run
    for tag in ("image", "ground_truth", "prediction"):
        assert sorted(found[tag]) == [1, 2, 3, 4], tag
    for step in (1, 2, 3, 4):
        image, labels, classes = data[(step - 1) % 3]
        np.testing.assert_array_equal(found["image"][step], image)
        np.testing.assert_array_equal(found["ground_truth"][step], VOC_COLOURS[labels])
        predicted = class_ids(found["prediction"][step])
        safe = known_answer.safe_mask(classes, MARGIN)
        assert safe.sum() >= 4 * 8 * 8
        np.testing.assert_array_equal(predicted[safe], classes[safe])


def test_mean_iou_and_accuracy_equal_the_confusion_matrix_of_the_batches(run):
    data, found = run
    assert sorted(found["mean_iou"]) == [2, 4]
    for step in (2, 4):
        confusion = metrics.ConfusionMatrix(21)
        for done in (step - 1, step):  # the batches since the previous summary
            confusion.update(data[(done - 1) % 3][1], class_ids(found["prediction"][done]))
        result = confusion.result()
        assert 0.1 < result["miou"] < 0.9 and result["num_classes_averaged"] >= 6
        assert found["mean_iou"][step] == pytest.approx(result["miou"], rel=1e-6)
        assert found["pixel_accuracy"][step] == pytest.approx(result["pixel_accuracy"],
                                                              rel=1e-6)
