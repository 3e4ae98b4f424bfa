"""Classes files are parsed in time linear in their size, whatever a line holds, and
read as before: the colour after a name, the errors that name the line."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from deeplab_tf import data
from deeplab_tf.data import class_files

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# The old parser: one regular expression whose quantifiers overlap (white space may
# belong to several of them), kept here as the definition the new one must agree with.
OLD_COLOR_AFTER_NAME = re.compile(
    r"^(?P<name>.*?)[\s:]+(?P<r>\d+)\s*[,\s]\s*(?P<g>\d+)\s*[,\s]\s*(?P<b>\d+)\s*$")


def old_split(text):
    match = OLD_COLOR_AFTER_NAME.match(text)
    if match and match.group("name").strip():
        return match.group("name").strip(), [match.group(c) for c in "rgb"]
    return None


def test_the_colour_after_a_name_is_read_as_before():
    """On 20,000 short random lines of names, digits, spaces, commas and colons, the
    split-based parser agrees with the old regular expression."""
    rng = np.random.default_rng(0)
    alphabet = ["a", "b", " ", "\t", ":", ",", "1", "2", "0", "9", "\u00a0", "\u0663",
                "\u00b2", "car"]
    for _ in range(20000):
        text = "".join(rng.choice(alphabet, size=rng.integers(1, 15))).strip()
        if text:
            assert class_files.split_color(text) == old_split(text), repr(text)
    for text, expected in [("car 250,50,83", ("car", ["250", "50", "83"])),
                           ("traffic light: 250 , 170 30", ("traffic light",
                                                            ["250", "170", "30"])),
                           ("route 66 1,2,3", ("route 66", ["1", "2", "3"])),
                           ("1,2,3", None), ("car 1,,2,3", None), ("class 1 2", None)]:
        assert class_files.split_color(text) == expected == old_split(text)


# Lines on which the old expression backtracks catastrophically (its time grew with about
# the fourth power of the length: 325 characters took 1 s, 903 took 79 s in a build).
def adversarial_lines(size):
    run = " " * 64
    yield "1" + (run + "1") * (size // 65) + run + "x"          # runs of spaces, no colour
    yield "n" + (" 1" + run) * (size // 66) + " 10 20 30"      # a colour after a long name
    yield ":" * size + "1 2"                                     # separators, two numbers


def test_a_classes_file_of_hostile_lines_parses_in_linear_time(tmp_path):
    """A 1 MB file of such lines, in a subprocess (bounded memory) with a timeout of
    minutes that a linear parser meets thousands of times over; the old one needs
    longer than the age of the universe. The outcome is the parser's usual one: a line
    of a name and a colour, or a name, or one error naming the line."""
    path = tmp_path / "classes.txt"
    lines = list(adversarial_lines(340_000))
    path.write_text("background\n" + "\n".join(lines) + "\n")
    assert os.path.getsize(path) > 10 ** 6
    # deeplab_tf.data's __init__ imports TensorFlow (seconds, not what is measured); the
    # parser's modules need numpy and PIL only, so the package is registered bare.
    script = (
        "import os, resource, sys, types\n"
        "resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))\n"
        "package = types.ModuleType('deeplab_tf.data')\n"
        f"package.__path__ = [{os.path.join(REPO, 'deeplab_tf', 'data')!r}]\n"
        "sys.modules['deeplab_tf.data'] = package\n"
        "from deeplab_tf.data import class_files, validation\n"
        "assert 'tensorflow' not in sys.modules\n"
        "try:\n"
        "    table = class_files.read(sys.argv[1]).table\n"
        "    print('names', len(table.names), [len(n) for n in table.names])\n"
        "except validation.DataError as error:\n"
        "    print('error', str(error)[:400])\n")
    env = dict(os.environ, PYTHONPATH=REPO, CUDA_VISIBLE_DEVICES="")
    done = subprocess.run([sys.executable, "-c", script, str(path)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    # Line 2 is a name (spaces and digits, no colour), line 3 a name and a colour; line 4
    # is no name (colons) and is refused, naming the line and showing only its start.
    assert done.stdout.startswith(f"error {path}: line 4: '::::"), done.stdout
    assert "characters) is not a class name optionally followed by r,g,b" in done.stdout
    del lines[-1]
    path.write_text("background\n" + "\n".join(lines) + "\n")
    done = subprocess.run([sys.executable, "-c", script, str(path)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["names", "3", "[10,", f"{len(lines[0])},",
                                   f"{len(lines[1][:-len(' 10 20 30')].strip())}]"], done.stdout


def test_a_long_line_is_shown_shortened_in_the_error(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_text("background\ncar 1,2\n" + "x," * 5000 + "\n")
    with pytest.raises(data.DataError, match=r"line 2: 'car 1,2' is not a class name"):
        class_files.read(path)
    path.write_text("background\n" + "x," * 5000 + "\n")
    with pytest.raises(data.DataError) as error:
        class_files.read(path)
    assert str(error.value).startswith(f"{path}: line 2: 'x,x,")
    assert "... (10,000 characters) is not a class name" in str(error.value)
    assert len(str(error.value)) < 400
