"""What the tools print: TensorFlow's load-time lines filtered, progress lines, one-line errors."""
import os
import re
import subprocess
import sys

import pytest

from deeplab_tf import config as config_lib
from deeplab_tf import console

CUDART = ("I0000 00:00:1795752282.920988    4740 cudart_stub.cc:31] Could not find cuda "
          "drivers on your machine, GPU will not be used.\n")
BANNER = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
CUINIT = ("E0000 00:00:1795752289.121191    4740 cuda_platform.cc:52] failed call to cuInit: "
          "INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)\n")
OTHER_ERROR = "E0000 00:00:1795752289.121191    4740 some_op.cc:12] something real broke\n"
A_WARNING = "W0000 00:00:1795752289.121191    4740 some_op.cc:12] a warning\n"


def test_load_noise_is_dropped_and_real_errors_are_kept():
    assert console.is_load_noise(BANNER) and console.is_load_noise(CUDART)
    # cuInit failing is news only where an NVIDIA driver is loaded.
    assert console.is_load_noise(CUINIT, nvidia_driver=False)
    assert not console.is_load_noise(CUINIT, nvidia_driver=True)
    assert not console.is_load_noise(OTHER_ERROR)
    assert console.is_load_noise(A_WARNING, min_level=2)
    assert not console.is_load_noise(A_WARNING, min_level=1)
    assert not console.is_load_noise("Traceback (most recent call last):\n")


def test_the_users_log_level_wins_and_verbosity_one_shows_everything():
    assert console.tensorflow_log_level(None, environ={}) == ("2", True)
    assert console.tensorflow_log_level(0, environ={}) == ("2", True)
    assert console.tensorflow_log_level(1, environ={}) == ("0", False)
    assert console.tensorflow_log_level(None, {"TF_CPP_MIN_LOG_LEVEL": "0"}) == ("0", False)
    assert console.tensorflow_log_level(1, {"TF_CPP_MIN_LOG_LEVEL": "3"}) == ("3", False)
    assert console.early_flags(["prog", "--workdir", "x", "-v", "1", "--debug"]) == (1, True)
    assert console.early_flags(["prog", "--verbosity=-1"]) == (-1, False)


def test_filtered_stderr_replays_the_kept_lines_of_file_descriptor_2(capfd):
    with console.filtered_stderr(lambda line: "drop" in line):
        os.write(2, b"keep 1\ndrop this\nkeep 2\n")
    assert capfd.readouterr().err == "keep 1\nkeep 2\n"


def test_progress_lines_give_count_rate_and_eta():
    now = [100.0]
    lines = []
    progress = console.Progress("evaluated", total=10, unit="images", every=4,
                                clock=lambda: now[0], log=lambda fmt, line: lines.append(line))
    for _ in range(10):
        now[0] += 2.0  # 2 s per image: 0.5 images/s
        progress.update()
    assert lines == [
        "evaluated 4/10 images (40%) | 0.50 images/s | ETA 0:00:12 | 0:00:08 elapsed",
        "evaluated 8/10 images (80%) | 0.50 images/s | ETA 0:00:04 | 0:00:16 elapsed",
        "evaluated 10/10 images (100%) | 0.50 images/s | 0:00:20 elapsed"]
    unknown = console.Progress("read", unit="examples", every=3, clock=lambda: now[0],
                               log=lambda fmt, line: lines.append(line))
    now[0] += 4.0
    unknown.update(3)
    assert lines[-1] == "read 3 examples | 0.75 examples/s | 0:00:04 elapsed"


def run_tool(*args, env=None):
    environment = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    environment.update(env or {})
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True,
                          timeout=300, env=environment)


def test_a_tool_is_quiet_and_a_bad_input_is_one_line(tmp_path):
    process = run_tool("tools.export", f"--workdir={tmp_path / 'nowhere'}")
    assert process.returncode == 1
    assert process.stdout == ""
    lines = process.stderr.strip().splitlines()
    # Nothing from TensorFlow's loading; one line naming the tool, the file and the problem.
    assert len(lines) == 1, process.stderr
    assert lines[0].startswith("tools.export: error: ")
    assert "nowhere/config.json not found" in lines[0] and "--debug" in lines[0]
    debug = run_tool("tools.export", f"--workdir={tmp_path / 'nowhere'}", "--debug")
    assert debug.returncode == 1
    assert "Traceback (most recent call last)" in debug.stderr
    assert "FileNotFoundError" in debug.stderr


def test_the_users_tf_cpp_min_log_level_shows_tensorflows_lines(tmp_path):
    """Also tools.export's refusal of a work dir without a checkpoint: one line, before a
    model is built, nothing written. (A checkpoint of another class count is refused by
    evaluation.restore_model, which tools.export shares with tools.evaluate: tested in
    test_eval_inference and, on the command line, in test_eval_tools.)"""
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text(config_lib.to_json(config_lib.ExperimentConfig()))
    process = run_tool("tools.export", f"--workdir={empty}", env={"TF_CPP_MIN_LOG_LEVEL": "0"})
    assert process.returncode == 1
    # TensorFlow logs INFO lines while it loads (CPU features, CUDA probing, devices).
    assert re.search(r"^I\d{4} ", process.stderr, re.MULTILINE), process.stderr
    last = process.stderr.strip().splitlines()[-1]
    assert last.startswith("tools.export: error: no checkpoint"), process.stderr[-2000:]
    assert "Traceback" not in process.stderr
    assert not os.path.exists(empty / "export")


@pytest.mark.parametrize("error, line", [
    (FileNotFoundError("a.json not found"), "tools.x: error: a.json not found"),
    (ValueError(""), "tools.x: error: ValueError")])
def test_error_line(error, line):
    assert console.error_line("tools.x", error) == line
