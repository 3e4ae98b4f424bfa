"""tf.distribute strategies from a name and TF_CONFIG (paper Appendix B: replicas).

    default           one device
    mirrored          synchronous replicas on this machine's devices
    multi_worker      synchronous replicas on several machines (TF_CONFIG: worker tasks)
    parameter_server  asynchronous replicas (TF_CONFIG: chief = coordinator, worker, ps)

Under `parameter_server` every task runs the same command: `ps` and `worker` tasks start a
`tf.distribute.Server` and serve until killed, the `chief` runs the training loop through
a ClusterCoordinator. TF_CONFIG is read the way TensorFlow always reads it
(`TFConfigClusterResolver`).
"""
import json
import os
import socket
import subprocess
import sys

import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi_worker", "parameter_server")
SERVER_TASKS = ("worker", "ps")


def task_from_tf_config():
    """(task type, task index) of this process from TF_CONFIG, or (None, None)."""
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = config.get("task", {})
    return task.get("type"), task.get("index")


def is_server_task(strategy_name):
    """True for the `worker` and `ps` tasks of a parameter-server cluster."""
    task_type, _ = task_from_tf_config()
    return strategy_name == "parameter_server" and task_type in SERVER_TASKS


def run_server():
    """Serves this task of the TF_CONFIG cluster until the process is killed."""
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    if resolver.task_type == "worker":
        # Workers must not grab every core: several may share a test machine.
        tf.config.threading.set_inter_op_parallelism_threads(2)
    server = tf.distribute.Server(resolver.cluster_spec(), job_name=resolver.task_type,
                                  task_index=resolver.task_id,
                                  protocol=resolver.rpc_layer or "grpc", start=True)
    server.join()


def make_strategy(name):
    if name not in STRATEGIES:
        raise ValueError(f"--strategy must be one of {STRATEGIES}, got {name!r}")
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    if not resolver.cluster_spec().as_dict():
        raise ValueError(f"--strategy={name} needs a cluster in TF_CONFIG (it is empty)")
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    if "ps" not in resolver.cluster_spec().jobs or resolver.task_type != "chief":
        raise ValueError("--strategy=parameter_server runs the loop on the TF_CONFIG task "
                         "of type 'chief' in a cluster with 'ps' and 'worker' jobs; got "
                         f"task {resolver.task_type!r} in {resolver.cluster_spec().as_dict()}")
    # No variable_partitioner: sharded variables fail with Keras 3 variables (SPEC.md 6).
    return tf.distribute.ParameterServerStrategy(resolver)


def is_parameter_server(strategy):
    return isinstance(strategy, tf.distribute.ParameterServerStrategy)


def num_workers(strategy):
    """Worker tasks of a cluster strategy (ParameterServerStrategy keeps its resolver in
    `extended`; its public `cluster_resolver` is None)."""
    resolver = strategy.cluster_resolver or getattr(strategy.extended, "_cluster_resolver",
                                                    None)
    if resolver is None:
        return 1
    return max(len(resolver.cluster_spec().as_dict().get("worker", ())), 1)


def worker_index(strategy):
    """(is_chief, task index) of this process; single-machine strategies are the chief."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or is_parameter_server(strategy) or not resolver.task_type:
        return True, 0
    task_type, task_id = resolver.task_type, resolver.task_id or 0
    has_chief = "chief" in resolver.cluster_spec().jobs
    is_chief = task_type == "chief" or (task_type == "worker" and task_id == 0
                                        and not has_chief)
    return is_chief, task_id


# A localhost cluster, for trying the strategies on one machine and for the tests.

def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def local_cluster(workers=2, ps=0, chief=False):
    """A cluster spec dict on free 127.0.0.1 ports."""
    jobs = {"chief": int(chief), "worker": workers, "ps": ps}
    ports = iter(free_ports(sum(jobs.values())))
    return {job: [f"127.0.0.1:{next(ports)}" for _ in range(n)]
            for job, n in jobs.items() if n}


def tf_config(cluster, task_type, index):
    return json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})


def start_task(cluster, task_type, index, argv, log_path, env=None):
    """Starts `python -m tools.train ARGV` as task (task_type, index) of `cluster`."""
    environment = dict(os.environ, **(env or {}))
    environment["TF_CONFIG"] = tf_config(cluster, task_type, index)
    log = open(log_path, "wb")
    return subprocess.Popen([sys.executable, "-m", "tools.train", *argv], env=environment,
                            stdout=log, stderr=subprocess.STDOUT)
