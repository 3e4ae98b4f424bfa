"""A generated segmentation set in the PASCAL VOC layout (the demo's and the tests' data).

Nothing can be downloaded here, so the project makes its own VOC-layout copy: JPEGImages,
SegmentationClass palette PNGs with 255 on object borders (as VOC's ground truth has),
and ImageSets/Segmentation/{train,val,trainval}.txt. The same builder code that reads the
real VOC 2012 then reads this set. Scenes are deterministic in (seed, image index).

Each scene is a textured background with one to four shapes drawn in painter's order, so
later shapes occlude earlier ones. Every class has its own colour AND shape, at several
sizes, so a ResNet-50 trained from scratch learns it in a few hundred steps; the "hard"
classes of paper 4.3 (bicycle, chair, pottedplant, sofa) are rarer than the easy ones, so
bootstrapping (repeating the images that contain them) has something to do.
"""
import os

import numpy as np
from PIL import Image, ImageDraw

from deeplab_tf import visualization

IGNORE_LABEL = 255

# class id -> (shape, RGB colour, sampling weight). Ids and names are VOC's.
CLASSES = {
    1: ("triangle", (60, 110, 235), 0.24),    # aeroplane
    7: ("rectangle", (225, 45, 40), 0.23),     # car
    15: ("ellipse", (240, 205, 50), 0.23),     # person
    2: ("ring", (40, 190, 70), 0.075),         # bicycle (hard)
    9: ("cross", (200, 55, 205), 0.075),       # chair (hard)
    16: ("diamond", (35, 205, 205), 0.075),    # pottedplant (hard)
    18: ("striped", (245, 140, 35), 0.075),    # sofa (hard)
}
HARD_CLASSES = (2, 9, 16, 18)


def _shape_mask(kind, height, width, rng):
    """A boolean mask of one object of `kind` at a random place, size and aspect."""
    mask = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(mask)
    side = min(height, width) * rng.uniform(0.3, 0.75)
    cy, cx = rng.uniform(0.1, 0.9) * height, rng.uniform(0.1, 0.9) * width
    hy, hx = side / 2, side / 2 * rng.uniform(0.7, 1.4)
    if kind == "striped":
        hx, hy = side * 0.7, side * 0.3  # wide and low, like a sofa
    if kind == "ellipse":
        hy, hx = side * 0.6, side * 0.3  # tall, like a person
    box = [cx - hx, cy - hy, cx + hx, cy + hy]
    if kind == "triangle":
        angle = rng.uniform(0, 2 * np.pi)
        points = [(cx + side * 0.6 * np.cos(angle + k * 2 * np.pi / 3),
                   cy + side * 0.6 * np.sin(angle + k * 2 * np.pi / 3)) for k in range(3)]
        draw.polygon(points, fill=1)
    elif kind in ("rectangle", "striped"):
        draw.rectangle(box, fill=1)
    elif kind == "ellipse":
        draw.ellipse(box, fill=1)
    elif kind == "ring":
        draw.ellipse(box, fill=1)
        draw.ellipse([cx - hx * 0.55, cy - hy * 0.55, cx + hx * 0.55, cy + hy * 0.55], fill=0)
    elif kind == "cross":
        draw.rectangle([cx - hx, cy - hy * 0.25, cx + hx, cy + hy * 0.25], fill=1)
        draw.rectangle([cx - hx * 0.25, cy - hy, cx + hx * 0.25, cy + hy], fill=1)
    elif kind == "diamond":
        draw.polygon([(cx, cy - hy), (cx + hx, cy), (cx, cy + hy), (cx - hx, cy)], fill=1)
    else:
        raise ValueError(f"unknown shape {kind!r}")
    return np.asarray(mask, dtype=bool)


def _background(height, width, rng):
    """A smooth, low-saturation gradient with noise: no class colour, but not flat."""
    base = rng.uniform(70, 170, size=(2, 3))
    base[:, 1:] = base[:, :1] + rng.uniform(-20, 20, size=(2, 2))  # keep it greyish
    t = np.linspace(0, 1, width)[None, :, None] * rng.uniform(0.3, 1.0) + \
        np.linspace(0, 1, height)[:, None, None] * rng.uniform(0.0, 0.7)
    t = np.clip(t, 0, 1)
    return base[0] * (1 - t) + base[1] * t


def make_scene(seed, index, min_size=100, max_size=180):
    """(image uint8 HxWx3, label uint8 HxW) for scene `index` of the set made from `seed`."""
    rng = np.random.default_rng([seed, index])
    height, width = rng.integers(min_size, max_size + 1, size=2)
    image = _background(height, width, rng)
    label = np.zeros((height, width), dtype=np.uint8)
    ids = np.array(list(CLASSES))
    weights = np.array([CLASSES[c][2] for c in ids])
    for _ in range(rng.integers(1, 5)):
        class_id = int(rng.choice(ids, p=weights / weights.sum()))
        kind, colour, _ = CLASSES[class_id]
        mask = _shape_mask(kind, height, width, rng)
        colour = np.array(colour, dtype=np.float64) + rng.uniform(-20, 20, size=3)
        fill = np.broadcast_to(colour, image.shape).copy()
        if kind == "striped":  # darker horizontal stripes: texture as well as colour
            fill[(np.arange(height) // 4) % 2 == 1] *= 0.6
        image[mask] = fill[mask]
        label[mask] = class_id
    image += rng.normal(0, 8, size=image.shape)
    # VOC marks object outlines "void" (255): every pixel whose 4-neighbour has another class.
    border = np.zeros_like(label, dtype=bool)
    border[1:] |= label[1:] != label[:-1]
    border[:-1] |= label[1:] != label[:-1]
    border[:, 1:] |= label[:, 1:] != label[:, :-1]
    border[:, :-1] |= label[:, 1:] != label[:, :-1]
    label[border] = IGNORE_LABEL
    return np.clip(np.round(image), 0, 255).astype(np.uint8), label


def write_voc_layout(output_dir, scenes, splits, jpeg_quality=95, chroma_subsampling=0):
    """Writes (name, image, label) scenes and {split: [names]} in the VOC 2012 layout.

    `chroma_subsampling` is PIL's: 0 = 4:4:4 (crisp class colours), 2 = 4:2:0 (as most
    camera JPEGs, VOC's included).
    """
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        os.makedirs(os.path.join(output_dir, folder), exist_ok=True)
    palette = visualization.voc_palette()
    for name, image, label in scenes:
        Image.fromarray(image).save(os.path.join(output_dir, "JPEGImages", name + ".jpg"),
                                    quality=jpeg_quality,
                                    subsampling=chroma_subsampling)
        visualization.label_png(label, palette).save(
            os.path.join(output_dir, "SegmentationClass", name + ".png"))
    for split, names in splits.items():
        with open(os.path.join(output_dir, "ImageSets", "Segmentation", split + ".txt"),
                  "w") as f:
            f.write("".join(n + "\n" for n in names))


def generate(output_dir, seed=0, num_train=300, num_val=60, min_size=100, max_size=180):
    """Generates the synthetic set; returns {split: [names]}."""
    names = [f"syn_{i:06d}" for i in range(num_train + num_val)]
    splits = {"train": names[:num_train], "val": names[num_train:], "trainval": names}
    scenes = ((name, *make_scene(seed, i, min_size, max_size)) for i, name in enumerate(names))
    write_voc_layout(output_dir, scenes, splits)
    return splits
