"""Real training processes killed with SIGKILL and restarted (issues 4, 11).

One device: the run resumes at the last checkpoint's step, and its losses from there on
equal those of an uninterrupted run with the same seed: the checkpoint holds the weights,
the momentum, the step and the tf.data iterator (shuffle buffer and element counter; the
augmentation draws are stateless functions of (seed, element index)), and the CPU
kernels are deterministic.

MultiWorkerMirrored (two worker processes on 127.0.0.1): every worker resumes from the
chief's checkpoint at the same step, a worker with nothing on its local disk too, and
workers that restore different steps (work dirs that are not shared) stop with an error.
"""
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from deeplab_tf.train import strategy as strategy_lib

import small_models

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The mini DeepLab (batch norm, atrous conv, ASPP with image pooling and dropout): what is
# resumed is the trainer's state, the same for any model, and its traced step is a
# fraction of the ResNet-50's, so the three processes take seconds, not minutes.
STEPS = 40


def command(workdir, data_dir):
    return [sys.executable, "-m", "tools.train", "--experiment=smoke", f"--workdir={workdir}",
            f"--set=data.data_dir={data_dir}", f"--set=model.builder={small_models.MINI_DEEPLAB}",
            f"--set=train.steps={STEPS}", "--set=train.checkpoint_every=2",
            "--set=train.image_summary_every=20"]


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
    # The log (the tool's own "HH:MM:SS message" lines, whatever TensorFlow's C++ code
    # printed before them) opens with the strategy as the user named it: the default here.
    own = [line for line in result.stderr.splitlines()
           if re.match(r"\d\d:\d\d:\d\d ", line)]
    assert re.fullmatch(rf"\d\d:\d\d:\d\d training smoke in {re.escape(str(killed))} "
                        r"with --strategy=default \(1 replica\)", own[0]), own[:3]
    assert f"at step {resumed_at}" in result.stderr
    expected, got = losses(reference), losses(killed)
    assert sorted(expected) == list(range(1, STEPS + 1))
    after = list(range(resumed_at + 1, STEPS + 1))
    np.testing.assert_allclose([got[s] for s in after], [expected[s] for s in after],
                               rtol=1e-6, atol=0)


SCRIPT = os.path.join(REPO, "tests", "train_scripts.py")


def run_workers(cluster, argvs, logs, cwds=(None, None), command=None, timeout=900):
    """Starts the two workers; returns their exit codes (each killed at the end if alive)."""
    workers = [strategy_lib.start_task(cluster, "worker", i, argvs[i], logs[i],
                                       env={"PYTHONPATH": REPO}, command=command,
                                       cwd=cwds[i])
               for i in range(2)]
    try:
        return [w.wait(timeout=timeout) for w in workers]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()


@pytest.mark.slow
@pytest.mark.cluster
def test_multi_worker_restart_resumes_every_worker_from_the_chief_checkpoint(data_dir,
                                                                            tmp_path):
    """Two workers train the tiny model of tests/train_scripts.py (its step is cheap; the
    restore path is the same for any model); one dies, the job is restarted."""
    workdir, steps = tmp_path / "shared", 40
    cluster = strategy_lib.local_cluster(workers=2)
    # An evaluator in TF_CONFIG (none runs) is no task of the training cluster.
    cluster["evaluator"] = [f"127.0.0.1:{strategy_lib.free_ports(1)[0]}"]
    argv = ["multi_worker_resume", data_dir, str(workdir), str(steps)]
    workers = [strategy_lib.start_task(cluster, "worker", i, argv, tmp_path / f"first{i}.log",
                                       env={"PYTHONPATH": REPO}, command=[SCRIPT])
               for i in range(2)]
    try:
        deadline = time.time() + 600
        while time.time() < deadline and all(w.poll() is None for w in workers):
            if tf.train.latest_checkpoint(str(workdir / "checkpoints")):
                break
            time.sleep(0.05)
        # Worker 1 dies; the cluster manager then restarts the whole job.
        for w in reversed(workers):
            w.send_signal(signal.SIGKILL)
            w.wait()
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()
    latest = tf.train.latest_checkpoint(str(workdir / "checkpoints"))
    assert latest, (tmp_path / "first0.log").read_text()[-3000:]
    resumed_at = int(latest.rsplit("-", 1)[1])
    assert 2 <= resumed_at < steps

    # Worker 1 comes back on an empty local disk: a new working directory, no scratch.
    shutil.rmtree(workdir / "replicas", ignore_errors=True)
    empty = tmp_path / "empty_disk"
    empty.mkdir()
    logs = [tmp_path / f"second{i}.log" for i in range(2)]
    codes = run_workers(cluster, [argv, argv], logs, cwds=(None, str(empty)),
                        command=[SCRIPT])
    texts = [log.read_text() for log in logs]
    assert codes == [0, 0], [t[-3000:] for t in texts]
    for text in texts:
        assert f"resumed from {workdir}/checkpoints/ckpt-{resumed_at} at step {resumed_at}" \
            in text
    final = tf.train.latest_checkpoint(str(workdir / "checkpoints"))
    assert final.endswith(f"ckpt-{steps}")
    assert tf.train.load_variable(final, "step/.ATTRIBUTES/VARIABLE_VALUE") == steps
    assert os.listdir(empty) == []  # worker 1 kept nothing of its own


