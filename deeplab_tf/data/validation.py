"""Reading and checking the user's image and label files before they enter a TFDS build.

Every problem stops the build with a `DataError` that names the file and what is wrong:
a corrupt or truncated image, an image over `MAX_PIXELS` (or one PIL takes for a
decompression bomb), an image/label size mismatch, a label value outside [0, num_classes)
other than the ignore label 255, a split list naming a missing file, naming an image twice
or naming a path that leads out of the data set's folders, an empty directory. Nothing is
dropped or clipped silently.

A line of a split list is one name, spaces included (annotation tools keep a photo's own
name, `IMG 0001`): none of the list formats read here (VOC's and SBD's ImageSets, CVAT's
ImageSets/Segmentation) has a second column.
"""
import collections
import contextlib
import os
import re
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

IGNORE_LABEL = 255
# Images and masks larger than this are refused from their header, before any pixel is
# decoded: 8192 x 8192 (a 48-megapixel phone photo fits). Below PIL's own decompression-bomb
# warning (Image.MAX_IMAGE_PIXELS, about 89.5 million), so PIL never warns for an image
# accepted here; a 513 crop of the paper's recipe needs nothing near it.
MAX_PIXELS = 8192 * 8192


class DataError(ValueError):
    """A problem with the user's data files; the message names the file."""


def check_pixels(path, width, height, what="image"):
    """A DataError when a `width` x `height` image is over `MAX_PIXELS`."""
    if width * height > MAX_PIXELS:
        raise DataError(f"{path}: {what} of {width}x{height} = {width * height:,} pixels is "
                        f"over the bound of {MAX_PIXELS:,} pixels (8192 x 8192); "
                        f"downscale or tile it")


@contextlib.contextmanager
def open_image(path, what="image"):
    """PIL's image of `path`, its size checked against `MAX_PIXELS` from the header; a
    file PIL takes for a decompression bomb is the same one-line DataError."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise DataError(f"{path}: {what} over the bound of {MAX_PIXELS:,} pixels "
                        f"(PIL: {error})") from None
    with image:
        check_pixels(path, image.width, image.height, what)
        yield image


def file_format(image):
    """PIL's format of an opened image, "MPO" (a phone camera's multi-picture JPEG, whose
    first picture every JPEG decoder reads) counted as "JPEG"."""
    return "JPEG" if image.format == "MPO" else image.format


def read_image(path, expected_format):
    """The file's bytes and (height, width), after checking it decodes completely.

    `expected_format` is "JPEG" or "PNG": the builder stores the bytes unchanged and the
    input pipeline decodes them with the matching TensorFlow op (`augment.decode_image`).
    """
    if not os.path.isfile(path):
        raise DataError(f"{path}: image file does not exist")
    with open(path, "rb") as f:
        data = f.read()
    if not data:
        raise DataError(f"{path}: image file is empty")
    try:
        with open_image(path) as image:
            image_format, mode = file_format(image), image.mode
            image.load()  # decodes every byte: a truncated file fails here, not in training
            size = (image.height, image.width)
    except DataError:
        raise
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
        with open_image(path, "label PNG") as png:
            png.load()
            if png.mode not in ("P", "L"):
                raise DataError(f"{path}: a label PNG must hold class ids (palette or "
                                f"greyscale), found colour mode {png.mode!r}")
            return np.array(png, dtype=np.uint8)
    except DataError:
        raise
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


def escape(name):
    """Why a listed `name` would lead out of the folder it is looked up in, or None."""
    if "\0" in name:
        return "a NUL character"
    if os.path.isabs(name) or name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:[\\/]", name):
        return "an absolute path"
    if ".." in re.split(r"[\\/]", name):
        return "a '..' that climbs out of the folder"
    return None


def link_out(path, folder):
    """"PATH leads to TARGET, outside FOLDER" when `path` (an existing file, maybe a
    symbolic link) resolves outside `folder`, else None. The folder is resolved first: a
    folder that is itself a link (a data set kept on another disk) is fine, a file that
    links out of it is not."""
    real, root = os.path.realpath(path), os.path.realpath(folder)
    if os.path.commonpath([real, root]) == root:
        return None
    return f"{path} leads to {real}, outside {folder}"


def missing_or_outside(path, folder):
    """The problem of one file a listed name resolves to, as "but ...": it is missing, or
    it leads outside `folder`; None when neither."""
    if not os.path.isfile(path):
        return f"but {path} does not exist"
    link = link_out(path, folder)
    return link and f"but {link}"


def read_split_list(path, check):
    """Names listed in an ImageSets-style file, one a line, each checked by `check(name)`.

    A line is one name: only the line break and surrounding white space are dropped, so a
    name with spaces (`IMG 0001`) is read whole. `check` returns None when the name's
    files are there, else the problem as a phrase ("but X does not exist",
    `missing_or_outside`). A name that is an absolute path or climbs out with `..` is
    refused here, before `check` sees it.
    """
    if not os.path.isfile(path):
        raise DataError(f"{path}: split list does not exist")
    with open(path, encoding="utf-8-sig") as f:
        try:
            numbered = [(number, line.strip()) for number, line in enumerate(f, 1)
                        if line.strip()]
        except UnicodeDecodeError as error:
            raise DataError(f"{path}: split list is not UTF-8 text ({error})") from None
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
        reason = escape(name)
        if reason:
            raise DataError(f"{path}: line {number} names {name!r}: {reason}, which leads "
                            f"out of the data set's folders; list names relative to them")
        problem = check(name)
        if problem:
            raise DataError(f"{path}: line {number} names {name!r}, {problem}")
    return [name for _, name in numbered]


def require_nonempty_dir(path, suffix):
    """The sorted file names in `path` ending in `suffix`; an error if there are none."""
    if not os.path.isdir(path):
        raise DataError(f"{path}: directory does not exist")
    names = sorted(n for n in os.listdir(path) if n.endswith(suffix))
    if not names:
        raise DataError(f"{path}: directory holds no *{suffix} files")
    return names
