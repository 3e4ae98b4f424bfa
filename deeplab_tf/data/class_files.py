"""The class list of one's own data set, as annotation tools and people write it.

Two forms, read into `classes.ClassTable` (the project's one class table):

- CVAT's "Segmentation mask 1.1" `labelmap.txt`: a header comment
  `# label:color_rgb:parts:actions`, then one `name:r,g,b:parts:actions` line per class
  (`background:0,0,0::`, `car:250,50,83::`). Class id = line order.
- A classes file: one class name per line, id = line order, optionally followed by its
  colour as `r,g,b` (or `r g b`): `car 250,50,83`. Classes without a colour are drawn in
  the first VOC palette colours nobody else uses; colour masks need every colour given.

Blank lines and `#` comments are skipped in both. Parsing takes time linear in the file's
size, whatever a line holds: lines are split with str methods, with no regular expression
that could backtrack (the colour after a name is read from the line's end, once).

The stored labels keep 255 for "ignore" (what the input pipeline expects); the value or
colour the masks use for it is declared by the user and must not be a class. numpy only (no TensorFlow).
"""
import dataclasses
import os

from deeplab_tf import classes, visualization
from deeplab_tf.data.validation import DataError

LABELMAP_HEADER = "# label:color_rgb:parts:actions"
STORED_IGNORE = 255  # the labels a build writes mark "ignore" with 255, whatever the source
SHOWN_CHARACTERS = 120  # of a long line, in an error message


@dataclasses.dataclass(frozen=True)
class ClassFile:
    """A parsed class list: the table, where it came from, whether colours were given."""
    table: classes.ClassTable
    path: str
    explicit_colors: bool  # every class's colour came from the file (colour masks need it)


def is_labelmap(path):
    """Whether `path` is a CVAT labelmap (by name, or by its header line)."""
    if os.path.basename(path).lower() == "labelmap.txt":
        return True
    with open(path, encoding="utf-8") as f:
        first = next((line.strip() for line in f if line.strip()), "")
    return first.replace(" ", "") == LABELMAP_HEADER.replace(" ", "")


