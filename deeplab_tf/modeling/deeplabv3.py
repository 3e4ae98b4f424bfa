"""DeepLabv3: atrous ResNet + ASPP (or cascaded blocks) -> logits (paper 3, Figures 3 and 5)."""
import keras

from deeplab_tf.modeling import aspp as aspp_lib
from deeplab_tf.modeling import layers
from deeplab_tf.modeling import resnet

HEADS = ("aspp", "cascade")


@keras.saving.register_keras_serializable(package="deeplab_tf")
class DeepLabV3(keras.Model):
    """Keras model image (RGB, 0-255) -> logits at feature resolution; see `deeplabv3`."""

    def __init__(self, num_classes=21, depth=101, output_stride=16, multi_grid=(1, 2, 4),
                 head="aspp", aspp_rates=None, image_pooling=True, extra_blocks=0,
                 batch_norm_decay=layers.BATCH_NORM_DECAY,
                 batch_norm_epsilon=layers.BATCH_NORM_EPSILON, aspp_dropout_rate=0.1,
                 zero_init_residual=False, image_shape=(None, None, 3), **kwargs):
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        if not 0 <= aspp_dropout_rate < 1:
            raise ValueError(f"aspp_dropout_rate must be in [0, 1), got {aspp_dropout_rate}")
        bn = dict(batch_norm_decay=batch_norm_decay, batch_norm_epsilon=batch_norm_epsilon)
        image = keras.Input(shape=tuple(image_shape), name="image")
        features = resnet.build_backbone(image, depth, output_stride, multi_grid,
                                         extra_blocks, bn, zero_init_residual)
        if head == "aspp":
            stride = resnet.effective_output_stride(
                resnet.plan_blocks(depth, output_stride, multi_grid, extra_blocks))
            rates = aspp_lib.scaled_rates(aspp_rates or aspp_lib.ASPP_RATES_AT_OS16, stride)
            features = aspp_lib.aspp(features, rates, image_pooling, bn, aspp_dropout_rate)
        logits = keras.layers.Conv2D(
            num_classes, 1, name="logits", dtype=layers.logits_dtype(),
            kernel_initializer=keras.initializers.get(layers.LOGITS_INITIALIZER))(features)
        kwargs.setdefault("name", f"deeplabv3_resnet{depth}")
        super().__init__(inputs=image, outputs=logits, **kwargs)
        self.num_classes = num_classes
        self.depth = depth
        self.output_stride = output_stride
        self.multi_grid = tuple(multi_grid)
        self.head = head
        self.aspp_rates = None if aspp_rates is None else tuple(aspp_rates)
        self.image_pooling = image_pooling
        self.extra_blocks = extra_blocks
        self.batch_norm_decay = batch_norm_decay
        self.batch_norm_epsilon = batch_norm_epsilon
        self.aspp_dropout_rate = aspp_dropout_rate
        self.zero_init_residual = zero_init_residual
        self.image_shape = tuple(image_shape)

    def get_config(self):
        return dict(num_classes=self.num_classes, depth=self.depth,
                    output_stride=self.output_stride, multi_grid=self.multi_grid,
                    head=self.head, aspp_rates=self.aspp_rates,
                    image_pooling=self.image_pooling, extra_blocks=self.extra_blocks,
                    batch_norm_decay=self.batch_norm_decay,
                    batch_norm_epsilon=self.batch_norm_epsilon,
                    aspp_dropout_rate=self.aspp_dropout_rate,
                    zero_init_residual=self.zero_init_residual,
                    image_shape=self.image_shape, name=self.name, trainable=self.trainable)

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def deeplabv3(num_classes=21, depth=101, output_stride=16, multi_grid=(1, 2, 4), head="aspp",
              aspp_rates=None, image_pooling=True, extra_blocks=0, **kwargs):
    """DeepLabv3 as a Keras model: image -> logits at feature resolution.

    Args:
      num_classes: 21 for PASCAL VOC, 19 for Cityscapes.
      depth, output_stride, multi_grid, extra_blocks: the backbone, see `atrous_resnet`.
      head: "aspp" (Figure 5) or "cascade" (logits right on the last block, Tables 1-3).
      aspp_rates: the 3x3 branch rates at output stride 16, default (6, 12, 18); they are
        scaled to the model's output stride (x2 at 8, x4 at 4). (6, 12, 18, 24) adds the
        fourth branch of Table 5.
      image_pooling: add the image-level feature branch.
      **kwargs: batch_norm_decay (paper: 0.9997), batch_norm_epsilon, aspp_dropout_rate
        (the authors' 0.1 after the ASPP projection, training only; 0 = none; the cascade
        head has no dropout), zero_init_residual (see `atrous_resnet`), image_shape, name.

    For logits at the input size, wrap the model with `with_upsampled_logits`, or call
    `upsample_logits(logits, (height, width))` on its output.
    """
    return DeepLabV3(num_classes=num_classes, depth=depth, output_stride=output_stride,
                     multi_grid=multi_grid, head=head, aspp_rates=aspp_rates,
                     image_pooling=image_pooling, extra_blocks=extra_blocks, **kwargs)


def upsample_logits(logits, size):
    """Bilinear (aligned corners) upsampling of logits to `size` = (height, width)."""
    return layers.resize_bilinear(logits, size)


def with_upsampled_logits(model):
    """A model sharing `model`'s weights whose logits come at the input image's size."""
    logits = layers.ResizeLike(name="upsampled_logits", dtype="float32")(
        model.output, model.input)
    return keras.Model(model.input, logits, name=f"{model.name}_full_resolution")
