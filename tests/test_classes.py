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
    with pytest.raises(ValueError, match=r"classes.json: not a class table \(unknown class table fields"):
        classes.read(tmp_path)
    with pytest.raises(FileNotFoundError, match="no class table"):
        classes.read(tmp_path / "missing")


def test_a_table_is_never_chosen_by_a_substring_of_the_data_sets_name():
    assert classes.builtin("pascal_voc_seg:1.0.0") == classes.voc()
    for name in ("custom_seg/voc_parts", "my_voc", "cityscapes_mine", "custom_seg/cityscapes"):
        assert classes.builtin(name) is None, name


def run_config(dataset, num_classes):
    from deeplab_tf import config as config_lib
    config = config_lib.ExperimentConfig()
    config.data.dataset, config.model.num_classes = dataset, num_classes
    return config


def test_a_run_without_classes_json_of_ones_own_data_gets_numbered_classes(tmp_path):
    """custom_seg/voc_parts with 21 classes: not VOC's names (the issue's case)."""
    table = classes.of_run(tmp_path, run_config("custom_seg/voc_parts", 21))
    assert table.names == tuple(str(i) for i in range(21))
    assert classes.of_run(tmp_path, run_config("pascal_voc_seg", 21)) == classes.voc()


@pytest.mark.parametrize("damage", ["directory", "not_utf8", "empty", "truncated"])
def test_an_unreadable_classes_json_of_a_run_is_an_error_naming_it(tmp_path, damage):
    path = tmp_path / "classes.json"
    if damage == "directory":
        path.mkdir()
    else:
        text = classes.voc().to_json().encode()
        path.write_bytes({"not_utf8": b"\xff\xfe" + text, "empty": b"",
                          "truncated": text[:len(text) // 2]}[damage])
    with pytest.raises(ValueError, match=rf"^{path}: "):
        classes.of_run(tmp_path, run_config("pascal_voc_seg", 21))
