"""tf.distribute strategies from a name and TF_CONFIG (paper Appendix B: replicas).

    default           one device
    mirrored          synchronous replicas on this machine's devices
    multi_worker      synchronous replicas on several machines (TF_CONFIG: chief/worker)
    parameter_server  asynchronous replicas (TF_CONFIG: chief = coordinator, worker, ps)

Every task of a cluster runs the same command; its TF_CONFIG task type says what it does
(`deeplab_tf.cluster.task_role`): `ps` and `worker` tasks of a parameter-server cluster
start a `tf.distribute.Server` and serve until killed, the `chief` (and, under
multi_worker, every `worker`) trains, and an `evaluator` task evaluates each new
checkpoint (TensorFlow's side-car evaluator convention). TF_CONFIG is read the way
TensorFlow always reads it (`TFConfigClusterResolver`); the evaluator is not part of the
training cluster.
"""
import json
import os
import socket
import subprocess
import sys

import tensorflow as tf

from deeplab_tf.cluster import EVALUATOR, STRATEGIES


def run_server():
    """Serves this task of the TF_CONFIG cluster until the process is killed.

    Threads: TensorFlow's defaults (or TF_NUM_INTEROP_THREADS / TF_NUM_INTRAOP_THREADS
    from the environment, which `start_task` sets for clusters sharing one test machine).
    """
    resolver = _training_resolver()
    server = tf.distribute.Server(resolver.cluster_spec(), job_name=resolver.task_type,
                                  task_index=resolver.task_id,
                                  protocol=resolver.rpc_layer or "grpc", start=True)
    server.join()


def _training_resolver():
    """TF_CONFIG's resolver without the evaluator job: the evaluator reads checkpoints
    from the work dir and is no task of the training cluster (a coordinator would wait
    for it to answer)."""
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    jobs = resolver.cluster_spec().as_dict()
    if EVALUATOR not in jobs:
        return resolver
    jobs.pop(EVALUATOR)
    # GPUs counted without initialising TensorFlow's runtime (MultiWorkerMirrored reads
    # them from a resolver other than TFConfigClusterResolver).
    gpus = len(tf.config.list_physical_devices("GPU"))
    return tf.distribute.cluster_resolver.SimpleClusterResolver(
        tf.train.ClusterSpec(jobs), task_type=resolver.task_type, task_id=resolver.task_id,
        rpc_layer=resolver.rpc_layer, num_accelerators={"GPU": gpus} if gpus else None)


def make_strategy(name):
    if name not in STRATEGIES:
        raise ValueError(f"--strategy must be one of {STRATEGIES}, got {name!r}")
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    resolver = _training_resolver()
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


def kind(strategy):
    """The STRATEGIES name of a strategy object (one device counts as "default")."""
    if is_parameter_server(strategy):
        return "parameter_server"
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "multi_worker"
    if isinstance(strategy, tf.distribute.MirroredStrategy):
        return "mirrored"
    return "default"


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


# For parameter-server tasks sharing the cores of one test machine: two inter-op threads
# each keep them from oversubscribing it (real clusters keep TensorFlow's defaults).
LOCAL_SERVER_THREADS = {"TF_NUM_INTEROP_THREADS": "2"}


def start_task(cluster, task_type, index, argv, log_path, env=None, command=None, cwd=None):
    """Starts `python -m tools.train ARGV` (or `python COMMAND... ARGV`) as task
    (task_type, index) of the localhost `cluster`."""
    environment = dict(os.environ, **(env or {}))
    environment["TF_CONFIG"] = tf_config(cluster, task_type, index)
    log = open(log_path, "wb")
    return subprocess.Popen([sys.executable, *(command or ["-m", "tools.train"]), *argv],
                            env=environment, stdout=log, stderr=subprocess.STDOUT, cwd=cwd)
