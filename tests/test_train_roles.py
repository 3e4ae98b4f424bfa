"""What each TF_CONFIG task does (issue 11): roles, the side-car evaluator, refusals made
before a cluster is joined, and the parameter-server data streams."""
import glob
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from deeplab_tf import cluster
from deeplab_tf import config as config_lib
from deeplab_tf.train import loop
from deeplab_tf.train import parameter_server
from deeplab_tf.train import strategy as strategy_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLUSTER = {"chief": ["127.0.0.1:1"], "worker": ["127.0.0.1:2", "127.0.0.1:3"],
           "ps": ["127.0.0.1:4"], "evaluator": ["127.0.0.1:5"]}


def set_task(monkeypatch, task_type, cluster=None):
    monkeypatch.setenv("TF_CONFIG", json.dumps(
        {"cluster": cluster or CLUSTER, "task": {"type": task_type, "index": 0}}))


@pytest.mark.parametrize("strategy,task_type,role", [
    ("parameter_server", "chief", "train"), ("parameter_server", "worker", "serve"),
    ("parameter_server", "ps", "serve"), ("parameter_server", "evaluator", "evaluate"),
    ("multi_worker", "chief", "train"), ("multi_worker", "worker", "train"),
    ("multi_worker", "evaluator", "evaluate")])
def test_roles(monkeypatch, strategy, task_type, role):
    set_task(monkeypatch, task_type)
    assert cluster.task_role(strategy) == role


