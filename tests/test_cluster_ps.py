"""Asynchronous training on a real localhost cluster (paper Appendix B; issue 4):
tf.distribute.Server subprocesses on 127.0.0.1 for 1 parameter server and 2 workers, the
coordinator (TF_CONFIG task "chief") running `python -m tools.train
--strategy=parameter_server`, every process killed and waited for at teardown."""
import os
import re
import signal
import time

import pytest
import tensorflow as tf

from deeplab_tf.train import strategy as strategy_lib

pytestmark = [pytest.mark.slow, pytest.mark.cluster]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Cluster:
    """1 ps + 2 workers serving, plus the chief when `train` is called."""

    def __init__(self, tmp_path, data_dir, steps):
        self.tmp_path, self.spec = tmp_path, strategy_lib.local_cluster(workers=2, ps=1,
                                                                        chief=True)
        self.argv = ["--experiment=smoke", f"--workdir={tmp_path / 'run'}",
                     "--strategy=parameter_server", f"--set=data.data_dir={data_dir}",
                     f"--set=train.steps={steps}", "--set=train.checkpoint_every=2",
                     "--set=train.log_every=1"]
        self.processes, self.logs = {}, 0
        for task in (("ps", 0), ("worker", 0), ("worker", 1)):
            self.start(*task)

    def start(self, task_type, index):
        self.logs += 1
        log = self.tmp_path / f"{task_type}{index}_{self.logs}.log"
        self.processes[(task_type, index)] = strategy_lib.start_task(
            self.spec, task_type, index, self.argv, log, env={"PYTHONPATH": REPO})
        return log

    def kill(self, task_type, index):
        process = self.processes.pop((task_type, index))
        process.send_signal(signal.SIGKILL)
        process.wait()

    def close(self):
        for key in list(self.processes):
            self.kill(*key)


@pytest.fixture
def cluster_factory(tmp_path, data_dir):
    made = []

    def make(steps):
        made.append(Cluster(tmp_path, data_dir, steps))
        return made[-1]
    yield make
    for cluster in made:
        cluster.close()


def wait_for(predicate, process, timeout=500):
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


def final_step(workdir):
    reader = tf.train.load_checkpoint(str(workdir / "checkpoints"))
    return int(reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE"))


def test_two_workers_one_ps_train_to_the_requested_step(cluster_factory, tmp_path):
    cluster = cluster_factory(steps=6)
    log = cluster.start("chief", 0)
    assert cluster.processes[("chief", 0)].wait(timeout=600) == 0, log.read_text()[-3000:]
    assert final_step(tmp_path / "run") == 6
    assert "step 6/6" in log.read_text()


def test_a_killed_worker_does_not_stop_training(cluster_factory, tmp_path):
    cluster = cluster_factory(steps=12)
    log = cluster.start("chief", 0)
    chief = cluster.processes[("chief", 0)]
    assert wait_for(lambda: "step 2/12" in log.read_text(), chief), log.read_text()[-3000:]
    cluster.kill("worker", 1)
    assert chief.wait(timeout=600) == 0, log.read_text()[-3000:]
    # The coordinator re-runs a step whose worker died ("at least once"), so one update
    # may be applied twice; never fewer than requested.
    assert 12 <= final_step(tmp_path / "run") <= 13


def test_a_killed_parameter_server_fails_clearly_and_restart_resumes(cluster_factory,
                                                                     tmp_path):
    cluster = cluster_factory(steps=40)
    log = cluster.start("chief", 0)
    chief = cluster.processes[("chief", 0)]
    checkpoints = tmp_path / "run" / "checkpoints"
    assert wait_for(lambda: tf.train.latest_checkpoint(str(checkpoints)) is not None, chief)
    cluster.kill("ps", 0)
    assert chief.wait(timeout=600) == 4, log.read_text()[-3000:]
    assert "parameter server is unreachable" in log.read_text()
    saved = int(tf.train.latest_checkpoint(str(checkpoints)).rsplit("-", 1)[1])
    assert saved < 40

    # Restart the job: a new parameter server on the same address, the workers and chief.
    cluster.close()
    for task in (("ps", 0), ("worker", 0), ("worker", 1)):
        cluster.start(*task)
    cluster.argv[cluster.argv.index("--set=train.steps=40")] = f"--set=train.steps={saved + 2}"
    log = cluster.start("chief", 0)
    assert cluster.processes[("chief", 0)].wait(timeout=600) == 0, log.read_text()[-3000:]
    resumed = re.search(r"resumed from \S+ckpt-(\d+) at step (\d+)", log.read_text())
    assert resumed and int(resumed.group(1)) == saved and int(resumed.group(2)) >= saved
    assert final_step(tmp_path / "run") == saved + 2
