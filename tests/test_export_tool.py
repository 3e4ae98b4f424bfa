"""tools.export refuses bad work dirs in one line.

Its export of a work dir's checkpoint (a model with a known answer) is the one that
test_export_saved_model serves in a fresh process; the TFLite conversion is tested in
test_export_tflite.py.
"""
import os
import subprocess
import sys

from deeplab_tf import config as config_lib


def run_tool(*args):
    return subprocess.run([sys.executable, "-m", "tools.export", *args],
                          capture_output=True, text=True, timeout=600)


def test_a_work_dir_without_checkpoint_is_refused_in_one_line(tmp_path):
    """It fails before a model is built. (A checkpoint of another class count is refused
    by evaluation.restore_model, which tools.export shares with tools.evaluate: tested in
    test_eval_inference and, on the command line, in test_eval_tools.)"""
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text(config_lib.to_json(config_lib.ExperimentConfig()))
    process = run_tool(f"--workdir={empty}")
    last = process.stderr.strip().splitlines()[-1]
    assert process.returncode != 0 and last.startswith("tools.export: error: no checkpoint")
    assert "Traceback" not in process.stderr
    assert not os.path.exists(empty / "export")
    # A work dir without config.json: test_console's tools.export runs (one line, and the
    # traceback with --debug).
