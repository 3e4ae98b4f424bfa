"""TFLite conversion of the single-scale model: the interpreter gives the Keras labels."""
import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

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
        expected = np.asarray(inference.predict_labels(model, image.astype(np.float32)))
        # TFLite's kernels may round differently: allow a handful of near-tie pixels.
        assert (served == expected).mean() > 0.99
    with pytest.raises(ValueError, match="image_size must be positive"):
        tflite.convert_tflite(model, str(tmp_path / "bad.tflite"), 0)
