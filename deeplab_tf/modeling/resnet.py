"""Atrous ResNet v1 (paper 3.1-3.2, Figure 3), in the layout of TF-slim's resnet_v1.

The stride-2 unit is the LAST unit of every block but the last one, and its stride sits in
the 3x3 convolution; strided convolutions pad like slim's conv2d_same. Once the running
stride reaches the requested output stride, every later stride becomes 1 and the atrous
rate doubles instead (`plan_blocks`, the one place output stride turns into strides and
rates). Blocks 5-7 are the paper's cascaded copies of block4. Multi-grid (3.2.1) multiplies
the rate of unit i of block4 and of every cascaded block by multi_grid[i].

Layer names follow slim's variable scopes with "/" turned into "_" and "bottleneck_v1"
dropped: `block3_unit_5_conv2`, `block3_unit_5_conv2_bn`, `block1_unit_1_shortcut`. The
output of each block is the layer named after the block (`model.get_layer("block4")`).
"""
import dataclasses

import keras

from deeplab_tf.modeling import layers

UNITS_PER_BLOCK = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
BASE_DEPTHS = (64, 128, 256, 512)
CASCADED_BLOCK_UNITS = 3  # blocks 5-7 are copies of block4
STEM_STRIDE = 4  # conv1 (stride 2) and pool1 (stride 2)
OUTPUT_STRIDES = (4, 8, 16, 32, 64, 128, 256)


@dataclasses.dataclass(frozen=True)
class Unit:
    """One bottleneck unit: depth_bottleneck in the 3x3 conv, 4x that at the output."""
    depth_bottleneck: int
    stride: int
    atrous_rate: int


def plan_blocks(depth=101, output_stride=16, multi_grid=(1, 2, 4), extra_blocks=0):
    """Strides and atrous rates of every unit, from the output stride alone.

    Returns a list of blocks, each a list of `Unit`. `output_stride=None` means no atrous
    convolution at all (the stride grows to 32, or 256 with three extra blocks).
    """
    if depth not in UNITS_PER_BLOCK:
        raise ValueError(f"depth must be one of {sorted(UNITS_PER_BLOCK)}, got {depth}")
    if not 0 <= extra_blocks <= 3:
        raise ValueError(f"extra_blocks must be 0..3 (block5-block7), got {extra_blocks}")
    if output_stride is not None and output_stride not in OUTPUT_STRIDES:
        raise ValueError(f"output_stride must be None or one of {OUTPUT_STRIDES}, "
                         f"got {output_stride}")
    multi_grid = tuple(int(r) for r in multi_grid)
    if len(multi_grid) != CASCADED_BLOCK_UNITS or min(multi_grid) < 1:
        raise ValueError(f"multi_grid needs {CASCADED_BLOCK_UNITS} positive unit rates, "
                         f"got {multi_grid}")
    units = list(UNITS_PER_BLOCK[depth]) + [CASCADED_BLOCK_UNITS] * extra_blocks
    depths = list(BASE_DEPTHS) + [BASE_DEPTHS[-1]] * extra_blocks
    plan, current_stride, rate = [], STEM_STRIDE, 1
    for index, (num_units, base_depth) in enumerate(zip(units, depths)):
        block_stride = 1 if index == len(units) - 1 else 2
        unit_rates = multi_grid if index >= 3 else (1,) * num_units
        block = []
        for i in range(num_units):
            stride = block_stride if i == num_units - 1 else 1
            if output_stride is not None and current_stride == output_stride:
                block.append(Unit(base_depth, 1, rate * unit_rates[i]))
                rate *= stride
            else:
                if stride > 1 and unit_rates[i] > 1:
                    # A convolution cannot both stride and dilate (neither can slim's).
                    raise ValueError(
                        f"block{index + 1} unit {i + 1} strides by 2, so its multi-grid rate "
                        f"must be 1, got multi_grid={multi_grid}: use multi_grid=(1, 1, 1) "
                        f"or an output_stride that turns this stride into atrous rate")
                block.append(Unit(base_depth, stride, unit_rates[i]))
                current_stride *= stride
        plan.append(block)
    if output_stride is not None and current_stride != output_stride:
        raise ValueError(f"output_stride {output_stride} is out of reach: depth {depth} "
                         f"with {extra_blocks} extra blocks stops at stride {current_stride}")
    return plan


def effective_output_stride(plan):
    """Input size / feature size for a plan (also when output_stride=None)."""
    stride = STEM_STRIDE
    for block in plan:
        for unit in block:
            stride *= unit.stride
    return stride


def feature_size(input_size, output_stride):
    """Feature map size for an input of `input_size` pixels: ceil(input_size / OS).

    Every strided layer maps n pixels to ceil(n / 2) (slim padding), so the sizes nest.
    """
    return (input_size - 1) // output_stride + 1


