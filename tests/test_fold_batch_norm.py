"""Batch norm folded into the convolutions gives the trained model's outputs (serving copy)."""
import keras
import numpy as np
import pytest

from deeplab_tf import modeling
from deeplab_tf.evaluation import inference
from deeplab_tf.modeling import fold_batch_norm


def randomise_batch_norm(model, seed=0):
    """Statistics far from the initial (0, 1) so that a wrong fold would show."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            channels = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, channels), rng.normal(0, 0.5, channels),
                               rng.normal(0, 0.5, channels), rng.uniform(0.5, 2.0, channels)])


def test_folded_kernel_and_bias_matches_numpy_batch_norm():
    rng = np.random.default_rng(1)
    image = keras.Input((6, 6, 4))
    conv = keras.layers.Conv2D(5, 3, padding="same", use_bias=False, name="c")
    bn = keras.layers.BatchNormalization(epsilon=1e-3, name="c_bn")
    model = keras.Model(image, bn(conv(image)))
    randomise_batch_norm(model)
    x = rng.normal(size=(2, 6, 6, 4)).astype(np.float32)
    y = keras.ops.convert_to_numpy(conv(x))
    gamma, beta, mean, variance = bn.get_weights()
    expected = gamma * (y - mean) / np.sqrt(variance + 1e-3) + beta

    kernel, bias = fold_batch_norm.folded_kernel_and_bias(conv, bn)
    folded = keras.layers.Conv2D(5, 3, padding="same")
    folded.build((None, 6, 6, 4))
    folded.set_weights([kernel, bias])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(folded(x)), expected,
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("wrap", [False, True])
def test_inference_model_equals_trained_model(wrap):
    model = modeling.deeplabv3(depth=50, output_stride=16, image_shape=(65, 65, 3))
    randomise_batch_norm(model)
    if wrap:
        model = modeling.with_upsampled_logits(model)
    names = [layer.name for layer in model.layers]
    num_params = model.count_params()
    num_bn = sum(isinstance(l, keras.layers.BatchNormalization) for l in model.layers)

    served = fold_batch_norm.inference_model(model)

    # The trained model is untouched; the copy has the same layer names, no batch norm.
    assert [layer.name for layer in model.layers] == names
    assert model.count_params() == num_params
    assert [layer.name for layer in served.layers] == names
    assert not any(isinstance(l, keras.layers.BatchNormalization) for l in served.layers)
    assert sum(isinstance(l, fold_batch_norm.FoldedBatchNorm)
               for l in served.layers) == num_bn == 53 + 6  # ResNet-50, then ASPP
    convs = [l for l in served.layers if isinstance(l, keras.layers.Conv2D)]
    # Every conv but the logits had a batch norm and gains a bias (the logits had one).
    assert all(l.use_bias for l in convs) and len(convs) == num_bn + 1
    # Each BN had 4 x C weights; its conv gains C biases.
    assert served.count_params() == num_params - 3 * sum(
        l.filters for l in convs if l.name != "logits")

    if not wrap:  # what export and evaluation read of a DeepLabV3 travels with the copy
        assert (served.num_classes, served.depth, served.output_stride) == (21, 50, 16)
        assert inference.model_output_stride(served) == 16
    images = np.random.default_rng(2).uniform(0, 255, (2, 65, 65, 3)).astype(np.float32)
    expected = keras.ops.convert_to_numpy(model(images, training=False))
    actual = keras.ops.convert_to_numpy(served(images))
    assert actual.shape == expected.shape == ((2, 65, 65, 21) if wrap else (2, 5, 5, 21))
    scale = np.abs(expected).max()
    np.testing.assert_allclose(actual / scale, expected / scale, atol=1e-5)


def test_inference_model_static_image_shape():
    model = modeling.deeplabv3(depth=50, output_stride=32)
    served = fold_batch_norm.inference_model(model, image_shape=(33, 33, 3))
    assert tuple(served.input.shape) == (None, 33, 33, 3)
    assert tuple(served.output.shape) == (None, 2, 2, 21)


def test_inference_model_rejects_non_functional_model():
    with pytest.raises(ValueError, match="functional"):
        fold_batch_norm.inference_model(keras.layers.Dense(3))
