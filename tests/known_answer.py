"""A DeepLabv3 with a known answer, for the export and prediction tests.

`set_nearest_colour_weights(model, colours)` sets every weight of a real DeepLabV3 (any
depth, output stride or ASPP rates) so that the logits are a fixed function of the input
colour: class k wins where the pixel is nearest to `colours[k]`. The RGB values travel
unchanged through the network in channels 0-2:

  - conv1 copies the (mean-subtracted) RGB with its centre tap; conv1_bn adds the mean
    back, so the stem carries the raw colour, >= 0, through every ReLU;
  - every residual branch is zero (all its kernels are zero), every projection shortcut
    copies channels 0-2, so each unit passes the colour on; max pooling and the strided
    shortcuts keep it inside a region of one colour;
  - ASPP: the 1x1 branch and the projection copy channels 0-2, every other branch is zero;
  - logits: logit_k = s * (2 c_k . x - |c_k|^2) = s * (|x|^2 - |x - c_k|^2), so the
    arg max is the nearest colour, and bilinear upsampling (linear in x) keeps it.

Batch norm runs as the identity (mean 0, variance 1 - epsilon, gamma 1, beta 0) except
where said. A pixel at least `SAFE_MARGIN` pixels from any colour edge or image border
gets exactly the class of its colour at every scale >= 0.75 and output stride <= 16, so a
test can check the labels of a `mosaic` of the colours at its `safe_mask` as well as
compare two code paths.
"""
import keras
import numpy as np

# Logit scale: colour distances of 100 give logit gaps of about 10 (soft, not saturated).
LOGIT_SCALE = 1e-3
# A label reads the features on the OS grid around it (16 px at OS 16), each of which reads
# the colour within the 3x3 / 2 max pool's reach (2 px): 18 px at scale 1, 24 at scale
# 0.75, + 2 for the bilinear drift of sizes other than OS*k+1; 28 with slack (measured on
# the mosaics of the tests: 15 suffices).
SAFE_MARGIN = 28


def distinct_colours(count):
    """`count` RGB colours from a 3x3x3 grid of levels 30, 128, 225: any two differ by at
    least 97 in some channel."""
    levels = (30, 128, 225)
    grid = [(r, g, b) for r in levels for g in levels for b in levels]
    if count > len(grid):
        raise ValueError(f"at most {len(grid)} colours, asked for {count}")
    return np.array(grid[:count], np.uint8)


def _copy_channels(kernel, count=3):
    kernel = np.zeros_like(kernel)
    centre_h, centre_w = kernel.shape[0] // 2, kernel.shape[1] // 2
    for c in range(count):
        kernel[centre_h, centre_w, c, c] = 1.0
    return kernel


def set_nearest_colour_weights(model, colours):
    """Sets `model`'s weights (in place) so that class k = nearest of `colours[k]`."""
    colours = np.asarray(colours, np.float64)
    if colours.shape != (model.num_classes, 3):
        raise ValueError(f"need {model.num_classes} colours, got {colours.shape}")
    mean = np.asarray(model.get_layer("mean_pixel").offset, np.float64).reshape(-1)
    for layer in model.layers:
        if not layer.weights:
            continue
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, moving_mean, moving_variance = (np.asarray(w) for w in
                                                         layer.get_weights())
            gamma, beta = np.ones_like(gamma), np.zeros_like(beta)
            if layer.name == "conv1_bn":
                beta[:3] = -mean  # the model's mean_pixel offset is minus the mean
            layer.set_weights([gamma, beta, np.zeros_like(moving_mean),
                               np.full_like(moving_variance, 1.0 - layer.epsilon)])
        elif layer.name == "logits":
            kernel, bias = (np.asarray(w) for w in layer.get_weights())
            kernel = np.zeros_like(kernel)
            kernel[0, 0, :3, :] = 2.0 * LOGIT_SCALE * colours.T
            bias = -LOGIT_SCALE * np.sum(colours ** 2, axis=1)
            layer.set_weights([kernel, bias.astype(kernel.dtype)])
        elif isinstance(layer, keras.layers.Conv2D):
            (kernel,) = layer.get_weights()
            copies = layer.name in ("conv1", "aspp_conv1x1", "aspp_projection") or \
                layer.name.endswith("_shortcut")
            layer.set_weights([_copy_channels(kernel) if copies else np.zeros_like(kernel)])
        else:
            raise ValueError(f"layer {layer.name} ({type(layer).__name__}) has weights this "
                             f"known-answer model does not know how to set")
    return model


def mosaic(class_grid, colours, tile):
    """An image of tile x tile squares, square (i, j) of colour colours[class_grid[i][j]];
    returns (image uint8 HxWx3, class of each pixel HxW)."""
    classes = np.kron(np.asarray(class_grid), np.ones((tile, tile), np.int64))
    return np.asarray(colours, np.uint8)[classes], classes


def safe_mask(classes, margin=SAFE_MARGIN):
    """Pixels whose square neighbourhood of radius `margin` is one class, inside the image."""
    padded = np.pad(classes, margin, constant_values=-1)  # the border counts as an edge
    windows = np.lib.stride_tricks.sliding_window_view(padded, (2 * margin + 1,) * 2)
    return (windows.min(axis=(-1, -2)) == classes) & (windows.max(axis=(-1, -2)) == classes)
