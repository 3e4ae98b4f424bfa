"""A real training process killed with SIGKILL and restarted (issue 4).

It resumes at the last checkpoint's step, and its losses from there on equal those of an
uninterrupted run with the same seed: the checkpoint holds the weights, the momentum, the
step and the tf.data iterator (shuffle buffer and element counter; the augmentation draws
are stateless functions of (seed, element index)), and the CPU kernels are deterministic.
"""
import glob
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 8


def command(workdir, data_dir):
    return [sys.executable, "-m", "tools.train", "--experiment=smoke", f"--workdir={workdir}",
            f"--set=data.data_dir={data_dir}", f"--set=train.steps={STEPS}",
            "--set=train.checkpoint_every=2"]


def losses(workdir):
    """{step: loss}; a later event file (the restarted process) overrides an earlier one."""
    found = {}
    for path in sorted(glob.glob(os.path.join(workdir, "train", "events.out.tfevents.*")),
                       key=os.path.getmtime):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag == "loss":
                    found[event.step] = float(tf.make_ndarray(value.tensor))
    return found


@pytest.mark.slow
def test_sigkill_and_restart_resumes_with_identical_losses(data_dir, tmp_path):
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    subprocess.run(command(reference, data_dir), cwd=REPO, check=True, timeout=600,
                   capture_output=True)
    log = open(tmp_path / "killed.log", "wb")
    process = subprocess.Popen(command(killed, data_dir), cwd=REPO, stdout=log,
                               stderr=subprocess.STDOUT)
    state = killed / "checkpoints" / "checkpoint"
    deadline = time.time() + 600
    while time.time() < deadline and process.poll() is None:
        latest = tf.train.latest_checkpoint(str(killed / "checkpoints"))
        if state.exists() and latest and int(latest.rsplit("-", 1)[1]) >= 4:
            break
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    resumed_at = int(tf.train.latest_checkpoint(str(killed / "checkpoints")).rsplit("-", 1)[1])
    assert 4 <= resumed_at < STEPS

    result = subprocess.run(command(killed, data_dir), cwd=REPO, timeout=600,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"at step {resumed_at}" in result.stderr
    expected, got = losses(reference), losses(killed)
    assert sorted(expected) == list(range(1, STEPS + 1))
    after = list(range(resumed_at + 1, STEPS + 1))
    np.testing.assert_allclose([got[s] for s in after], [expected[s] for s in after],
                               rtol=1e-6, atol=0)
