"""tf.distribute strategies from a name and TF_CONFIG (paper Appendix B: replicas).

    default           one device
    mirrored          synchronous replicas on this machine's devices
    multi_worker      synchronous replicas on several machines (TF_CONFIG: chief/worker)
    parameter_server  asynchronous replicas (TF_CONFIG: chief = coordinator, worker, ps)

Every task of a cluster runs the same command; its TF_CONFIG task type says what it does
(`task_role`): `ps` and `worker` tasks of a parameter-server cluster start a
`tf.distribute.Server` and serve until killed, the `chief` (and, under multi_worker, every
`worker`) trains, and an `evaluator` task evaluates each new checkpoint (TensorFlow's
side-car evaluator convention). TF_CONFIG is read the way TensorFlow always reads it
(`TFConfigClusterResolver`); the evaluator is not part of the training cluster.
"""
import json
import os
import socket
import subprocess
import sys

import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi_worker", "parameter_server")
# The TF_CONFIG task types each cluster strategy knows; any other type is an error.
ROLES = {"multi_worker": ("chief", "worker", "evaluator"),
         "parameter_server": ("chief", "worker", "ps", "evaluator")}
SERVER_TASKS = ("worker", "ps")
EVALUATOR = "evaluator"


def task_from_tf_config():
    """(task type, task index) of this process from TF_CONFIG, or (None, None)."""
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = config.get("task", {})
    return task.get("type"), task.get("index")


def _training_tasks():
    cluster = json.loads(os.environ.get("TF_CONFIG") or "{}").get("cluster", {})
    return len(cluster.get("chief", ())) + len(cluster.get("worker", ()))


def task_role(strategy_name):
    """What this process does under --strategy=`strategy_name`: "train", "serve" (a ps or
    worker task of a parameter-server cluster) or "evaluate" (the evaluator task)."""
    task_type, _ = task_from_tf_config()
    if task_type is None:
        return "train"
    if task_type == EVALUATOR:
        return "evaluate"
    if strategy_name in ROLES:
        if task_type not in ROLES[strategy_name]:
            raise ValueError(
                f"TF_CONFIG task type {task_type!r} is not a role of --strategy="
                f"{strategy_name}; its roles are {', '.join(ROLES[strategy_name])}")
        if strategy_name == "parameter_server" and task_type in SERVER_TASKS:
            return "serve"
        return "train"
    if _training_tasks() > 1:  # default / mirrored would train N independent copies
        raise ValueError(
            f"TF_CONFIG describes a cluster of {_training_tasks()} training tasks, but "
            f"--strategy={strategy_name} trains on this machine only: use --strategy="
            "multi_worker or --strategy=parameter_server")
    return "train"


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


def check_supported(train, strategy_name, replicas_per_step=1):
    """Refuses, before any step runs, the settings that cannot train under a strategy.

    `train` is the config's train section; `replicas_per_step` the replicas of one
    update (under parameter_server: the devices of one worker).
    """
    if train.batch_size % replicas_per_step:
        raise ValueError(f"train.batch_size={train.batch_size} does not split over "
                         f"{replicas_per_step} replicas")
    if strategy_name == "parameter_server":
        if train.xla:
            raise ValueError(
                "train.xla=True cannot run under --strategy=parameter_server: a worker's "
                "XLA cluster cannot read the variables the parameter servers hold. Train "
                "with train.xla=False there (XLA works under default and, with frozen "
                "batch norm, under the synchronous strategies).")
        if replicas_per_step > 1:
            raise ValueError(
                f"--strategy=parameter_server with {replicas_per_step} devices per worker: "
                "Keras creates batch-norm moving statistics without a cross-replica "
                "aggregation, so several replicas of one worker cannot update them. Run "
                "one worker task per GPU (CUDA_VISIBLE_DEVICES=i for each).")
    elif train.xla and replicas_per_step > 1 and not train.freeze_batch_norm:
        raise ValueError("train.xla needs one replica per update or frozen batch norm: "
                         "synchronized batch norm all-reduces inside the step")


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
