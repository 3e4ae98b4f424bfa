"""Asynchronous training on a real localhost cluster (paper Appendix B; issues 4, 11, 22):
`tf.distribute.Server` subprocesses on 127.0.0.1 for 1 parameter server and 2 workers,
shared by the tests of this module, and a coordinator (TF_CONFIG task "chief") started per
test; every process is killed and waited for at teardown."""
import json
import os
import re
import time

import numpy as np
import pytest
import tensorflow as tf

from deeplab_tf import config as config_lib

import chaos_ps
import small_models

pytestmark = [pytest.mark.slow, pytest.mark.cluster]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = chaos_ps.SCRIPT


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, data_dir):
    made = chaos_ps.Cluster(tmp_path_factory.mktemp("ps_cluster"), data_dir)
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


def test_workers_killed_and_restarted_at_random_moments_do_not_stop_training(cluster):
    """The quick variant of tests/chaos_ps.py (which runs 10 kills, several times): two
    kills at random moments (seed 0), each worker back on its address; every step applied
    (at most one extra update per kill), each checkpoint at its step, finite losses, each
    restarted worker's new stream ran steps. 60 steps requested: the coordinator trains on
    (20 steps at a time, at most chaos_ps.EXTRA_STEPS) until both kills happened and the
    last restart ran steps, which takes ~100 steps here (a restart rejoins 20-40 steps
    after its kill on this machine)."""
    run = chaos_ps.chaos(cluster, cluster.root / "chaos", steps=60, kills=2, seed=0)
    found = chaos_ps.check(run)
    assert found["streams"] >= 4


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
    # The restored counter hands out the new streams' ids: from the saved count on, so
    # no stream whose batches ckpt-N holds runs again (parameter_server.py).
    counter = stored(latest, "data_streams")
    streams = chaos_ps.streams_seen(text)
    assert counter >= 2 and streams and streams <= {counter, counter + 1}, (counter, streams)
    # It trained: two more steps were run, logged and saved, and the weights moved.
    assert f"step {saved + 1}/{saved + 2}" in text and f"step {saved + 2}/{saved + 2}" in text
    final = tf.train.latest_checkpoint(str(checkpoints))
    assert final.endswith(f"ckpt-{saved + 2}") and stored(final) == saved + 2
    after = trainable_weights(final)
    model = small_models.mini_deeplab(config_lib.load_experiment("smoke").model)
    assert sorted(after) == sorted(before) and len(before) == len(model.trainable_weights)
    assert any(np.any(after[name] != before[name]) for name in before)
