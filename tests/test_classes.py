"""The class table: validation, palette, JSON round trip, the built-in tables."""
import numpy as np
import pytest

from deeplab_tf import classes, visualization


def test_builtin_tables_match_the_palettes_the_masks_use():
    voc = classes.builtin("pascal_voc_seg")
    assert voc.num_classes == 21 and voc.names[15] == "person"
    np.testing.assert_array_equal(voc.palette()[:21], visualization.voc_palette()[:21])
    np.testing.assert_array_equal(voc.palette()[255], visualization.voc_palette()[255])
    city = classes.builtin("cityscapes_seg")
    assert city.num_classes == 19
    np.testing.assert_array_equal(city.palette(), visualization.cityscapes_palette())
    assert classes.builtin("my_own_set") is None


def test_round_trip_through_a_file(tmp_path):
    table = classes.ClassTable(("background", "car", "road"),
                               ((0, 0, 0), (250, 50, 83), (128, 64, 128)), ignore_label=255)
    path = classes.write(table, tmp_path)
    assert path == str(tmp_path / "classes.json")
    assert classes.read(tmp_path) == table
    assert classes.read(path).index("road") == 2
    with pytest.raises(ValueError, match="unknown class 'bus'; the classes are background"):
        table.index("bus")


@pytest.mark.parametrize("names, colors, ignore, message", [
    (("a", "b"), ((1, 1, 1),), 255, "2 class names but 1 colours"),
    (("a", "a"), ((1, 1, 1), (2, 2, 2)), 255, "duplicate class name 'a'"),
    (("a", "b"), ((1, 1, 1), (1, 1, 1)), 255, r"duplicate class colour \(1, 1, 1\) \(classes 'a' and 'b'\)"),
    (("a", "b"), ((1, 1, 1), (2, 2, 300)), 255, "class 'b': colour"),
    (("a", "b"), ((1, 1, 1), (2, 2, 2)), 1, "ignore_label 1 is class 'b'"),
])
def test_bad_tables_are_refused_naming_the_value(names, colors, ignore, message):
    with pytest.raises(ValueError, match=message):
        classes.ClassTable(names, colors, ignore_label=ignore)


def test_a_broken_file_is_named(tmp_path):
    (tmp_path / "classes.json").write_text('{"names": ["a"], "colours": [[1, 2, 3]]}')
    with pytest.raises(ValueError, match=r"classes.json: unknown class table fields"):
        classes.read(tmp_path)
    with pytest.raises(FileNotFoundError, match="no class table"):
        classes.read(tmp_path / "missing")
