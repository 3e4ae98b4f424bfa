"""TFLite conversion of the single-scale model: the interpreter gives the Keras labels
(exactly, except at the Keras logits' argmax near-ties: tests/near_ties.py)."""
import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

import near_ties

from deeplab_tf import config as config_lib
from deeplab_tf.evaluation import inference
from deeplab_tf.export import tflite


@pytest.mark.slow
def test_tflite_labels_equal_keras_labels(tmp_path):
    tf.keras.utils.set_random_seed(2)
    config = config_lib.ExperimentConfig()
    config.model.depth = 50
    config.model.num_classes = 6
    model = config_lib.build_model(config.model)
    size = 49  # not OS*k+1: the padding and the crop are inside the converted graph
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (1, size, size, 3), dtype=np.uint8),
              np.tile(np.linspace(0, 255, size, dtype=np.uint8)[None, :, None, None],
                      (1, 1, size, 3))]
    logits = np.asarray(model(images[0].astype(np.float32)))
    kernel, bias = model.get_layer("logits").get_weights()
    model.get_layer("logits").set_weights([kernel / logits.std(),
                                           (bias - logits.mean()) / logits.std()])

    path = tflite.convert_tflite(model, str(tmp_path / "model.tflite"), size)
    interpreter = Interpreter(model_path=path)
    interpreter.allocate_tensors()
    (source,), (target,) = interpreter.get_input_details(), interpreter.get_output_details()
    assert tuple(source["shape"]) == (1, size, size, 3) and source["dtype"] == np.uint8
    assert tuple(target["shape"]) == (1, size, size) and target["dtype"] == np.int32
    for image in images:
        interpreter.set_tensor(source["index"], image)
        interpreter.invoke()
        served = interpreter.get_tensor(target["index"])
        logits = np.asarray(inference.full_resolution_logits(model,
                                                             image.astype(np.float32)))[0]
        # The same float32 function in another order (XNNPACK, oneDNN or Eigen, FMA or
        # not): a ResNet-50 sums up to 4608 products per output over ~50 layers, whose
        # roundings (random signs) add up to ~sqrt(4608 * 50) ~ 500 units of roundoff of the
        # logits' scale; 1024 for slack, two logits per gap (measured: logits within 1.1e-5
        # of Keras'; the bound 2 * 1024 * eps32 * 2.6 = 3.2e-4). A random network has no edges to
        # bound the near-ties by: the reference's own near-ties (not the agreement) are
        # capped at 1% of the pixels, the share this test allowed to differ before.
        tie_bound = 2 * 1024 * near_ties.EPS["float32"] * np.abs(logits).max()
        near_ties.assert_labels_match(logits, served[0], tie_bound,
                                      max_near_ties=served[0].size // 100)
    with pytest.raises(ValueError, match="image_size must be positive"):
        tflite.convert_tflite(model, str(tmp_path / "bad.tflite"), 0)
