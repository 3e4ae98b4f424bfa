"""Strategy names, TF_CONFIG roles and the settings a strategy refuses, without TensorFlow.

tools.train reads these before TensorFlow loads, so a command line that cannot run (an
unknown role, train.xla under parameter servers, a batch that does not split) is refused
in about a second instead of after TensorFlow's import. `deeplab_tf.train.strategy` makes
the strategies themselves.
"""
import json
import os
import re

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


_TASK = re.compile(r"/job:(\w+)/(?:replica:\d+/)?task:(\d+)")


def lost_task(message, own_task):
    """The task `/job:TYPE/task:N` a collective error names other than `own_task` (a
    (type, index) pair), or None: TensorFlow names the dead peer in the message, as a task
    that stopped sending heartbeats or as the remote target a call to it failed on."""
    for job, index in _TASK.findall(message):
        if (job, int(index)) != tuple(own_task):
            return f"/job:{job}/task:{index}"
    return None
