"""Reading and checking the user's image and label files before they enter a TFDS build.

Every problem stops the build with a `DataError` that names the file and what is wrong:
a corrupt or truncated image, an image/label size mismatch, a label value outside
[0, num_classes) other than the ignore label 255, a split list naming a missing file or
naming an image twice, an empty directory. Nothing is dropped or clipped silently.
"""
import collections
import os

import numpy as np
from PIL import Image, UnidentifiedImageError

IGNORE_LABEL = 255


class DataError(ValueError):
    """A problem with the user's data files; the message names the file."""


def read_image(path, expected_format):
    """The file's bytes and (height, width), after checking it decodes completely.

    `expected_format` is "JPEG" or "PNG": the builder stores the bytes unchanged and the
    input pipeline decodes them with the matching TensorFlow op.
    """
    if not os.path.isfile(path):
        raise DataError(f"{path}: image file does not exist")
    with open(path, "rb") as f:
        data = f.read()
    if not data:
        raise DataError(f"{path}: image file is empty")
    try:
        with Image.open(path) as image:
            image_format, mode = image.format, image.mode
            image.load()  # decodes every byte: a truncated file fails here, not in training
            size = (image.height, image.width)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as error:
        raise DataError(f"{path}: corrupt or truncated image ({error})") from None
    if image_format != expected_format:
        raise DataError(f"{path}: expected a {expected_format} image, found {image_format}")
    if mode not in ("RGB", "L", "P"):
        raise DataError(f"{path}: unsupported colour mode {mode!r} (expected RGB)")
    return data, size


def read_label_png(path):
    """Class ids (uint8 HxW) from a palette ("P") or greyscale ("L") PNG."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: label file does not exist")
    try:
        with Image.open(path) as png:
            png.load()
            if png.mode not in ("P", "L"):
                raise DataError(f"{path}: a label PNG must hold class ids (palette or "
                                f"greyscale), found colour mode {png.mode!r}")
            return np.array(png, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, SyntaxError) as error:
        raise DataError(f"{path}: corrupt or truncated label PNG ({error})") from None


def check_label(label, num_classes, label_path, image_path, image_size):
    """Checks the label's size against the image's and its values against the class count.

    Returns the sorted class ids present (without 255), the `classes` feature.
    """
    if label.shape[:2] != tuple(image_size):
        raise DataError(f"{label_path}: label size {label.shape[0]}x{label.shape[1]} does "
                        f"not match image {image_path} size {image_size[0]}x{image_size[1]}")
    values = np.unique(label)
    bad = values[(values >= num_classes) & (values != IGNORE_LABEL)]
    if bad.size:
        raise DataError(f"{label_path}: label values {bad.tolist()} outside [0, {num_classes})"
                        f" and not the ignore label {IGNORE_LABEL}")
    return values[values != IGNORE_LABEL].astype(np.int64)


def read_split_list(path, check_exists):
    """Names listed in an ImageSets-style file, each checked by `check_exists(name)`.

    `check_exists` returns the path it looked for, or None when the file is there.
    """
    if not os.path.isfile(path):
        raise DataError(f"{path}: split list does not exist")
    with open(path) as f:
        numbered = [(number, line.split()[0]) for number, line in enumerate(f, 1)
                    if line.strip()]
    if not numbered:
        raise DataError(f"{path}: split list is empty")
    lines_of = collections.defaultdict(list)
    for number, name in numbered:
        lines_of[name].append(number)
    repeated = {name: numbers for name, numbers in lines_of.items() if len(numbers) > 1}
    if repeated:
        # TFDS keys examples by name and would fail much later ("Two examples share the
        # same hashed key"); a split that names an image twice would also weigh it twice.
        shown = "; ".join(f"{name!r} on lines {', '.join(map(str, numbers))}"
                          for name, numbers in list(repeated.items())[:5])
        more = f" (and {len(repeated) - 5} more names)" if len(repeated) > 5 else ""
        raise DataError(f"{path}: names an image more than once: {shown}{more}; "
                        f"keep one line per image")
    for number, name in numbered:
        missing = check_exists(name)
        if missing:
            raise DataError(f"{path}: line {number} names {name!r}, but {missing} "
                            f"does not exist")
    return [name for _, name in numbered]


def require_nonempty_dir(path, suffix):
    """The sorted file names in `path` ending in `suffix`; an error if there are none."""
    if not os.path.isdir(path):
        raise DataError(f"{path}: directory does not exist")
    names = sorted(n for n in os.listdir(path) if n.endswith(suffix))
    if not names:
        raise DataError(f"{path}: directory holds no *{suffix} files")
    return names
