"""Where a TensorFlow cluster task listens (issue 28, 5; docs/clusters.md, "Security").

TF 2.21's gRPC server binds the wildcard address whatever host TF_CONFIG names, so the
test clusters' 127.0.0.1 does not keep them off the network, and docs/clusters.md says
so. This test starts a `ps` task of a local cluster (deeplab_tf.train.strategy) as
tools.train does and reads the kernel's socket table (/proc/net/tcp, tcp6) for the
address its port is bound to: it fails, and the note must change, the day TensorFlow
binds the named address.
"""
import os
import time

import pytest

from deeplab_tf.train import strategy as strategy_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's state column


def listening_addresses(port):
    """The local addresses (hex, as the kernel writes them) listening on TCP `port`."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        with open(table) as f:
            for line in f.read().splitlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                address, _, hex_port = local.rpartition(":")
                if state == LISTEN and int(hex_port, 16) == port:
                    found.append(address)
    return found


@pytest.mark.cluster
def test_a_local_cluster_task_listens_on_every_interface_not_only_loopback(tmp_path):
    cluster = strategy_lib.local_cluster(workers=1, ps=1, chief=True)
    port = int(cluster["ps"][0].rsplit(":", 1)[1])
    assert cluster["ps"][0].startswith("127.0.0.1:")
    task = strategy_lib.start_task(
        cluster, "ps", 0, ["--experiment=smoke", f"--workdir={tmp_path}",
                           "--strategy=parameter_server"], tmp_path / "ps.log",
        env={"PYTHONPATH": REPO}, cwd=REPO)
    try:
        deadline = time.time() + 120  # a bound against a hang, not a timing claim
        addresses = []
        while time.time() < deadline and task.poll() is None and not addresses:
            addresses = listening_addresses(port)
            time.sleep(0.2)
    finally:
        task.kill()
        task.wait()
    assert addresses, (tmp_path / "ps.log").read_text()[-3000:]
    loopback = {"0100007F", "00000000000000000000000001000000"}  # 127.0.0.1, ::1
    wildcard = {"00000000", "00000000000000000000000000000000"}  # 0.0.0.0, ::
    assert not set(addresses) & loopback
    assert set(addresses) <= wildcard, addresses
