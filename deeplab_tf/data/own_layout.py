"""One's own segmentation data as annotation tools export it, read and checked whole.

Two layouts under the folder given as --manual_dir:

    VOC-style tree (CVAT's "Segmentation mask 1.1", labelme2voc, ...):
        JPEGImages/NAME.{jpg,jpeg,png}   SegmentationClass/NAME.png
        ImageSets/Segmentation/SPLIT.txt (optional)   labelmap.txt or classes.txt
    Plain folder:
        images/NAME.{jpg,jpeg,png}   masks/NAME.png   classes.txt (or labelmap.txt)

Names are the files' stems, spaces and dots included (`IMG 0001.jpg`, `frame 0000.v2.jpg`);
a line of a list file is one name. Images may be JPEG, PNG or a mix of both: each file is
stored byte for byte as it is (nothing re-encoded, nothing lost), and the input pipeline
decodes each by its own format. An image or mask that is a symbolic link out of its folder
is refused.

Masks, by their PNG mode: RGB colour masks are matched to the class list's colours;
palette (P) PNGs are read by index, as VOC's own masks, the palette only being how they
look; greyscale (L, I;16) PNGs hold the class ids. The declared ignore value (index or
grey level) or ignore colour becomes the stored ignore label 255.

Splits: each list file of a VOC tree is a split named after it. With a single list (CVAT
writes default.txt), no list, or a plain folder, a seeded `val` hold-out is drawn from the
sorted names and the rest is `train`: the same names on every build of the same files.

`OwnLayout` reads every mask and every image header before anything is written, so a
problem (a colour or value that is no class, an image without a mask, sizes that differ,
an empty split) stops the build in seconds, with one line that names the file. numpy and
PIL only.
"""
import os

import numpy as np
from PIL import UnidentifiedImageError

from deeplab_tf import classes
from deeplab_tf.data import class_files, validation
from deeplab_tf.data.validation import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
LAYOUTS = {"voc": ("JPEGImages", "SegmentationClass"), "folder": ("images", "masks")}
CLASS_FILE_NAMES = ("labelmap.txt", "classes.txt")
SHOWN = 5  # names listed in an error before "and N more"
_ORIENTATION = 0x0112  # the EXIF tag


def _listing(names):
    more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    return ", ".join(names[:SHOWN]) + more


def find_layout(manual_dir):
    """("voc" | "folder", image dir, mask dir) of `manual_dir`."""
    for kind, (images, masks) in LAYOUTS.items():
        if os.path.isdir(os.path.join(manual_dir, images)):
            return kind, os.path.join(manual_dir, images), os.path.join(manual_dir, masks)
    raise DataError(f"{manual_dir}: neither a VOC-style tree (JPEGImages/, "
                    f"SegmentationClass/) nor a plain folder (images/, masks/)")


def find_class_file(manual_dir):
    for name in CLASS_FILE_NAMES:
        if os.path.isfile(os.path.join(manual_dir, name)):
            return os.path.join(manual_dir, name)
    raise DataError(f"{manual_dir}: no {' or '.join(CLASS_FILE_NAMES)}; pass the class "
                    f"list with --classes=FILE")


def _stems(directory, suffixes, what):
    """{stem: file path} of the files in `directory` ending in one of `suffixes`."""
    if not os.path.isdir(directory):
        raise DataError(f"{directory}: {what} directory does not exist")
    stems = {}
    for file_name in sorted(os.listdir(directory)):
        stem, suffix = os.path.splitext(file_name)
        if suffix.lower() not in suffixes or file_name.startswith("."):
            continue
        if stem in stems:
            raise DataError(f"{directory}: two {what} files named {stem!r}: "
                            f"{os.path.basename(stems[stem])} and {file_name}")
        stems[stem] = os.path.join(directory, file_name)
    if not stems:
        raise DataError(f"{directory}: holds no {what} files "
                        f"({', '.join('*' + s for s in suffixes)})")
    return stems


def hold_out(names, fraction, seed):
    """(train, val): `fraction` of the sorted names, drawn by `seed`, held out as val."""
    names = sorted(names)
    if len(names) < 2:
        raise DataError(f"cannot hold out a validation split from {len(names)} image(s); "
                        f"add images or set the validation fraction to 0")
    count = min(max(int(round(fraction * len(names))), 1), len(names) - 1)
    held = set(np.asarray(names)[np.random.default_rng(seed).permutation(len(names))
                                 [:count]].tolist())
    return [n for n in names if n not in held], [n for n in names if n in held]


