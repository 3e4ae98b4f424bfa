"""The SavedModel serves batch norm folded into the convolutions (by default): its labels
equal the Keras model's, as trained, except at near-ties, in a fresh process without
deeplab_tf; `tools.export --nofold_batch_norm` serves the graph as trained. Both record
which in deeplab_export.json, and the checkpoint is not changed by the fold.

The model is a ResNet-50 DeepLabv3 with random weights and batch norm statistics far from
(0, 1) (`randomise_batch_norm`), so that a wrong fold changes the labels beyond rounding
(checked by hand: an epsilon 10x too large moves 13 decided pixels; a missing gamma, beta
or mean far more).
"""
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import near_ties
from deeplab_tf import config as config_lib
from deeplab_tf.evaluation import inference
from deeplab_tf.export import saved_model
from deeplab_tf.modeling import fold_batch_norm
from test_fold_batch_norm import randomise_batch_norm

pytestmark = pytest.mark.slow  # two exports of a ResNet-50 DeepLabv3

NUM_CLASSES = 5
IMAGE_SIZE = (40, 57)
CROP_SIZE = (49, 65)  # eval.crop_size: the images are padded to it
NUM_BATCH_NORMS = 53 + 6  # ResNet-50, then ASPP
# Runs in a fresh interpreter where importing deeplab_tf is made impossible.
SERVE_SCRIPT = r"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "deeplab_tf":
            raise ImportError(f"{name} must not be needed to serve")
sys.meta_path.insert(0, Block())
import numpy as np, tensorflow as tf
images, outputs = np.load(sys.argv[1]), {}
for i, export_dir in enumerate(sys.argv[3:]):
    out = tf.saved_model.load(export_dir).signatures["serve_images"](images=tf.constant(images))
    outputs[f"labels_{i}"] = out["labels"].numpy()
np.savez(sys.argv[2], **outputs)
"""


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """(Keras model, images, {"folded"|"trained": (export dir, deeplab_export.json, labels)}):
    `tools.export` with and without --nofold_batch_norm on one work dir's checkpoint."""
    config = config_lib.ExperimentConfig(name="test")
    config.model.depth = 50
    config.model.num_classes = config.data.num_classes = NUM_CLASSES
    config.eval.output_stride = 16
    config.eval.scales, config.eval.flip = (1.0,), False
    config.eval.crop_size = CROP_SIZE
    keras.utils.set_random_seed(3)
    model = config_lib.build_model(config.model)
    randomise_batch_norm(model, seed=4)
    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, (2,) + IMAGE_SIZE + (3,), dtype=np.uint8)
    terms = calibrate_logits(model, images)
    work = tmp_path_factory.mktemp("fold")
    (work / "config.json").write_text(config_lib.to_json(config))
    tf.train.CheckpointManager(tf.train.Checkpoint(model=model), str(work / "checkpoints"),
                               1).save()
    exports = {}
    for name, flag in (("folded", []), ("trained", ["--nofold_batch_norm"])):
        export_dir = str(work / name)
        process = subprocess.run([sys.executable, "-m", "tools.export", f"--workdir={work}",
                                  f"--export_dir={export_dir}", "--warmup_size=0", *flag],
                                 capture_output=True, text=True, timeout=600)
        assert process.returncode == 0, process.stderr[-3000:]
        with open(os.path.join(export_dir, saved_model.METADATA_FILE)) as f:
            exports[name] = [export_dir, json.load(f)]
    inputs, outputs = str(work / "images.npy"), str(work / "labels.npz")
    np.save(inputs, images)
    process = subprocess.run([sys.executable, "-c", SERVE_SCRIPT, inputs, outputs,
                              exports["folded"][0], exports["trained"][0]],
                             capture_output=True, text=True, timeout=600, cwd=str(work))
    assert process.returncode == 0, process.stderr[-3000:]
    served = np.load(outputs)
    exports["folded"].append(served["labels_0"])
    exports["trained"].append(served["labels_1"])
    return model, images, terms, exports


