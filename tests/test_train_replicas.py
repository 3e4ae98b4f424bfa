"""Synchronous replicas end with identical weights on every replica (issue 4):
MirroredStrategy on two logical CPU devices and MultiWorkerMirroredStrategy with two
worker processes on 127.0.0.1, both through the one training loop."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from deeplab_tf.train import strategy as strategy_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


MIRRORED = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from deeplab_tf import config as config_lib
    from deeplab_tf.train import loop
    config = config_lib.load_experiment("smoke", [f"data.data_dir={sys.argv[1]}",
                                                  "train.steps=3"])
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    trainer = loop.Trainer(config, sys.argv[2], strategy)
    trainer.run()
    variables = list(trainer.model.weights) + list(trainer.optimizer.variables)
    replicas = [len(v.value.values) for v in variables]
    worst = max(float(np.max(np.abs(v.value.values[0].numpy() - v.value.values[1].numpy())))
                for v in variables)
    moved = [float(np.max(np.abs(w.numpy()))) for w in trainer.model.weights
             if w.path.endswith("moving_mean")]
    print("RESULT", json.dumps(dict(replicas=sorted(set(replicas)), worst=worst,
                                    step=int(trainer.step.numpy()), moved=max(moved))))
""")


@pytest.mark.slow
def test_mirrored_two_logical_devices_keep_identical_replicas(data_dir, tmp_path):
    result = subprocess.run([sys.executable, "-c", MIRRORED, data_dir, str(tmp_path)],
                            cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    line = [l for l in result.stdout.splitlines() if l.startswith("RESULT ")][-1]
    found = json.loads(line[len("RESULT "):])
    assert found["replicas"] == [2]
    assert found["step"] == 3
    assert found["moved"] > 0  # the batch-norm statistics were updated...
    assert found["worst"] == 0.0  # ...and every variable is the same on both devices


@pytest.mark.slow
@pytest.mark.cluster
def test_multi_worker_mirrored_two_processes_end_identical(data_dir, tmp_path):
    cluster = strategy_lib.local_cluster(workers=2)
    argv = ["--experiment=smoke", f"--workdir={tmp_path / 'run'}", "--strategy=multi_worker",
            f"--set=data.data_dir={data_dir}", "--set=train.steps=3"]
    workers = [strategy_lib.start_task(cluster, "worker", i, argv, tmp_path / f"w{i}.log")
               for i in range(2)]
    try:
        codes = [w.wait(timeout=600) for w in workers]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()
    logs = [(tmp_path / f"w{i}.log").read_text()[-3000:] for i in range(2)]
    assert codes == [0, 0], logs
    chief = tf.train.latest_checkpoint(str(tmp_path / "run" / "checkpoints"))
    other = tf.train.latest_checkpoint(str(tmp_path / "run" / "replicas" / "worker_1"))
    assert chief.endswith("ckpt-3") and other.endswith("ckpt-3")
    names = [n for n, _ in tf.train.list_variables(chief)
             if not n.startswith(("iterator", "_CHECKPOINTABLE", "save_counter"))]
    assert len(names) > 400
    a, b = tf.train.load_checkpoint(chief), tf.train.load_checkpoint(other)
    assert a.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == 3
    for name in names:
        np.testing.assert_array_equal(a.get_tensor(name), b.get_tensor(name), err_msg=name)