class OwnLayout:
    """The splits, class table and masks of one export folder, checked before a build."""

    def __init__(self, manual_dir, class_file=None, ignore_value=255,
                 ignore_color=classes.VOC_IGNORE_COLOR, val_fraction=0.2,
                 split_seed=0):
        self.manual_dir = os.path.abspath(os.path.expanduser(os.fspath(manual_dir)))
        self.kind, self.image_dir, self.mask_dir = find_layout(self.manual_dir)
        self.class_file = class_files.read(
            os.path.expanduser(class_file) if class_file else find_class_file(
                self.manual_dir), ignore_value, ignore_color)
        self.table = self.class_file.table
        self.ignore_value = int(ignore_value)
        self.val_fraction, self.split_seed = float(val_fraction), int(split_seed)
        if not 0 <= self.val_fraction < 1:
            raise DataError(f"the validation fraction must lie in [0, 1), got "
                            f"{val_fraction}")
        self.images = _stems(self.image_dir, IMAGE_SUFFIXES, "image")
        self.masks = _stems(self.mask_dir, (".png",), "mask")
        self._check_pairs(self.image_dir, self.mask_dir)
        self.held_out_from = None
        self.splits = self._split_names()
        self._check_links()
        self.image_format = self._image_format()
        self._color_keys = self._color_lookup()
        self.pixel_counts, self.ignored_pixels = self._check_all()

    # ------------------------------------------------------------------ pairing, splits

    def _check_pairs(self, image_dir, mask_dir):
        lonely = sorted(set(self.images) - set(self.masks))
        if lonely:
            raise DataError(f"{image_dir}: {len(lonely)} image(s) without a mask in "
                            f"{mask_dir}: {_listing(lonely)}")
        lonely = sorted(set(self.masks) - set(self.images))
        if lonely:
            raise DataError(f"{mask_dir}: {len(lonely)} mask(s) without an image in "
                            f"{image_dir}: {_listing(lonely)}")

    def _problem(self, name):
        """Why a listed name has no image here, or where its files lead (a symbolic link
        out of their folder); None when both are there."""
        if name not in self.images:
            return f"but {os.path.join(self.image_dir, name + '.jpg')} does not exist"
        link = self._link_out(name)
        return link and f"but {link}"

    def _link_out(self, name):
        """Where the image or mask of `name` leads out of its folder, or None (every
        image has its mask: _check_pairs)."""
        return (validation.link_out(self.images[name], self.image_dir) or
                validation.link_out(self.masks[name], self.mask_dir))

    def _check_links(self):
        """Every file a split uses stays in its folder (listed names were checked with
        their list's line; these are the ones a directory listing gave)."""
        for name in sorted({n for names in self.splits.values() for n in names}):
            link = self._link_out(name)
            if link:
                raise DataError(f"{link}; copy the file into the export instead of "
                                f"linking to it")

    def _split_names(self):
        lists_dir = os.path.join(self.manual_dir, "ImageSets", "Segmentation")
        lists = {}
        if self.kind == "voc" and os.path.isdir(lists_dir):
            for file_name in sorted(os.listdir(lists_dir)):
                split, suffix = os.path.splitext(file_name)
                if suffix != ".txt":
                    continue
                path = os.path.join(lists_dir, file_name)
                if not split.isidentifier():
                    raise DataError(f"{path}: the split name {split!r} must be letters, "
                                    f"digits and underscores")
                lists[split] = validation.read_split_list(path, self._problem)
            if not lists:
                raise DataError(f"{lists_dir}: holds no split lists (*.txt)")
        if len(lists) > 1:
            return lists
        (whole, names), = lists.items() if lists else (("train", sorted(self.images)),)
        if self.val_fraction == 0:
            return {whole: names}
        self.held_out_from = whole
        train, val = hold_out(names, self.val_fraction, self.split_seed)
        return {"train": train, "val": val}

    def _image_format(self):
        """"jpeg" or "png" when every image is one format; None for a mix of both.

        Either way each image's file is stored byte for byte (nothing is re-encoded, so
        nothing is lost). A mix is stored without a fixed encoding in the TFDS feature,
        and the input pipeline picks each image's decoder from its first bytes
        (`augment.decode_image`).
        """
        kinds = {self.format_of(name) for names in self.splits.values() for name in names}
        return kinds.pop().lower() if len(kinds) == 1 else None

    def format_of(self, name):
        """"JPEG" or "PNG": the format the image file of `name` must decode as."""
        return "PNG" if self.images[name].lower().endswith(".png") else "JPEG"

    # ------------------------------------------------------------------ masks

    def _color_lookup(self):
        """Sorted 24-bit colour keys and the stored label of each (class id or 255)."""
        colors = list(self.table.colors) + [self.table.ignore_color]
        labels = list(range(self.table.num_classes)) + [class_files.STORED_IGNORE]
        keys = np.array([(r << 16) | (g << 8) | b for r, g, b in colors], dtype=np.int64)
        order = np.argsort(keys)
        return keys[order], np.array(labels, dtype=np.uint8)[order]

    def read_mask(self, path):
        """The stored labels (uint8 HxW: class ids, 255 = ignore) of one mask PNG."""
        try:
            with validation.open_image(path, "mask") as png:
                png.load()
                mode, values = png.mode, np.array(png)
        except (OSError, UnidentifiedImageError, SyntaxError) as error:
            raise DataError(f"{path}: corrupt or truncated mask PNG ({error})") from None
        if mode == "RGBA":
            if (values[..., 3] != 255).any():
                raise DataError(f"{path}: an RGBA mask with transparent pixels; save the "
                                f"colour mask as RGB")
            mode, values = "RGB", values[..., :3]
        if mode == "RGB":
            return self._colors_to_labels(values, path)
        if mode in ("P", "L", "I", "I;16"):
            return self._values_to_labels(values.astype(np.int64), path)
        raise DataError(f"{path}: unsupported mask mode {mode!r} (expected RGB colours, or "
                        f"palette / greyscale class ids)")

    def _colors_to_labels(self, rgb, path):
        if not self.class_file.explicit_colors:
            raise DataError(f"{path}: an RGB colour mask, but {self.class_file.path} does "
                            f"not give every class a colour")
        keys, labels = self._color_keys
        flat = ((rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8)
                | rgb[..., 2])
        index = np.minimum(np.searchsorted(keys, flat), len(keys) - 1)
        known = keys[index] == flat
        if not known.all():
            unknown, counts = np.unique(flat[~known], return_counts=True)
            worst = int(np.argmax(counts))
            color = ",".join(str((int(unknown[worst]) >> s) & 255) for s in (16, 8, 0))
            others = (f" (and {len(unknown) - 1} more unknown colours)"
                      if len(unknown) > 1 else "")
            raise DataError(f"{path}: colour {color} ({counts[worst]} pixels) is not in "
                            f"{self.class_file.path} nor the ignore colour "
                            f"{','.join(map(str, self.table.ignore_color))}{others}")
        return labels[index]

    def _values_to_labels(self, values, path):
        ignored = values == self.ignore_value
        bad = (values >= self.table.num_classes) & ~ignored
        if bad.any():
            wrong, counts = np.unique(values[bad], return_counts=True)
            raise DataError(f"{path}: value {int(wrong[0])} ({counts[0]} pixels) is not a "
                            f"class id (0..{self.table.num_classes - 1} in "
                            f"{self.class_file.path}) nor the ignore value "
                            f"{self.ignore_value}" +
                            (f"; also {wrong[1:SHOWN + 1].tolist()}" if len(wrong) > 1
                             else ""))
        return np.where(ignored, class_files.STORED_IGNORE, values).astype(np.uint8)

    def _image_size(self, name):
        """(height, width, EXIF orientation) from the header, as the stored bytes decode:
        TensorFlow's decoders do not apply the EXIF orientation. The file must be the
        format its suffix says (the stored bytes are decoded by it)."""
        path, expected = self.images[name], self.format_of(name)
        try:
            with validation.open_image(path) as image:
                found = validation.file_format(image)
                size = image.height, image.width, image.getexif().get(_ORIENTATION, 1)
        except (OSError, UnidentifiedImageError, SyntaxError) as error:
            raise DataError(f"{path}: corrupt or truncated image ({error})") from None
        if found != expected:
            raise DataError(f"{path}: expected a {expected} image, found {found}")
        return size

    def _check_all(self):
        """Every mask decoded and checked against its image's size; per split, the pixels
        of each class and the ignored ones."""
        per_name = {}
        for name in sorted({n for names in self.splits.values() for n in names}):
            label = self.read_mask(self.masks[name])
            height, width, orientation = self._image_size(name)
            if label.shape != (height, width):
                # An annotation tool that showed the photo turned by its EXIF tag drew the
                # mask turned too; the pixels stored here are not turned.
                turned = (f"; the image's EXIF orientation {orientation} turns it by 90 "
                          f"degrees: store the image turned (PIL's ImageOps.exif_transpose)"
                          if orientation in (5, 6, 7, 8) and label.shape == (width, height)
                          else "")
                raise DataError(f"{self.masks[name]}: mask size {label.shape[0]}x"
                                f"{label.shape[1]} does not match image "
                                f"{self.images[name]} size {height}x{width}{turned}")
            per_name[name] = np.bincount(label.ravel(), minlength=256)
        pixel_counts, ignored = {}, {}
        for split, names in self.splits.items():
            total = sum(per_name[n] for n in names)
            pixel_counts[split] = total[:self.table.num_classes].tolist()
            ignored[split] = int(total[class_files.STORED_IGNORE])
        return pixel_counts, ignored

    # ------------------------------------------------------------------ the build's view

    def split_items(self):
        """{split: [(name, image path, mask path)]}, in the split's order."""
        return {split: [(n, self.images[n], self.masks[n]) for n in names]
                for split, names in self.splits.items()}

    def metadata(self):
        """What the build records beside the examples (TFDS metadata.json)."""
        return {
            "class_table": self.table.to_dict(),
            "source": {"manual_dir": self.manual_dir, "layout": self.kind,
                       "class_file": self.class_file.path,
                       "ignore_value": self.ignore_value,
                       "val_fraction": self.val_fraction, "split_seed": self.split_seed,
                       "held_out_from": self.held_out_from},
            "split_counts": {split: len(names) for split, names in self.splits.items()},
            "pixel_counts": self.pixel_counts,
            "ignored_pixels": self.ignored_pixels,
        }