def test_unknown_roles_and_mismatched_clusters_are_refused(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert cluster.task_role("default") == "train"
    set_task(monkeypatch, "master")
    with pytest.raises(ValueError, match="'master' is not a role of --strategy="
                                         "parameter_server; its roles are chief, worker"):
        cluster.task_role("parameter_server")
    set_task(monkeypatch, "ps")
    with pytest.raises(ValueError, match="'ps' is not a role of --strategy=multi_worker"):
        cluster.task_role("multi_worker")
    set_task(monkeypatch, "worker")
    with pytest.raises(ValueError, match="cluster of 3 training tasks, but "
                                         "--strategy=mirrored trains on this machine only"):
        cluster.task_role("mirrored")
    set_task(monkeypatch, "worker", {"worker": ["127.0.0.1:2"]})
    assert cluster.task_role("mirrored") == "train"


def test_the_evaluator_is_no_task_of_the_training_cluster(monkeypatch):
    set_task(monkeypatch, "chief")
    resolver = strategy_lib._training_resolver()
    assert sorted(resolver.cluster_spec().jobs) == ["chief", "ps", "worker"]
    assert (resolver.task_type, resolver.task_id) == ("chief", 0)


def test_unsupported_settings_are_refused():
    train = config_lib.TrainConfig(batch_size=4)
    cluster.check_supported(train, "parameter_server")
    with pytest.raises(ValueError, match="devices per worker.*CUDA_VISIBLE_DEVICES"):
        cluster.check_supported(train, "parameter_server", replicas_per_step=2)
    with pytest.raises(ValueError, match="does not split over 3 replicas"):
        cluster.check_supported(train, "mirrored", replicas_per_step=3)
    train.xla = True
    cluster.check_supported(train, "default")
    with pytest.raises(ValueError, match="cannot run under --strategy=parameter_server"):
        cluster.check_supported(train, "parameter_server")
    with pytest.raises(ValueError, match="needs one replica per update or frozen batch"):
        cluster.check_supported(train, "multi_worker", replicas_per_step=2)
    train.freeze_batch_norm = True
    cluster.check_supported(train, "multi_worker", replicas_per_step=2)


def run_train(*argv, task_type, timeout=120):
    env = dict(os.environ, PYTHONPATH=REPO,
               TF_CONFIG=json.dumps({"cluster": CLUSTER, "task": {"type": task_type,
                                                                  "index": 0}}))
    return subprocess.run([sys.executable, "-m", "tools.train", *argv], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_xla_under_parameter_servers_is_refused_before_joining_the_cluster(tmp_path):
    # Nothing listens on the cluster's ports: an answer at all means it never tried.
    result = run_train("--experiment=smoke", f"--workdir={tmp_path}",
                       "--strategy=parameter_server", "--set=train.xla=True",
                       task_type="chief")
    assert result.returncode != 0
    assert "train.xla=True cannot run under --strategy=parameter_server" in result.stderr
    assert not (tmp_path / "config.json").exists()


def test_each_data_stream_is_new_and_its_own(data_dir):
    """Every dataset a parameter-server worker builds (at the start or after recovering
    from a failure) takes the next stream id and data seeded by it; the function is
    traced once, as ClusterCoordinator.create_per_worker_dataset does, and run 3 times."""
    config = config_lib.load_experiment("smoke", [f"data.data_dir={data_dir}"])

    def first_batches(count):
        streams = parameter_server.DataStreams(tf.distribute.get_strategy(),
                                               loop.default_dataset_fn(config), seed=0)
        dataset_fn = tf.function(streams.dataset_fn).get_concrete_function()
        batches = [next(iter(dataset_fn())) for _ in range(count)]
        return streams, batches

    streams, batches = first_batches(3)
    assert [int(batch[2]) for batch in batches] == [0, 1, 2]
    assert int(streams.counter.numpy()) == 3
    images = [batch[0].numpy() for batch in batches]
    assert not np.array_equal(images[0], images[1])
    assert not np.array_equal(images[1], images[2])
    # A stream id always gives the same data (a new counter starts again at 0).
    _, again = first_batches(1)
    np.testing.assert_array_equal(again[0][0].numpy(), images[0])


def eval_events(workdir):
    found = {}
    for path in glob.glob(os.path.join(workdir, "eval", "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag == "eval/miou":
                    found.setdefault(event.step, []).append(
                        float(tf.make_ndarray(value.tensor)))
    return found


@pytest.mark.slow
@pytest.mark.cluster
def test_the_evaluator_task_evaluates_each_new_checkpoint_once(data_dir, tmp_path):
    workdir = tmp_path / "run"
    config = config_lib.load_experiment("smoke", [f"data.data_dir={data_dir}"])
    model = config_lib.build_model(config.model)
    step = tf.Variable(0, dtype=tf.int64)
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=model, step=step),
                                         str(workdir / "checkpoints"), max_to_keep=5,
                                         checkpoint_name="ckpt")
    env = dict(os.environ, PYTHONPATH=REPO,
               TF_CONFIG=json.dumps({"cluster": CLUSTER,
                                     "task": {"type": "evaluator", "index": 0}}))
    log = open(tmp_path / "evaluator.log", "wb")
    evaluator = subprocess.Popen(
        [sys.executable, "-m", "tools.train", "--experiment=smoke", f"--workdir={workdir}",
         "--strategy=parameter_server", f"--set=data.data_dir={data_dir}",
         "--set=train.steps=4"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        for number in (2, 4):  # checkpoints appear while it runs, as a trainer's would
            step.assign(number)
            manager.save(checkpoint_number=number)
            results = workdir / "eval" / f"results_{number}.json"
            deadline = time.time() + 600
            while not results.exists() and evaluator.poll() is None and \
                    time.time() < deadline:
                time.sleep(0.5)
            assert results.exists(), (tmp_path / "evaluator.log").read_text()[-3000:]
        assert evaluator.wait(timeout=600) == 0  # done after the final step's checkpoint
    finally:
        if evaluator.poll() is None:
            evaluator.kill()
            evaluator.wait()
    found = eval_events(str(workdir))
    assert sorted(found) == [2, 4] and all(len(v) == 1 for v in found.values()), found
    for number in (2, 4):
        result = json.loads((workdir / "eval" / f"results_{number}.json").read_text())
        assert result["step"] == number and result["num_images"] == 4
        assert found[number][0] == pytest.approx(result["miou"])


def test_the_lost_task_is_read_from_tensorflow_s_collective_errors():
    """The two messages TF 2.21 gave here when a multi_worker peer was killed: a task that
    stopped sending heartbeats, and a call to the dead coordination leader."""
    heartbeats = ("Collective ops is aborted by: Error reported from /job:worker/task:1: The "
                  "following tasks are unhealthy (stopped sending heartbeats):\n"
                  "/job:worker/replica:0/task:1\nThe tasks have crashed.")
    assert cluster.lost_task(heartbeats, ("worker", 0)) == "/job:worker/task:1"
    leader = ("Collective ops is aborted by: recvmsg:Connection reset by peer\nAdditional "
              "GRPC error information from remote target /job:worker/replica:0/task:0 while "
              "calling /tensorflow.WorkerService/CompleteInstance:")
    assert cluster.lost_task(leader, ("worker", 1)) == "/job:worker/task:0"
    assert cluster.lost_task("Socket closed", ("worker", 1)) is None
