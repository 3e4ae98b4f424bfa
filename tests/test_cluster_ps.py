"""Asynchronous training on a real localhost cluster (paper Appendix B; issues 4, 11):
`tf.distribute.Server` subprocesses on 127.0.0.1 for 1 parameter server and 2 workers,
shared by the tests of this module, and a coordinator (TF_CONFIG task "chief") started per
test; every process is killed and waited for at teardown."""
import json
import os
import re
import signal
import time

import numpy as np
import pytest
import tensorflow as tf

from deeplab_tf import cluster as cluster_lib
from deeplab_tf import config as config_lib
from deeplab_tf.train import strategy as strategy_lib

import small_models

pytestmark = [pytest.mark.slow, pytest.mark.cluster]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "tests", "train_scripts.py")
SERVERS = (("ps", 0), ("worker", 0), ("worker", 1))


class Cluster:
    """1 ps + 2 workers serving; `start("chief", 0, ...)` adds a coordinator."""

    def __init__(self, root, data_dir):
        self.root, self.data_dir = root, data_dir
        self.spec = strategy_lib.local_cluster(workers=2, ps=1, chief=True)
        # An evaluator in TF_CONFIG (none runs) is no task of the training cluster.
        self.spec["evaluator"] = [f"127.0.0.1:{strategy_lib.free_ports(1)[0]}"]
        self.processes, self.logs = {}, 0
        for task in SERVERS:
            self.start(*task)

    def train_argv(self, workdir, *overrides):
        return ["--experiment=smoke", f"--workdir={workdir}", "--strategy=parameter_server",
                f"--set=data.data_dir={self.data_dir}", "--set=train.log_every=1",
                *[f"--set={o}" for o in overrides]]

    def start(self, task_type, index, argv=None, command=None):
        """Starts a task; servers run the same tools.train command as everyone."""
        argv = self.train_argv(self.root / "servers") if argv is None else argv
        self.logs += 1
        log = self.root / f"{task_type}{index}_{self.logs}.log"
        env = {"PYTHONPATH": REPO}
        if task_type in cluster_lib.SERVER_TASKS:
            env.update(strategy_lib.LOCAL_SERVER_THREADS)
        self.processes[(task_type, index)] = strategy_lib.start_task(
            self.spec, task_type, index, list(argv), log, env=env, command=command)
        return log

    def kill(self, task_type, index):
        process = self.processes.pop((task_type, index))
        process.send_signal(signal.SIGKILL)
        process.wait()

    def close(self):
        for key in list(self.processes):
            self.kill(*key)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, data_dir):
    made = Cluster(tmp_path_factory.mktemp("ps_cluster"), data_dir)
    yield made
    made.close()


def wait_for(predicate, process, timeout=600):
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


def stored(prefix, name="step"):
    return int(tf.train.load_variable(prefix, f"{name}/.ATTRIBUTES/VARIABLE_VALUE"))


def trainable_weights(prefix):
    """The model's trainable weights in a checkpoint (stored under the optimizer, which
    tracks them too)."""
    reader = tf.train.load_checkpoint(prefix)
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if name.startswith("optimizer/_trainable_variables/")}


def all_checkpoints(workdir):
    state = tf.train.get_checkpoint_state(str(workdir / "checkpoints"))
    return list(state.all_model_checkpoint_paths)


