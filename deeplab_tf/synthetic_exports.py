"""Generated own-data exports for tests and demos: a CVAT-style tree and a plain folder.

Three classes that are not VOC's order (background, car, person; `CLASS_COLORS` are the
labelmap's), drawn as in deeplab_tf/synthetic.py: a textured background with one to three
shapes, each class its own shape and image colour, so a small model learns them in a few
hundred steps. Deterministic in (seed, image index). numpy and PIL only.

- `write_cvat_export`: what CVAT's "Segmentation mask 1.1" export holds: labelmap.txt,
  JPEGImages/*.jpg, SegmentationClass/*.png as RGB colour masks, and one list,
  ImageSets/Segmentation/default.txt. Optionally the photos' own names (spaces and dots
  in them, as cameras and people name files) and some images saved as PNG.
- `write_plain_folder`: images/*.png, masks/*.png holding class ids (single-channel), and
  classes.txt (one name a line, a colour after one of them).
"""
import dataclasses
import os

import numpy as np
from PIL import Image

from deeplab_tf import classes, synthetic

CLASS_NAMES = ("background", "car", "person")
CLASS_COLORS = ((0, 0, 0), (250, 50, 83), (61, 61, 245))  # the labelmap's mask colours
# class id -> (shape, the object's colour in the image)
SHAPES = {1: ("rectangle", (225, 45, 40)), 2: ("ellipse", (240, 205, 50))}
IGNORE_VALUE = 255


@dataclasses.dataclass
class GeneratedExport:
    """Where it was written, each image's pixels and its mask's class ids (255 = ignore)."""
    root: str
    images: dict  # name -> uint8 HxWx3 (before JPEG compression, for the CVAT export)
    labels: dict  # name -> uint8 HxW
    table: classes.ClassTable  # what a build of `root` must record

    @property
    def names(self):
        return sorted(self.labels)


def make_scene(seed, index, min_size=40, max_size=64, void_border=False):
    """(image uint8 HxWx3, label uint8 HxW of ids 0..2, 255 on borders if `void_border`)."""
    rng = np.random.default_rng([seed, index, 3])
    height, width = rng.integers(min_size, max_size + 1, size=2)
    image = synthetic._background(height, width, rng)  # pylint: disable=protected-access
    label = np.zeros((height, width), dtype=np.uint8)
    for _ in range(rng.integers(1, 4)):
        class_id = int(rng.integers(1, len(CLASS_NAMES)))
        kind, colour = SHAPES[class_id]
        mask = synthetic._shape_mask(kind, height, width, rng)  # pylint: disable=protected-access
        image[mask] = np.asarray(colour, dtype=np.float64) + rng.uniform(-20, 20, size=3)
        label[mask] = class_id
    image += rng.normal(0, 8, size=image.shape)
    if void_border:  # annotators' "don't care" outline, as VOC's 255 border
        border = np.zeros_like(label, dtype=bool)
        border[1:] |= label[1:] != label[:-1]
        border[:, 1:] |= label[:, 1:] != label[:, :-1]
        label[border] = IGNORE_VALUE
    return np.clip(np.round(image), 0, 255).astype(np.uint8), label


def _scenes(seed, num_images, min_size, max_size, void_border, prefix, names=None):
    names = list(names) if names else [f"{prefix}_{i:04d}" for i in range(num_images)]
    return names, {name: make_scene(seed, i, min_size, max_size, void_border)
                   for i, name in enumerate(names)}


def write_cvat_export(output_dir, seed=0, num_images=12, min_size=40, max_size=64,
                      void_border=False, names=None, png_names=()):
    """A CVAT "Segmentation mask 1.1" export; returns its `GeneratedExport`.

    With `void_border`, object outlines are painted in the ignore colour (VOC's cream,
    224,224,192, the build's default --ignore_color). `names`: the image names (file
    stems) instead of frame_0000...; the images of `png_names` are saved as PNG (their
    pixels exact), the others as JPEG.
    """
    output_dir = os.fspath(output_dir)
    names, scenes = _scenes(seed, num_images, min_size, max_size, void_border,
                            "frame", names)
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        os.makedirs(os.path.join(output_dir, folder), exist_ok=True)
    table = classes.ClassTable(CLASS_NAMES, CLASS_COLORS)
    palette = table.palette()  # ids -> mask colours, 255 -> the ignore colour
    for name, (image, label) in scenes.items():
        if name in png_names:
            Image.fromarray(image).save(os.path.join(output_dir, "JPEGImages", name + ".png"))
        else:
            Image.fromarray(image).save(os.path.join(output_dir, "JPEGImages",
                                                     name + ".jpg"), quality=95, subsampling=0)
        Image.fromarray(palette[label]).save(
            os.path.join(output_dir, "SegmentationClass", name + ".png"))
    with open(os.path.join(output_dir, "labelmap.txt"), "w") as f:
        f.write("# label:color_rgb:parts:actions\n" + "".join(
            f"{n}:{r},{g},{b}::\n" for n, (r, g, b) in zip(CLASS_NAMES, CLASS_COLORS)))
    with open(os.path.join(output_dir, "ImageSets", "Segmentation", "default.txt"),
              "w") as f:
        f.write("".join(n + "\n" for n in names))
    return GeneratedExport(output_dir, {n: s[0] for n, s in scenes.items()},
                           {n: s[1] for n, s in scenes.items()}, table)


def write_plain_folder(output_dir, seed=0, num_images=12, min_size=40, max_size=64,
                       void_border=True):
    """images/*.png, masks/*.png (class ids, 255 = ignore), classes.txt; returns its
    `GeneratedExport`. classes.txt gives car's colour only: the build fills the other
    two from the VOC palette."""
    output_dir = os.fspath(output_dir)
    names, scenes = _scenes(seed, num_images, min_size, max_size, void_border,
                            "img")
    for folder in ("images", "masks"):
        os.makedirs(os.path.join(output_dir, folder), exist_ok=True)
    for name, (image, label) in scenes.items():
        Image.fromarray(image).save(os.path.join(output_dir, "images", name + ".png"))
        Image.fromarray(label).save(os.path.join(output_dir, "masks", name + ".png"))
    with open(os.path.join(output_dir, "classes.txt"), "w") as f:
        f.write("background\ncar 250,50,83\nperson\n")
    table = classes.ClassTable(CLASS_NAMES, ((0, 0, 0), (250, 50, 83), (128, 0, 0)))
    return GeneratedExport(output_dir, {n: s[0] for n, s in scenes.items()},
                           {n: s[1] for n, s in scenes.items()}, table)
