"""The classes of a data set: names, colours and the ignore value, declared once.

A `ClassTable` travels from the data set (the built-in tables below, or the TFDS metadata
of a data set built from one's own folder) through the training work dir
(WORKDIR/classes.json) to evaluation tables, TensorBoard images, coloured masks and every
exported model, so that nobody types a class list twice and whoever serves a model knows
what label 3 means. numpy only: tools read it without loading TensorFlow.
"""
import dataclasses
import json
import os

import numpy as np

from deeplab_tf import atomic, visualization

CLASSES_FILE = "classes.json"  # in a work dir, an export dir, beside a .tflite / .onnx
VOC_IGNORE_COLOR = (224, 224, 192)  # the cream of the VOC ground truth's 255 border


@dataclasses.dataclass(frozen=True)
class ClassTable:
    """Class id i is `names[i]`, drawn in `colors[i]`; `ignore_label` is never a class."""
    names: tuple
    colors: tuple  # one (r, g, b) per class, 0..255
    ignore_label: int = visualization.IGNORE_LABEL
    ignore_color: tuple = VOC_IGNORE_COLOR

    def __post_init__(self):
        names = tuple(str(n) for n in self.names)
        colors = tuple(tuple(int(v) for v in c) for c in self.colors)
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "colors", colors)
        object.__setattr__(self, "ignore_color", tuple(int(v) for v in self.ignore_color))
        if not names:
            raise ValueError("a class table needs at least one class")
        if len(colors) != len(names):
            raise ValueError(f"{len(names)} class names but {len(colors)} colours")
        for name in names:
            if not name.strip():
                raise ValueError(f"empty class name in {list(names)}")
        _refuse_duplicates("class name", names)
        _refuse_duplicates("class colour", colors, names)
        for name, color in zip(names, colors):
            if len(color) != 3 or min(color) < 0 or max(color) > 255:
                raise ValueError(f"class {name!r}: colour {color} is not r,g,b in 0..255")
        if not 0 <= int(self.ignore_label) <= 255:
            raise ValueError(f"ignore_label must lie in 0..255, got {self.ignore_label}")
        if int(self.ignore_label) < len(names):
            raise ValueError(f"ignore_label {self.ignore_label} is class "
                             f"{names[int(self.ignore_label)]!r}: it must not be a class id "
                             f"(0..{len(names) - 1})")

    @property
    def num_classes(self):
        return len(self.names)

    def palette(self):
        """256x3 uint8: the class colours at their ids, the ignore colour at ignore_label."""
        palette = np.zeros((256, 3), dtype=np.uint8)
        palette[:self.num_classes] = np.asarray(self.colors, dtype=np.uint8)
        palette[self.ignore_label] = self.ignore_color
        return palette

    def index(self, name):
        """The id of class `name`; an unknown name is an error that lists the known ones."""
        try:
            return self.names.index(name)
        except ValueError:
            raise ValueError(f"unknown class {name!r}; the classes are "
                             f"{', '.join(self.names)}") from None

    def to_dict(self):
        return {"names": list(self.names), "colors": [list(c) for c in self.colors],
                "ignore_label": int(self.ignore_label),
                "ignore_color": list(self.ignore_color)}

    @classmethod
    def from_dict(cls, values):
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown class table fields {sorted(unknown)}")
        return cls(**values)

    def to_json(self):
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text):
        return cls.from_dict(json.loads(text))


def _refuse_duplicates(what, values, names=None):
    seen = {}
    for i, value in enumerate(values):
        if value in seen:
            owners = "" if names is None else f" (classes {names[seen[value]]!r} and {names[i]!r})"
            raise ValueError(f"duplicate {what} {value!r}{owners}")
        seen[value] = i


def voc():
    """The 21 PASCAL VOC classes in the devkit's colours."""
    palette = visualization.voc_palette()
    return ClassTable(visualization.VOC_CLASSES, palette[:len(visualization.VOC_CLASSES)])


def cityscapes():
    """The 19 Cityscapes train ids in the official label table's colours."""
    return ClassTable(visualization.CITYSCAPES_CLASSES, visualization.CITYSCAPES_COLORS,
                      ignore_color=(0, 0, 0))


# The built-in data sets (TFDS builder names) and their tables, by exact name: a name that
# merely contains "voc" (custom_seg/voc_parts) is one's own data with its own classes.
# "voc" and "cityscapes" are the palettes' names (tools.predict --colormap).
BUILTIN = {"pascal_voc_seg": "voc", "coco_voc_seg": "voc", "synthetic_voc": "voc",
           "cityscapes_seg": "cityscapes", "voc": "voc", "cityscapes": "cityscapes"}


def builtin(dataset):
    """The table of a built-in data set (a TFDS builder name, optionally with its
    ":VERSION"), or None for any other."""
    name = str(dataset).split(":", 1)[0]
    table = BUILTIN.get(name)
    if table is None:
        return None
    return voc() if table == "voc" else cityscapes()


def numbered(num_classes):
    """Classes "0", "1", ... in the VOC colours: for a model whose classes nobody named."""
    palette = visualization.voc_palette()
    return ClassTable(tuple(str(c) for c in range(num_classes)), palette[:num_classes])


def of_run(workdir, config):
    """The class table of a training run: WORKDIR/classes.json, which the trainer writes.

    One that cannot be read is an error naming it (ValueError). Work dirs from before
    that file get the table of their built-in data set (by its exact name), or numbered
    classes where none fits the model's class count.
    """
    try:
        return read(workdir)
    except FileNotFoundError:
        pass
    table = builtin(config.data.dataset)
    if table is not None and table.num_classes == config.model.num_classes:
        return table
    return numbered(config.model.num_classes)


def _open(path, mode):
    if "://" in os.fspath(path):  # gs://, hdfs://: TensorFlow's file systems
        import tensorflow as tf
        return tf.io.gfile.GFile(path, mode)
    return open(path, mode, encoding="utf-8")


def write(table, directory):
    """Writes DIRECTORY/classes.json atomically (readers see the old or the new table, never
    half of one); returns its path."""
    return atomic.write_text(os.path.join(os.fspath(directory), CLASSES_FILE), table.to_json())


def read(path):
    """A ClassTable from a classes.json file, or from DIRECTORY/classes.json.

    FileNotFoundError where there is none; ValueError naming the file where it cannot be
    read (not UTF-8, not JSON, empty, a bad table, unreadable for this user).
    """
    path = os.fspath(path)
    if not path.endswith(".json"):
        path = os.path.join(path, CLASSES_FILE)
    try:
        with _open(path, "r") as f:
            text = f.read()
    except FileNotFoundError as error:
        raise FileNotFoundError(f"{path}: no class table ({error})") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: the class table cannot be read ({error})") from None
    try:
        return ClassTable.from_json(text)
    except (ValueError, TypeError) as error:
        raise ValueError(f"{path}: not a class table ({error})") from None
