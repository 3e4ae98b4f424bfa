"""Split lists that name an image twice are refused before TFDS writes anything."""
import pytest

from deeplab_tf import data
from deeplab_tf import synthetic
from deeplab_tf.data import validation


def test_a_repeated_name_is_refused_with_the_file_the_name_and_its_lines(tmp_path):
    split = tmp_path / "train.txt"
    # Blank lines count: the numbers are the file's own line numbers.
    split.write_text("a\nb\n\nc\na\nb extra-column\na\n")
    with pytest.raises(validation.DataError) as error:
        validation.read_split_list(str(split), lambda name: None)
    message = str(error.value)
    assert message.startswith(f"{split}: names an image more than once: ")
    assert "'a' on lines 1, 5, 7" in message and "'b' on lines 2, 6" in message
    assert "'c'" not in message


def test_names_and_missing_files_keep_their_line_numbers(tmp_path):
    split = tmp_path / "val.txt"
    split.write_text("\nx\n\ny\n")
    assert validation.read_split_list(str(split), lambda name: None) == ["x", "y"]
    with pytest.raises(validation.DataError, match=r"line 4 names 'y', but /nowhere/y.jpg"):
        validation.read_split_list(str(split),
                                   lambda name: "/nowhere/y.jpg" if name == "y" else None)


def test_build_refuses_a_duplicated_voc_split_list(tmp_path):
    source = tmp_path / "src"
    splits = synthetic.generate(str(source), seed=0, num_train=3, num_val=2, min_size=20,
                                max_size=24)
    listing = source / "ImageSets" / "Segmentation" / "val.txt"
    first = splits["val"][0]
    listing.write_text("\n".join(splits["val"] + [first]) + "\n")
    with pytest.raises(validation.DataError,
                       match=f"val.txt: names an image more than once: '{first}' on lines 1, 3"):
        data.build("synthetic_voc", str(source), str(tmp_path / "tfds"))
