"""Mixed precision and XLA under the default and mirrored strategies (issue 11; the
parameter-server combinations are in test_cluster_ps.py).

Each combination of mixed_float16 / mixed_bfloat16 and XLA on / off either trains (finite
loss, every weight finite, weights moved) or is refused before training with a message
saying why. With mixed_float16 on two replicas, an inf in replica 1's gradients alone
must skip the update on both replicas and halve the loss scale: Keras 3's
LossScaleOptimizer alone judged replica 0's gradients and wrote -inf into the weights.
"""
import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "tests", "train_scripts.py")


@pytest.fixture(scope="module")
def results(data_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("precision")
    process = subprocess.run([sys.executable, SCRIPT, "precision", data_dir, str(root)],
                             capture_output=True, text=True, timeout=900,
                             env=dict(os.environ, PYTHONPATH=REPO))
    assert process.returncode == 0, process.stderr[-3000:]
    line = [l for l in process.stdout.splitlines() if l.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


@pytest.mark.parametrize("strategy", ["default", "mirrored"])
@pytest.mark.parametrize("precision", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("xla", [False, True])
def test_each_combination_trains_or_is_refused(results, strategy, precision, xla):
    found = results[f"{strategy}/{precision}/xla={xla}"]
    if strategy == "mirrored" and xla:  # synchronized batch norm all-reduces in the step
        assert "train.xla needs one replica per update or frozen batch norm" in \
            found["refused"]
        return
    assert "refused" not in found, found
    assert found["finite"] and found["step"] == 2 and found["moved"] > 1e-4, found
    assert 0.0 < found["loss"] < 100.0


def test_an_inf_on_one_replica_skips_the_update_on_every_replica(results):
    found = results["inf_on_replica_1"]
    assert found["finite"]  # no weight was ever non-finite
    assert found["change"][0] == 0.0  # the poisoned step changed no trainable weight
    assert found["change"][1] > 0.0  # the next, clean step did
    first, after_inf, after_clean = found["scale"]
    assert after_inf == first / 2 and after_clean == after_inf
    assert found["replicas_differ"] == 0.0


def test_mirrored_resume_restores_weights_momentum_and_step(results):
    """(issue 22) In the same process: 2 mirrored steps saved, a new Trainer restores."""
    found = results["mirrored_resume"]
    assert found["restored_step"] == 2 and found["final_step"] == 3
    assert found["differ"] == 0.0 and found["variables"] > 10
    # The momentum slots were restored with values (not zeros that compare equal).
    assert found["momentum_nonzero"] == found["momentum_slots"] >= 5
    assert found["replicas_differ"] == 0.0