def bottleneck(x, unit, name, bn, zero_init_residual=False):
    """Bottleneck v1: 1x1 -> 3x3 (stride, atrous) -> 1x1, ReLU after the residual add.

    `zero_init_residual` starts the last batch norm's gamma at 0, so that the unit starts
    as its shortcut (see `atrous_resnet`).
    """
    depth = 4 * unit.depth_bottleneck
    if x.shape[-1] == depth:
        shortcut = x if unit.stride == 1 else keras.layers.MaxPooling2D(
            1, strides=unit.stride, name=f"{name}_shortcut")(x)
    else:
        shortcut = layers.conv_bn_relu(x, depth, 1, f"{name}_shortcut", stride=unit.stride,
                                       relu=False, **bn)
    residual = layers.conv_bn_relu(x, unit.depth_bottleneck, 1, f"{name}_conv1", **bn)
    residual = layers.conv_bn_relu(residual, unit.depth_bottleneck, 3, f"{name}_conv2",
                                   stride=unit.stride, atrous_rate=unit.atrous_rate, **bn)
    residual = layers.conv_bn_relu(residual, depth, 1, f"{name}_conv3", relu=False,
                                   gamma_initializer="zeros" if zero_init_residual else "ones",
                                   **bn)
    x = keras.layers.Add(name=f"{name}_add")([shortcut, residual])
    return x


def build_backbone(image, depth, output_stride, multi_grid, extra_blocks, bn,
                   zero_init_residual=False):
    """Applies mean subtraction, the stem and all blocks to `image` (RGB in [0, 255])."""
    plan = plan_blocks(depth, output_stride, multi_grid, extra_blocks)
    x = keras.layers.Rescaling(1.0, offset=[-m for m in layers.MEAN_PIXEL],
                               name="mean_pixel")(image)
    x = layers.conv_bn_relu(x, 64, 7, "conv1", stride=2, **bn)
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="pool1")(x)
    for b, block in enumerate(plan, start=1):
        for u, unit in enumerate(block, start=1):
            x = bottleneck(x, unit, f"block{b}_unit_{u}", bn, zero_init_residual)
            last = u == len(block)
            x = keras.layers.ReLU(name=f"block{b}" if last else f"block{b}_unit_{u}_relu")(x)
    return x


@keras.saving.register_keras_serializable(package="deeplab_tf")
class AtrousResNet(keras.Model):
    """Keras model image -> last block's feature map; `atrous_resnet` documents the args."""

    def __init__(self, depth=101, output_stride=16, multi_grid=(1, 2, 4), extra_blocks=0,
                 batch_norm_decay=layers.BATCH_NORM_DECAY,
                 batch_norm_epsilon=layers.BATCH_NORM_EPSILON, zero_init_residual=False,
                 image_shape=(None, None, 3), **kwargs):
        image = keras.Input(shape=tuple(image_shape), name="image")
        bn = dict(batch_norm_decay=batch_norm_decay, batch_norm_epsilon=batch_norm_epsilon)
        features = build_backbone(image, depth, output_stride, multi_grid, extra_blocks, bn,
                                  zero_init_residual)
        kwargs.setdefault("name", f"atrous_resnet_v1_{depth}")
        super().__init__(inputs=image, outputs=features, **kwargs)
        self.depth = depth
        self.output_stride = output_stride
        self.multi_grid = tuple(multi_grid)
        self.extra_blocks = extra_blocks
        self.batch_norm_decay = batch_norm_decay
        self.batch_norm_epsilon = batch_norm_epsilon
        self.zero_init_residual = zero_init_residual
        self.image_shape = tuple(image_shape)

    def get_config(self):
        return dict(depth=self.depth, output_stride=self.output_stride,
                    multi_grid=self.multi_grid, extra_blocks=self.extra_blocks,
                    batch_norm_decay=self.batch_norm_decay,
                    batch_norm_epsilon=self.batch_norm_epsilon,
                    zero_init_residual=self.zero_init_residual,
                    image_shape=self.image_shape, name=self.name, trainable=self.trainable)

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def atrous_resnet(depth=101, output_stride=16, multi_grid=(1, 2, 4), extra_blocks=0,
                  **kwargs):
    """Atrous ResNet v1-50/101 (TF-slim layout), image -> feature map.

    Args:
      depth: 50 or 101.
      output_stride: 4, 8, 16, 32 (64, 128, 256 with cascaded blocks), or None for no
        atrous convolution.
      multi_grid: unit rates (r1, r2, r3) of block4 and of every cascaded block. A unit
        that still strides (no atrous yet) must have unit rate 1.
      extra_blocks: 0-3 cascaded copies of block4 (block5, block6, block7).
      **kwargs: batch_norm_decay, batch_norm_epsilon, zero_init_residual, image_shape, name.
        zero_init_residual=True starts the gamma of each unit's last batch norm at 0 (Goyal
        et al. 2017; torchvision's option of that name), so every unit starts as its
        shortcut: for training from scratch. The paper starts from ImageNet weights, which
        replace the gammas, and the authors' slim layers start them at 1 (the default).
    """
    return AtrousResNet(depth=depth, output_stride=output_stride, multi_grid=multi_grid,
                        extra_blocks=extra_blocks, **kwargs)
