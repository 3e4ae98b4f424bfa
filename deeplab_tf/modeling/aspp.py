"""Atrous Spatial Pyramid Pooling with image-level features (paper 3.3, Figure 5).

One 1x1 convolution and three 3x3 atrous convolutions in parallel (256 filters, batch norm,
ReLU), plus global average pooling -> 1x1 conv -> bilinear upsampling; concatenated (1280
channels) and projected by a 1x1 convolution back to 256. As in the authors' model.py, the
projection is followed by dropout (keep probability 0.9, training only), and the head's
convolutions start from slim's default initialiser (Glorot uniform).
"""
import keras

from deeplab_tf.modeling import layers

ASPP_DEPTH = 256
# The rates the paper uses at output stride 16; finer output strides scale them up
# (x2 at 8, x4 at 4) so the branches keep the same field of view in image pixels.
ASPP_RATES_AT_OS16 = (6, 12, 18)
# Table 5's fourth branch.
EXTRA_RATE_AT_OS16 = 24


def scaled_rates(rates_at_os16, output_stride):
    """ASPP rates for `output_stride`, from rates given at output stride 16."""
    rates = []
    for rate in rates_at_os16:
        scaled = rate * 16 // output_stride
        if scaled < 1 or rate * 16 % output_stride:
            raise ValueError(f"ASPP rate {rate} (at output stride 16) has no whole-number "
                             f"equivalent at output stride {output_stride}")
        rates.append(scaled)
    return tuple(rates)


def aspp(features, atrous_rates, image_pooling=True, bn=None, dropout_rate=0.1):
    """The ASPP head on `features`; returns the 256-channel projection (after dropout)."""
    bn = dict(bn or {}, kernel_initializer=layers.HEAD_INITIALIZER)
    branches = [layers.conv_bn_relu(features, ASPP_DEPTH, 1, "aspp_conv1x1", **bn)]
    for i, rate in enumerate(atrous_rates, start=1):
        # Named by position, not rate: the weights must not depend on output stride.
        branches.append(layers.conv_bn_relu(features, ASPP_DEPTH, 3, f"aspp_atrous{i}",
                                            atrous_rate=rate, **bn))
    if image_pooling:
        pooled = keras.layers.GlobalAveragePooling2D(keepdims=True,
                                                     name="image_pooling_gap")(features)
        pooled = layers.conv_bn_relu(pooled, ASPP_DEPTH, 1, "image_pooling", **bn)
        branches.append(layers.ResizeLike(name="image_pooling_upsample")(pooled, features))
    x = keras.layers.Concatenate(name="aspp_concat")(branches)
    x = layers.conv_bn_relu(x, ASPP_DEPTH, 1, "aspp_projection", **bn)
    if dropout_rate:  # no layer at all for 0: the model is then the one without dropout
        x = layers.Dropout(dropout_rate, name="aspp_projection_dropout")(x)
    return x