@pytest.fixture(scope="module")
def tiny_runs(cluster):
    """One coordinator: 100 steps of a tiny model, then mixed precision x XLA."""
    log = cluster.start("chief", 0, ["parameter_server", cluster.data_dir, str(cluster.root)],
                        command=[SCRIPT])
    assert cluster.processes.pop(("chief", 0)).wait(timeout=900) == 0, log.read_text()[-3000:]
    line = [l for l in log.read_text().splitlines() if l.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def test_under_contention_the_step_counter_ends_exactly_at_the_request(tiny_runs, cluster):
    contention = tiny_runs["contention"]
    assert contention["step"] == 100
    per_worker = contention["steps_per_stream"]
    # One data stream per worker (ids 0 and 1), and both workers ran steps.
    assert sorted(per_worker) == ["0", "1"] and min(per_worker.values()) > 0
    assert sum(per_worker.values()) == 100


def test_each_checkpoint_holds_the_step_it_was_taken_at(tiny_runs, cluster):
    paths = all_checkpoints(cluster.root / "contention")
    assert [p.rsplit("-", 1)[1] for p in paths] == ["25", "50", "75", "100"]
    for path in paths:
        assert stored(path) == int(path.rsplit("-", 1)[1]), path
        assert stored(path, "data_streams") == 2  # the two workers' datasets


def test_mixed_precision_trains_and_xla_is_refused_up_front(tiny_runs):
    for precision in ("mixed_float16", "mixed_bfloat16"):
        trained = tiny_runs[f"parameter_server/{precision}/xla=False"]
        assert trained["finite"] and np.isfinite(trained["loss"]), precision
        assert trained["moved"] > 0 and trained["step"] == 4, precision
        refused = tiny_runs[f"parameter_server/{precision}/xla=True"]
        assert "cannot run under --strategy=parameter_server" in refused["refused"]


def test_a_killed_worker_does_not_stop_training(cluster):
    """The tiny model, so that many steps run before and after the worker comes back."""
    workdir = cluster.root / "killed_worker"
    log = cluster.start("chief", 0, ["parameter_server_train", cluster.data_dir,
                                     str(workdir), "200"], command=[SCRIPT])
    chief = cluster.processes[("chief", 0)]
    assert wait_for(lambda: "step 20/200" in log.read_text(), chief), log.read_text()[-3000:]
    cluster.kill("worker", 1)
    cluster.start("worker", 1)  # back on its address, as a cluster manager would restart it
    assert cluster.processes.pop(("chief", 0)).wait(timeout=900) == 0, log.read_text()[-3000:]
    # The coordinator re-runs a step whose worker died ("at least once"), so one update
    # may be applied twice; never fewer than requested.
    paths = all_checkpoints(workdir)
    assert 200 <= stored(paths[-1]) <= 201
    for path in paths:
        assert stored(path) == int(path.rsplit("-", 1)[1]), path
    line = [l for l in log.read_text().splitlines() if l.startswith("RESULT ")][-1]
    per_stream = json.loads(line[len("RESULT "):])["steps_per_stream"]
    assert sum(per_stream.values()) == 200  # results of the scheduled steps, each once
    assert set(per_stream) <= {"0", "1", "2"}  # a recovered worker: a new stream, 2


def test_a_killed_parameter_server_fails_clearly_and_restart_trains_on(cluster):
    """tools.train with the mini DeepLab (the failure and the restart are the trainer's,
    the same for any model; the ResNet-50's traced step would take most of the time)."""
    workdir, steps = cluster.root / "killed_ps", 1000
    mini = f"model.builder={small_models.MINI_DEEPLAB}"
    log = cluster.start("chief", 0, cluster.train_argv(workdir, mini, f"train.steps={steps}",
                                                       "train.checkpoint_every=2"))
    chief = cluster.processes[("chief", 0)]
    checkpoints = workdir / "checkpoints"
    assert wait_for(lambda: tf.train.latest_checkpoint(str(checkpoints)) is not None, chief)
    cluster.kill("ps", 0)
    assert cluster.processes.pop(("chief", 0)).wait(timeout=600) == 4, log.read_text()[-3000:]
    assert "parameter server is unreachable" in log.read_text()
    latest = tf.train.latest_checkpoint(str(checkpoints))
    saved = int(latest.rsplit("-", 1)[1])
    assert saved < steps and stored(latest) == saved
    before = trainable_weights(latest)

    # What the error line says to do: restart the parameter server (on the same address)
    # and this command; the workers serve on, untouched.
    cluster.start("ps", 0)
    log = cluster.start("chief", 0, cluster.train_argv(workdir, mini, f"train.steps={saved + 2}",
                                                       "train.checkpoint_every=2"))
    assert cluster.processes.pop(("chief", 0)).wait(timeout=900) == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert re.search(rf"resumed from \S+ckpt-{saved} at step {saved}\b", text)
    # It trained: two more steps were run, logged and saved, and the weights moved.
    assert f"step {saved + 1}/{saved + 2}" in text and f"step {saved + 2}/{saved + 2}" in text
    final = tf.train.latest_checkpoint(str(checkpoints))
    assert final.endswith(f"ckpt-{saved + 2}") and stored(final) == saved + 2
    after = trainable_weights(final)
    model = small_models.mini_deeplab(config_lib.load_experiment("smoke").model)
    assert sorted(after) == sorted(before) and len(before) == len(model.trainable_weights)
    assert any(np.any(after[name] != before[name]) for name in before)
