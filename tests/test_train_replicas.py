"""N synchronous replicas train like one device (paper 4.1: batch 16 with batch norm over
the global batch; issue 11).

One device, MirroredStrategy on two logical CPUs and MultiWorkerMirroredStrategy with two
worker processes on 127.0.0.1 train a mini DeepLab (tests/small_models.py `mini_deeplab`:
the library's conv + batch norm, atrous and ASPP layers with image pooling, on a two-layer
backbone instead of the R-50, whose five traces took most of four minutes), its ASPP
dropout on (masks per example of the global batch, issue 22), for 3 steps on the same
global batches with the same seed, through the trainer and its smoke config
(loss, weight decay, gradient multipliers, TF1 momentum); the losses, weights, batch-norm
statistics, momentum and step agree. The runs are in float64: in float32 a randomly
initialised network amplifies rounding so much that the strategies differ visibly after
one update (WORKSPACE_NOTES.md, "the one-device vs mirrored gap"); in float64 the same
comparison holds to 1e-9. The same comparison on the smoke R-50 itself:
`python -m tools.bench.replica_numerics` (WORKSPACE_NOTES.md).
"""
import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from deeplab_tf.train import strategy as strategy_lib

pytestmark = pytest.mark.slow
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "tests", "train_scripts.py")
ENV = {"PYTHONPATH": REPO}


def result_line(text):
    line = [l for l in text.splitlines() if l.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def losses(workdir):
    found = {}
    for path in glob.glob(os.path.join(workdir, "train", "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag == "loss":
                    found[event.step] = float(tf.make_ndarray(value.tensor))
    return [found[step] for step in sorted(found)]


def stored(workdir):
    """{name: value} of a run's last checkpoint, without the data iterator's state."""
    reader = tf.train.load_checkpoint(os.path.join(workdir, "checkpoints"))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if not name.startswith(("iterator", "_CHECKPOINTABLE", "save_counter"))}


@pytest.fixture(scope="module")
def runs(data_dir, tmp_path_factory):
    """The three runs, the two multi-worker processes beside the two-device process."""
    root = tmp_path_factory.mktemp("replicas")
    cluster = strategy_lib.local_cluster(workers=2)
    workers = [strategy_lib.start_task(cluster, "worker", i,
                                       ["multi_worker", data_dir, str(root)],
                                       root / f"worker{i}.log", env=ENV, command=[SCRIPT])
               for i in range(2)]
    try:
        local = subprocess.run([sys.executable, SCRIPT, "sync_equal", data_dir, str(root)],
                               capture_output=True, text=True, timeout=900,
                               env=dict(os.environ, **ENV))
        codes = [w.wait(timeout=900) for w in workers]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()
    assert local.returncode == 0, local.stderr[-3000:]
    logs = [(root / f"worker{i}.log").read_text()[-3000:] for i in range(2)]
    assert codes == [0, 0], logs
    return root, result_line(local.stdout)


def test_mirrored_replicas_hold_identical_copies(runs):
    _, result = runs
    assert result["replicas_differ"] == 0.0


def test_one_device_mirrored_and_multi_worker_agree_after_three_steps(runs):
    root, _ = runs
    one, mirrored, multi = (stored(str(root / name)) for name in ("one", "mirrored", "multi"))
    assert sorted(one) == sorted(mirrored) == sorted(multi)
    assert one["step/.ATTRIBUTES/VARIABLE_VALUE"] == 3
    moving = [n for n in one if "moving_mean" in n or "moving_variance" in n]
    # stem, atrous; ASPP 1x1, two atrous branches, image pooling, projection: 7 BN layers.
    assert len(moving) == 2 * 7
    assert all(np.any(one[n] != 1.0) for n in moving if "moving_variance" in n)  # updated
    # The ASPP dropout trained: its seed state advanced once per step, in every run.
    seeds = [n for n in one if "seed_generator_state" in n]
    assert len(seeds) == 1 and one[seeds[0]][1] == 3
    # One momentum slot per convolution kernel (the 7 above and the logits), stored beside
    # the optimizer's references to the 8 kernels themselves.
    assert sum(n.startswith("optimizer/_variables/") and one[n].ndim == 4 for n in one) == 8
    for name, value in one.items():
        for other in (mirrored, multi):
            # Per variable, relative to its norm (a few momentum entries are ~1e-13).
            difference = np.linalg.norm(np.subtract(other[name], value, dtype=np.float64))
            assert difference <= 1e-7 * np.linalg.norm(value), name
    reference = losses(str(root / "one"))
    assert len(reference) == 3 and reference[2] != reference[0]
    for name in ("mirrored", "multi"):
        np.testing.assert_allclose(losses(str(root / name)), reference, rtol=1e-9)


# Issue 22: what the same two multi_worker processes then checked (train_scripts.py
# `multi_worker_claims`): 2 mixed_float16 steps of the tiny model, checkpointed each step.

@pytest.fixture(scope="module")
def workers(runs):
    root, _ = runs
    return [result_line((root / f"worker{i}.log").read_text()) for i in range(2)]


def test_multi_worker_workers_read_different_data(workers):
    # The experiment's input is sharded by input pipeline (deeplab_tf/data/pipeline.py).
    assert workers[0]["first_batch"] != workers[1]["first_batch"]


def test_mixed_float16_trains_under_multi_worker(workers):
    for found in workers:
        mixed = found["mixed"]
        assert mixed["step"] == 2 and mixed["finite"] and mixed["moved"] > 1e-4, mixed
        assert np.isfinite(mixed["loss"]) and mixed["loss_scale"] > 0
    # Synchronous: both workers hold the same weights.
    assert workers[0]["mixed"]["weights"] == workers[1]["mixed"]["weights"]


def test_non_chief_workers_save_into_scratch_and_remove_it(workers, runs):
    root, _ = runs
    chief, other = workers
    assert chief["is_chief"] and chief["removed"] == [] and not other["is_chief"]
    # Worker 1 saved at each of the 2 steps (TensorFlow needs every worker in a save),
    # into WORKDIR/replicas/worker_1, and removed it each time.
    assert other["scratch"] == str(root / "multi_mixed" / "replicas" / "worker_1")
    assert len(other["removed"]) == 2 and not other["scratch_left"]
    for files in other["removed"]:
        assert "checkpoint" in files and any(f.endswith(".index") for f in files), files
    assert os.listdir(root / "multi_mixed" / "replicas") == []
    chief_checkpoints = tf.train.get_checkpoint_state(str(root / "multi_mixed" / "checkpoints"))
    assert [p.rsplit("-", 1)[1] for p in chief_checkpoints.all_model_checkpoint_paths] == \
        ["1", "2"]
