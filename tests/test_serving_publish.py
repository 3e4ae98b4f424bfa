"""How an export reaches its directory: written beside it, then renamed into place; a
previous export is swapped out whole, a directory of other files refused; the metadata and
the warm-up records are written through a temporary file and a rename."""
import os

import pytest

from deeplab_tf import atomic
from deeplab_tf.export import saved_model


def fake_export(path, version):
    os.makedirs(os.path.join(path, "variables"))
    with open(os.path.join(path, "saved_model.pb"), "w") as f:
        f.write(f"graph {version}")
    with open(os.path.join(path, "variables", "variables.data-00000-of-00001"), "w") as f:
        f.write(f"weights {version}")


def read(path):
    with open(path) as f:
        return f.read()


@pytest.mark.parametrize("target", ["missing", "empty"])
def test_a_new_export_is_renamed_into_a_missing_or_empty_directory(tmp_path, target):
    export_dir = tmp_path / "1"
    if target == "empty":
        export_dir.mkdir()
    fake_export(tmp_path / "new", 2)
    saved_model.publish(str(tmp_path / "new"), str(export_dir))
    assert read(export_dir / "saved_model.pb") == "graph 2"
    assert sorted(os.listdir(tmp_path)) == ["1"]


def test_a_previous_export_is_swapped_out_whole_never_overwritten(tmp_path):
    export_dir = tmp_path / "1"
    fake_export(export_dir, 1)
    # A server that loaded the old export holds its files open: they must keep the old
    # bytes (before, tf.saved_model.save wrote the new variables into the same files).
    live = open(export_dir / "variables" / "variables.data-00000-of-00001")
    fake_export(tmp_path / "new", 2)
    saved_model.publish(str(tmp_path / "new"), str(export_dir))
    assert live.read() == "weights 1"
    live.close()
    assert read(export_dir / "saved_model.pb") == "graph 2"
    assert read(export_dir / "variables" / "variables.data-00000-of-00001") == "weights 2"
    assert sorted(os.listdir(tmp_path)) == ["1"]  # the old one removed, nothing left over


@pytest.mark.parametrize("foreign", ["config.json", "checkpoints"])
def test_a_directory_holding_other_files_is_refused_and_left_alone(tmp_path, foreign):
    export_dir = tmp_path / "run"
    fake_export(export_dir, 1)
    (export_dir / foreign).write_text("someone else's")
    fake_export(tmp_path / "new", 2)
    with pytest.raises(ValueError, match=f"--export_dir={export_dir} holds other files than "
                                         f"a SavedModel export \\({foreign}\\)"):
        saved_model.publish(str(tmp_path / "new"), str(export_dir))
    assert read(export_dir / foreign) == "someone else's"
    assert read(export_dir / "saved_model.pb") == "graph 1"
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file, not a directory"):
        saved_model.check_target(str(tmp_path / "file"))


def test_the_files_tools_export_writes_beside_it_are_kept(tmp_path):
    # tools.export --format=tflite|onnx defaults to the same WORKDIR/export: a SavedModel
    # re-exported there keeps those files (and the class table beside them) as they were.
    export_dir = tmp_path / "export"
    fake_export(export_dir, 1)
    kept = ["model_int8.tflite", "model.onnx", "model.onnx.eval_val.json", "classes.json"]
    for name in kept:
        (export_dir / name).write_text(name)
    fake_export(tmp_path / "new", 2)
    saved_model.publish(str(tmp_path / "new"), str(export_dir))
    assert read(export_dir / "saved_model.pb") == "graph 2"
    assert all(read(export_dir / name) == name for name in kept)
    assert sorted(os.listdir(tmp_path)) == ["export"]


def test_metadata_and_warmup_records_are_replaced_by_rename(tmp_path):
    path = tmp_path / saved_model.METADATA_FILE
    atomic.write_text(str(path), "old")
    reader = open(path)
    atomic.write_text(str(path), "new")
    assert reader.read() == "old" and read(path) == "new"  # a new file, not rewritten
    reader.close()
    mask = os.umask(0)
    os.umask(mask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~mask  # as open() makes files
    records = saved_model.write_warmup_requests(str(tmp_path), 9)
    first = os.stat(records).st_ino
    saved_model.write_warmup_requests(str(tmp_path), 9)
    assert os.stat(records).st_ino != first
    assert [s for s, _ in saved_model.read_warmup_requests(str(tmp_path))] == [
        saved_model.SIGNATURE_BYTES, saved_model.SIGNATURE_IMAGES]
    assert sorted(os.listdir(tmp_path)) == ["assets.extra", saved_model.METADATA_FILE]
    assert os.listdir(tmp_path / "assets.extra") == ["tf_serving_warmup_requests"]