@pytest.mark.slow
@pytest.mark.cluster
def test_multi_worker_stops_when_workers_restore_different_steps(data_dir, tmp_path):
    """Work dirs that are not shared: tools.train's workers restore different steps, and
    both stop with exit code 5 and the reason, before any step."""
    from deeplab_tf import config as config_lib
    from deeplab_tf.train import loop
    chief_dir, other_dir = tmp_path / "chief", tmp_path / "other"
    mini = f"model.builder={small_models.MINI_DEEPLAB}"
    config = config_lib.load_experiment("smoke", [f"data.data_dir={data_dir}", mini])
    trainer = loop.Trainer(config, str(chief_dir))  # a step-2 checkpoint of the chief's
    trainer.step.assign(2)
    trainer.save(2)
    cluster = strategy_lib.local_cluster(workers=2)
    argvs = [["--experiment=smoke", f"--workdir={workdir}", "--strategy=multi_worker",
              f"--set=data.data_dir={data_dir}", f"--set={mini}", "--set=train.steps=4"]
             for workdir in (chief_dir, other_dir)]
    logs = [tmp_path / f"worker{i}.log" for i in range(2)]
    codes = run_workers(cluster, argvs, logs)
    texts = [log.read_text() for log in logs]
    assert codes == [5, 5], [t[-3000:] for t in texts]
    for text in texts:
        assert "with --strategy=multi_worker (2 replicas)" in text
        assert "the workers restored different steps [2, 0]" in text
        assert "the work dir must be one shared directory" in text
    assert "found no checkpoint in" in texts[1] and f"{other_dir}/checkpoints" in texts[1]


@pytest.mark.slow
@pytest.mark.cluster
def test_multi_worker_stops_when_a_worker_dies(data_dir, tmp_path, victim=0):
    """Two tools.train workers; worker 0 (the chief and TensorFlow's coordination leader)
    is killed after the first checkpoint. Worker 1 stops by itself (its collectives are
    aborted) with exit code 6 and one line naming the lost task, no traceback. (Killing
    worker 1 instead: worker 0 stopped the same way, naming task 1, in 20 s here; both
    messages are in test_train_roles.py.) The wait is a bound against a hang."""
    workdir = tmp_path / "shared"
    cluster = strategy_lib.local_cluster(workers=2)
    argv = ["--experiment=smoke", f"--workdir={workdir}", "--strategy=multi_worker",
            f"--set=data.data_dir={data_dir}", f"--set=model.builder={small_models.TINY}",
            "--set=train.steps=1000000", "--set=train.checkpoint_every=2",
            "--set=train.batch_size=4", "--set=train.log_every=100"]
    logs = [tmp_path / f"worker{i}.log" for i in range(2)]
    workers = [strategy_lib.start_task(cluster, "worker", i, argv, logs[i],
                                       env={"PYTHONPATH": REPO}, cwd=REPO) for i in range(2)]
    try:
        deadline = time.time() + 600
        while time.time() < deadline and all(w.poll() is None for w in workers):
            if tf.train.latest_checkpoint(str(workdir / "checkpoints")):
                break
            time.sleep(0.1)
        assert all(w.poll() is None for w in workers), logs[0].read_text()[-3000:]
        workers[victim].send_signal(signal.SIGKILL)
        workers[victim].wait()
        survivor = workers[1 - victim]
        code = survivor.wait(timeout=300)
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()
    text = logs[1 - victim].read_text()
    assert code == 6, text[-3000:]
    lines = [l for l in text.splitlines() if "ERROR: lost " in l]
    assert len(lines) == 1 and f"lost /job:worker/task:{victim}: a worker" in lines[0], lines
    assert "Traceback" not in text
