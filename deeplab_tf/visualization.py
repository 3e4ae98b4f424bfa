"""Colormaps and coloured masks for segmentation results (paper Figures 6 and 7 style).

The PASCAL VOC palette (the one the VOC ground-truth PNGs carry, 255 = border/ignore in
cream) and the 19 Cityscapes train-id colours of the official label table. Everything here
is numpy on uint8 arrays, so the trainer can call it on `.numpy()` of eager tensors for
TensorBoard images and the tools can write PNGs with PIL.
"""
import io

import numpy as np
from PIL import Image, UnidentifiedImageError

IGNORE_LABEL = 255
EXIF_ORIENTATION_TAG = 0x0112

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor")

CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle")

# Train ids 0..18, colours from the Cityscapes label table (cityscapesscripts.helpers.labels).
CITYSCAPES_COLORS = np.array([
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
    (0, 80, 100), (0, 0, 230), (119, 11, 32)], dtype=np.uint8)


def voc_palette(num_colors=256):
    """The VOC devkit colormap: the bits of the class id spread over the colour channels.

    Bit 3k of the id goes to bit 7-k of red, bit 3k+1 to green, bit 3k+2 to blue, so
    neighbouring ids get clearly different colours (1 = dark red, 2 = dark green, ...).
    """
    ids = np.arange(num_colors)
    palette = np.zeros((num_colors, 3), dtype=np.int64)
    for shift in range(8):
        for channel in range(3):
            bit = (ids >> (3 * shift + channel)) & 1
            palette[:, channel] |= bit << (7 - shift)
    return palette.astype(np.uint8)


def cityscapes_palette():
    """256 colours: the 19 train-id colours, black elsewhere (255 = ignore is black)."""
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[:len(CITYSCAPES_COLORS)] = CITYSCAPES_COLORS
    return palette


def _as_label(label):
    label = np.asarray(label)
    if label.ndim == 3 and label.shape[-1] == 1:
        label = label[..., 0]
    if label.ndim != 2:
        raise ValueError(f"expected an HxW label map, got shape {label.shape}")
    if label.size and (label.min() < 0 or label.max() > 255):
        raise ValueError(f"label values must lie in 0..255, got {label.min()}..{label.max()}")
    return label.astype(np.uint8)


def colorize(label, palette):
    """HxW (or HxWx1) class ids -> HxWx3 uint8 colours from a 256x3 palette."""
    return np.asarray(palette, dtype=np.uint8)[_as_label(label)]


def overlay(image, label, palette, alpha=0.5, ignore_label=IGNORE_LABEL):
    """Blends the coloured mask over the RGB image; ignored pixels keep the image."""
    image = np.asarray(image)
    label = _as_label(label)
    if image.shape[:2] != label.shape:
        raise ValueError(f"image {image.shape[:2]} and label {label.shape} sizes differ")
    image = np.clip(image, 0, 255).astype(np.float32)
    colours = colorize(label, palette).astype(np.float32)
    blended = (1.0 - alpha) * image + alpha * colours
    keep = (label == ignore_label)[..., None]
    return np.where(keep, image, blended).round().astype(np.uint8)


def side_by_side(image, label, prediction, palette):
    """One HxW*3x3 uint8 strip: image | ground truth | prediction (for TensorBoard)."""
    image = np.clip(np.asarray(image), 0, 255).astype(np.uint8)
    return np.concatenate(
        [image, colorize(label, palette), colorize(prediction, palette)], axis=1)


def batch_side_by_side(images, labels, predictions, palette):
    """[B,H,W,3] images, [B,H,W] labels and predictions -> [B,H,3W,3] uint8 strips."""
    return np.stack([side_by_side(i, l, p, palette)
                     for i, l, p in zip(np.asarray(images), np.asarray(labels),
                                        np.asarray(predictions))])


def label_png(label, palette):
    """A palette ("P" mode) PIL image: class ids as pixel values, displayed in colour.

    This is the format of the VOC ground-truth PNGs: readers get the ids back exactly.
    """
    png = Image.fromarray(_as_label(label))  # "L"; putpalette turns it into "P"
    png.putpalette(np.asarray(palette, dtype=np.uint8).reshape(-1).tolist())
    return png


def encode_png(array):
    """PNG bytes of an HxW or HxWx3 uint8 array."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def exif_orientation(encoded):
    """The EXIF orientation (1-8) of encoded image bytes; 1 (as stored) when there is none.

    Phone cameras store the sensor's pixels and say in this tag how to turn them.
    """
    try:
        with Image.open(io.BytesIO(encoded)) as image:
            orientation = int(image.getexif().get(EXIF_ORIENTATION_TAG, 1))
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError, TypeError):
        return 1  # unreadable EXIF: the pixels as stored
    return orientation if 1 <= orientation <= 8 else 1


def apply_exif_orientation(image, orientation):
    """An HxW(xC) array as viewers show it, for an EXIF orientation 1-8 (TIFF/EXIF 2.32).

    Orientation k says where the stored first row and column belong: 2 mirror, 3 turn 180,
    4 flip upside down, 5 transpose, 6 turn 90 clockwise, 7 transverse, 8 turn 90
    counterclockwise (PIL's ImageOps.exif_transpose does the same on PIL images).
    """
    image = np.asarray(image)
    transposed = np.swapaxes(image, 0, 1)
    return {1: image, 2: image[:, ::-1], 3: image[::-1, ::-1], 4: image[::-1],
            5: transposed, 6: transposed[:, ::-1], 7: transposed[::-1, ::-1],
            8: transposed[::-1]}[orientation]
