"""mIoU from one confusion matrix, checked against independent computations.

The reference is the official Cityscapes pixel-level evaluation script
(cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling), run as its own process on
label-ID PNGs written here, exactly as a Cityscapes submission would be scored.
"""
import json
import math
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from PIL import Image

from deeplab_tf import visualization
from deeplab_tf.evaluation import metrics


def test_hand_computed_example():
    labels = np.array([[0, 0, 1, 255], [2, 2, 2, 1]])
    predictions = np.array([[0, 1, 1, 2], [2, 2, 0, 1]])
    confusion = metrics.ConfusionMatrix(4)
    confusion.update(labels, predictions)
    # class 0: TP 1, FP 1 (a 2 predicted 0), FN 1 -> 1/3; class 1: TP 2, FP 1 -> 2/3;
    # class 2: TP 2, FN 1, the 255 pixel's prediction ignored -> 2/3; class 3 absent.
    result = confusion.result()
    assert result["per_class_iou"] == pytest.approx(
        {"0": 1 / 3, "1": 2 / 3, "2": 2 / 3, "3": None}, nan_ok=False)
    assert result["absent_classes"] == ["3"]
    assert result["miou"] == pytest.approx((1 / 3 + 2 / 3 + 2 / 3) / 3)
    assert result["pixel_accuracy"] == pytest.approx(5 / 7)
    assert result["num_pixels"] == 7
    assert np.array_equal(confusion.matrix, [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 2, 0],
                                             [0, 0, 0, 0]])


def test_class_only_in_prediction_counts_with_iou_zero():
    confusion = metrics.ConfusionMatrix(3)
    confusion.update(np.array([0, 0, 0, 0]), np.array([0, 0, 0, 2]))
    result = confusion.result()
    assert result["per_class_iou"] == {"0": 0.75, "1": None, "2": 0.0}
    assert result["miou"] == pytest.approx(0.375)


def test_bad_values_name_the_image():
    confusion = metrics.ConfusionMatrix(3)
    with pytest.raises(ValueError, match="img7.png: label value 5 is outside 0..2"):
        confusion.update(np.array([0, 5]), np.array([0, 1]), name="img7.png")
    with pytest.raises(ValueError, match="prediction value 3"):
        confusion.update(np.array([0, 1]), np.array([0, 3]))
    with pytest.raises(ValueError, match="differ in shape"):
        confusion.update(np.zeros((2, 3)), np.zeros((3, 2)))


def test_split_matrix_is_not_the_mean_of_images_and_matches_keras_mean_iou():
    rng = np.random.default_rng(0)
    confusion = metrics.ConfusionMatrix(5)
    keras_miou = keras.metrics.MeanIoU(num_classes=5, ignore_class=255)
    per_image = []
    for size in ((7, 9), (30, 20), (3, 3)):
        labels = rng.integers(0, 5, size)
        labels[rng.random(size) < 0.1] = 255
        predictions = np.where(rng.random(size) < 0.6, labels, rng.integers(0, 5, size)) % 255
        predictions = np.minimum(predictions, 4)
        confusion.update(labels, predictions)
        single = metrics.ConfusionMatrix(5)
        single.update(labels, predictions)
        per_image.append(single.result()["miou"])
        keras_miou.update_state(labels, predictions)
    miou = confusion.result()["miou"]
    assert miou == pytest.approx(float(keras_miou.result()), abs=1e-6)
    assert abs(miou - np.mean(per_image)) > 1e-4  # accumulated over the split, not averaged
    table = metrics.format_table(confusion.result(), title="test")
    assert f"{100 * miou:8.2f}" in table


def _cityscapes_tables():
    from cityscapesscripts.helpers import labels as cs_labels
    train_to_id = {label.trainId: label.id for label in cs_labels.labels
                   if 0 <= label.trainId < 19}
    ignored_ids = [label.id for label in cs_labels.labels
                   if label.ignoreInEval and 0 <= label.id < 255]
    return train_to_id, ignored_ids


def _write_label_ids(path, train_ids, train_to_id, ignored_ids, rng):
    ids = np.zeros(train_ids.shape, np.uint8)
    for train_id, label_id in train_to_id.items():
        ids[train_ids == train_id] = label_id
    ignore = train_ids == 255
    ids[ignore] = rng.choice(ignored_ids, size=int(ignore.sum()))  # every "void" id occurs
    Image.fromarray(ids).save(path)


def test_miou_equals_official_cityscapes_script(tmp_path):
    train_to_id, ignored_ids = _cityscapes_tables()
    rng = np.random.default_rng(1)
    dataset = tmp_path / "cityscapes"
    gt_dir = dataset / "gtFine" / "val" / "testcity"
    results = tmp_path / "results"
    export = tmp_path / "export"
    for d in (gt_dir, results, export):
        d.mkdir(parents=True)
    names = visualization.CITYSCAPES_CLASSES
    confusion = metrics.ConfusionMatrix(19, class_names=names)
    # 'train' (16) and 'wall' (3) appear nowhere: absent; 'bus' (15) only in predictions.
    gt_classes = np.array([c for c in range(19) if c not in (16, 3, 15)])
    for frame, (height, width) in enumerate(((40, 64), (33, 50), (48, 48))):
        labels = rng.choice(gt_classes, size=(height, width))
        labels[rng.random((height, width)) < 0.15] = 255
        noisy = rng.choice([c for c in range(19) if c not in (16, 3, 12)], size=(height, width))
        predictions = np.where(rng.random((height, width)) < 0.7, labels, noisy)
        predictions = np.where(predictions == 255, noisy, predictions)
        stem = f"testcity_000000_{frame:06d}"
        _write_label_ids(gt_dir / f"{stem}_gtFine_labelIds.png", labels, train_to_id,
                         ignored_ids, rng)
        _write_label_ids(results / f"{stem}_pred.png", predictions, train_to_id, ignored_ids,
                         rng)
        confusion.update(labels, predictions, name=stem)

    env = dict(os.environ, CITYSCAPES_DATASET=str(dataset), CITYSCAPES_RESULTS=str(results),
               CITYSCAPES_EXPORT_DIR=str(export))
    # The script's own main(), in its own process. Only its instance-level (nIoU) part is
    # switched off: it calls np.in1d, which numpy 2 removed; the IoU code path is unchanged.
    script = ("from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as ev\n"
              "ev.args.evalInstLevelScore = False\n"
              "ev.main()\n")
    process = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                             text=True, timeout=300)
    assert process.returncode == 0, process.stdout[-2000:] + process.stderr[-2000:]
    official = json.loads((export / "resultPixelLevelSemanticLabeling.json").read_text())

    ours = confusion.result()
    for name in names:
        theirs = official["classScores"][name]
        if math.isnan(theirs):
            assert ours["per_class_iou"][name] is None, name
        else:
            assert ours["per_class_iou"][name] == pytest.approx(theirs, abs=1e-12), name
    assert sorted(ours["absent_classes"]) == ["train", "wall"]
    assert ours["per_class_iou"]["bus"] == 0.0  # predicted, never true: IoU 0, averaged in
    assert ours["miou"] == pytest.approx(official["averageScoreClasses"], abs=1e-12)