def calibrate_logits(model, images):
    """Centres and scales the random model's logits on `images` (padded as served), so that all classes win
    somewhere (a random ResNet's features share one large component: uncentred, one class
    wins everywhere). Returns the largest |logit - bias| (what rounding scales with)."""
    layer = model.get_layer("logits")
    kernel, bias = layer.get_weights()
    padded = inference.pad_with_mean_pixel(tf.constant(images, tf.float32), *CROP_SIZE)
    logits = keras.ops.convert_to_numpy(model(padded, training=False))
    logits = logits.reshape(-1, NUM_CLASSES)
    scale = 2.0 / logits.std(axis=0).mean()
    layer.set_weights([kernel * scale, ((bias - logits.mean(axis=0)) * scale).astype(
        np.float32)])
    return float(np.abs(logits - bias).max() * scale)


def bound(terms):
    """The most the fold's float32 rounding can move a top-2 gap of the probabilities.

    Folded, each of the model's convolutions computes bn(conv(x)) in another order (the
    kernel scaled first, the mean and beta in the bias): its outputs are off by at most ~16
    roundings of their largest terms, as for any float32 reordering (test_export_deploy's
    bound); over the NUM_BATCH_NORMS folded layers these add up, each relative to the
    largest activations, which end as `terms` in the logits. Two logits each off by that
    much move a logit gap by twice it, and a probability gap by no more (softmax moves each
    probability by at most half the largest logit change). Measured here: the probabilities
    differ by <= 1.5e-5, about 1/100 of the bound.
    """
    return 2 * 16 * near_ties.EPS["float32"] * NUM_BATCH_NORMS * terms


def test_folded_export_serves_the_trained_models_labels(exports):
    model, images, terms, exports = exports
    predict = inference.make_predict_fn(model, crop_size=CROP_SIZE)  # Keras, as trained: batch norm not folded
    reference_labels, reference = (np.asarray(t) for t in predict(tf.constant(
        images, tf.float32)))
    # Not a trivial comparison: every class wins somewhere.
    assert sorted(np.unique(reference_labels)) == list(range(NUM_CLASSES))
    crossings = sum(near_ties.edge_crossings(labels) for labels in reference_labels)
    for name in ("folded", "trained"):
        labels = exports[name][2]
        assert labels.shape == (2,) + IMAGE_SIZE
        near_ties.assert_labels_match(reference, labels, bound(terms), crossings)
    folded, trained = exports["folded"][1], exports["trained"][1]
    assert (folded["fold_batch_norm"], folded["folded_batch_norms"],
            folded["batch_norms"]) == (True, NUM_BATCH_NORMS, NUM_BATCH_NORMS)
    assert (trained["fold_batch_norm"], trained["folded_batch_norms"],
            trained["batch_norms"]) == (False, 0, NUM_BATCH_NORMS)


def stored_variables(export_dir):
    reader = tf.train.load_checkpoint(os.path.join(export_dir, "variables", "variables"))
    return sorted((shape, reader.get_tensor(name).tobytes()) for name, shape in
                  ((n, tuple(s)) for n, s in reader.get_variable_to_shape_map().items()) if shape)


def digests(variables):
    return sorted((tuple(v.shape), np.asarray(v).tobytes()) for v in variables)


def test_exports_store_the_folded_or_the_trained_weights(exports):
    model, _, _, exports = exports
    served = fold_batch_norm.inference_model(model)
    for name, weights in (("trained", model.weights), ("folded", served.weights)):
        # --nofold_batch_norm: the checkpoint's weights; folded: no batch norm weights, and
        # every conv but the logits gains a bias. Plus the ASPP dropout's seed state.
        stored = stored_variables(exports[name][0])
        assert len(stored) == len(weights) + 1, name
        assert set(digests(weights)) <= set(stored), name
    assert len(served.weights) == len(model.weights) - 4 * NUM_BATCH_NORMS + NUM_BATCH_NORMS
    # The checkpoint the exports read is unchanged (its batch norm statistics included).
    checkpoint = os.path.join(os.path.dirname(exports["trained"][0]), "checkpoints")
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(checkpoint))
    values = {reader.get_tensor(name).tobytes() for name, shape in
              reader.get_variable_to_shape_map().items() if shape}
    assert all(np.asarray(w).tobytes() in values for w in model.weights)