def read(path, ignore_value=STORED_IGNORE, ignore_color=classes.VOC_IGNORE_COLOR):
    """The ClassFile of a labelmap.txt or a classes file; errors name the file and line."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(f"{path}: class list does not exist")
    entries = _labelmap_entries(path) if is_labelmap(path) else _classes_entries(path)
    if not entries:
        raise DataError(f"{path}: names no classes")
    _refuse_repeats(path, [(number, name) for number, name, _ in entries], "class name")
    _refuse_repeats(path, [(number, color) for number, _, color in entries if color],
                    "colour")
    names = [name for _, name, _ in entries]
    if len(names) > STORED_IGNORE:
        raise DataError(f"{path}: {len(names)} classes; at most {STORED_IGNORE} fit beside "
                        f"the ignore label {STORED_IGNORE}")
    if not 0 <= ignore_value <= 65535:
        raise DataError(f"ignore value {ignore_value} is not a mask value (0..65535)")
    if ignore_value < len(names):
        raise DataError(f"{path}: the ignore value {ignore_value} is class {ignore_value} "
                        f"({names[ignore_value]!r}, line {entries[ignore_value][0]}); "
                        f"declare a value >= {len(names)} as ignored")
    ignore_color = tuple(int(v) for v in ignore_color)
    for number, name, color in entries:
        if color == ignore_color:
            raise DataError(f"{path}: line {number}: class {name!r} has the ignore colour "
                            f"{','.join(map(str, color))}; declare another ignore colour")
    explicit = all(color is not None for _, _, color in entries)
    table = classes.ClassTable(names, _fill_colors([c for _, _, c in entries], ignore_color),
                               ignore_label=STORED_IGNORE, ignore_color=ignore_color)
    return ClassFile(table, path, explicit)


def _lines(path):
    """(line number, stripped text) of the lines that are not blank or comments."""
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            text = line.strip()
            if text and not text.startswith("#"):
                yield number, text


def _labelmap_entries(path):
    entries = []
    for number, text in _lines(path):
        fields = text.split(":")
        if len(fields) != 4:
            raise DataError(f"{path}: line {number}: {_shown(text)} is not "
                            f"name:r,g,b:parts:actions (CVAT's labelmap form)")
        name, color = fields[0].strip(), _color(fields[1], path, number, text)
        if not name:
            raise DataError(f"{path}: line {number}: {_shown(text)} has no class name")
        entries.append((number, name, color))
    return entries


def _classes_entries(path):
    entries = []
    for number, text in _lines(path):
        split = split_color(text)
        if split:
            name, numbers = split
            color = _color(",".join(numbers), path, number, text)
        else:
            name, color = text, None
        if ":" in name or "," in name:
            raise DataError(f"{path}: line {number}: {_shown(text)} is not a class name "
                            f"optionally followed by r,g,b")
        entries.append((number, name, color))
    return entries


def _skip(text, end, accept):
    """The index where the run of characters `accept` takes, ending at `end`, begins."""
    while end > 0 and accept(text[end - 1]):
        end -= 1
    return end


def split_color(text):
    """(name, [r, g, b] digit strings) when the stripped line `text` ends in a colour
    after its name, else None.

    The colour is three runs of digits at the line's end, separated by white space or by
    one comma (white space around it allowed): `250,50,83`, `250 50 83`, `250, 50, 83`.
    Before it, white space or colons (`car 250,50,83`, `car: 250,50,83`), and before those
    a name that is not blank (it may hold spaces and digits: `route 66 1,2,3` is class
    "route 66"). Read once from the end, each character looked at once or twice: linear
    in the line's length.
    """
    numbers, end = [], len(text)
    for position in range(3):
        start = _skip(text, end, str.isdecimal)
        if start == end:
            return None
        numbers.append(text[start:end])
        end = start
        if position < 2:  # the separator before this number: space*, at most one comma, space*
            start = _skip(text, end, str.isspace)
            if start > 0 and text[start - 1] == ",":
                start = _skip(text, start - 1, str.isspace)
            if start == end:
                return None
            end = start
    start = _skip(text, end, lambda c: c.isspace() or c == ":")
    name = text[:start].strip()
    if start == end or not name:
        return None
    return name, numbers[::-1]


def _shown(text):
    """`text` as an error shows it: whole, or its start and its length when long."""
    if len(text) <= SHOWN_CHARACTERS:
        return repr(text)
    return f"{text[:SHOWN_CHARACTERS]!r}... ({len(text):,} characters)"


def _color(text, path, number, line):
    parts = [p.strip() for p in text.split(",")]
    # isdecimal, not isdigit: int() refuses "²"; and a long run of digits is no colour
    # (int() of over 4,300 digits is an error, and slow).
    if len(parts) != 3 or not all(p.isdecimal() and len(p.lstrip("0")) <= 3 and
                                  int(p) <= 255 for p in parts):
        raise DataError(f"{path}: line {number}: {_shown(line)}: colour "
                        f"{_shown(text.strip())} is not r,g,b with each 0..255")
    return tuple(int(p) for p in parts)


def _refuse_repeats(path, numbered, what):
    first = {}
    for number, value in numbered:
        if value in first:
            shown = ",".join(map(str, value)) if isinstance(value, tuple) else repr(value)
            raise DataError(f"{path}: line {number}: {what} {shown} repeats line "
                            f"{first[value]}")
        first[value] = number


def _fill_colors(colors, ignore_color):
    """The given colours, and for the missing ones the first unused VOC palette colours."""
    taken = {c for c in colors if c is not None} | {tuple(ignore_color)}
    spare = (tuple(int(v) for v in c) for c in visualization.voc_palette())
    filled = []
    for color in colors:
        if color is None:
            color = next(c for c in spare if c not in taken)
            taken.add(color)
        filled.append(color)
    return filled
