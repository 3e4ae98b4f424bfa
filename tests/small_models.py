"""Small models for the tests, named by `model.builder` ("tests.small_models:NAME").

Each is `function(model_config, output_stride)` like any builder: tools.train, the Trainer
and its checkpoints, summaries and strategies train them as they train DeepLabv3, in a
fraction of the ResNet's tracing time.
"""
import keras

from deeplab_tf.modeling import aspp, layers

TINY = "tests.small_models:tiny"
LINEAR = "tests.small_models:linear"
MINI_DEEPLAB = "tests.small_models:mini_deeplab"


def tiny(model_config, output_stride=None):
    """conv 3x3 stride 2 + batch norm + ReLU + 1x1 logits: the loop's every path, fast."""
    del output_stride
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="conv")(x)
    x = layers.BatchNormalization(name="conv_bn")(x)
    x = keras.layers.ReLU()(x)
    logits = keras.layers.Conv2D(model_config.num_classes, 1, name="logits",
                                 dtype="float32")(x)
    return keras.Model(inputs, logits)


def linear(model_config, output_stride=None):
    """conv 3x3 stride 2 + 1x1 logits, no batch norm: its training-mode logits are its
    inference-mode logits, for tests that recompute a step's loss."""
    del output_stride
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="conv")(inputs)
    logits = keras.layers.Conv2D(model_config.num_classes, 1, name="logits")(x)
    return keras.Model(inputs, logits)


def mini_deeplab(model_config, output_stride=None):
    """DeepLabv3's kinds of layer, built by the library: a stride-2 conv + batch norm stem,
    an atrous conv + batch norm unit, and the ASPP head (1x1, two atrous branches, image
    pooling with its own batch norm over the batch of pooled vectors, projection, dropout),
    then the logits."""
    del output_stride
    bn = dict(batch_norm_decay=model_config.batch_norm_decay,
              batch_norm_epsilon=model_config.batch_norm_epsilon)
    image = keras.Input((None, None, 3))
    x = layers.conv_bn_relu(image, 8, 3, "stem", stride=2, **bn)
    x = layers.conv_bn_relu(x, 16, 3, "atrous", atrous_rate=2, **bn)
    x = aspp.aspp(x, (1, 2), image_pooling=True, bn=bn,
                  dropout_rate=model_config.aspp_dropout_rate)
    logits = keras.layers.Conv2D(model_config.num_classes, 1, name="logits",
                                 dtype=layers.logits_dtype())(x)
    return keras.Model(image, logits)


NESTED = "tests.small_models:nested"


def nested(model_config, output_stride=None):
    """A custom builder's model whose batch norms sit inside a nested keras.Model (the
    stem) and one level deeper (a block inside the stem)."""
    del output_stride
    block_input = keras.Input((None, None, 8))
    block = keras.Model(block_input, layers.conv_bn_relu(block_input, 8, 3, "block"),
                        name="block")
    stem_input = keras.Input((None, None, 3))
    x = layers.conv_bn_relu(stem_input, 8, 3, "stem", stride=2)
    stem = keras.Model(stem_input, block(x), name="stem")
    image = keras.Input((None, None, 3))
    x = layers.conv_bn_relu(stem(image), 8, 1, "head")
    logits = keras.layers.Conv2D(model_config.num_classes, 1, name="logits")(x)
    return keras.Model(image, logits)
