"""Training runs the distributed-training tests start as processes (issue 11).

    python tests/train_scripts.py MODE DATA_DIR ROOT

Modes (each prints one line `RESULT <json>`):
  sync_equal       one device, then MirroredStrategy on two logical CPUs: the mini DeepLab
                   (ASPP dropout on) in float64, global batch 4, 3 steps, in ROOT/one and
                   ROOT/mirrored
  multi_worker     one MultiWorkerMirrored worker (TF_CONFIG) of the same run, ROOT/multi
  multi_worker_resume STEPS, parameter_server_train STEPS
                   a MultiWorkerMirrored worker / a parameter-server chief training the
                   tiny model to STEPS in the work dir ROOT (checkpoints every 2 / 20
                   steps), logging as tools.train does
  precision        mixed_float16/mixed_bfloat16 x XLA on/off under default and mirrored
                   (two logical CPUs), tiny model; then an inf on replica 1's gradients
  parameter_server the chief of a parameter-server cluster (TF_CONFIG): 100 steps of the
                   tiny model, then the precision x XLA combinations
"""
import json
import os
import sys

import numpy as np

# The models of tests/small_models.py (train_scripts.py runs with the repository on
# PYTHONPATH, as tools do).
TINY, MINI_DEEPLAB = "tests.small_models:tiny", "tests.small_models:mini_deeplab"

MODE, DATA_DIR, ROOT = sys.argv[1:4]


def smoke(*overrides):
    from deeplab_tf import config as config_lib
    return config_lib.load_experiment("smoke", [f"data.data_dir={DATA_DIR}", *overrides])


def global_batch_dataset_fn(config):
    """Every strategy sees the one-device stream: input pipeline p of n takes the p-th
    n-th of each global batch (the default sharding would give workers other examples)."""
    from deeplab_tf import data
    batch = config.train.batch_size

    def dataset_fn(context=None, seed=config.train.seed):
        dataset = data.train_input(config.data, batch, seed=seed)
        if context is None:
            return dataset
        share = batch // context.num_input_pipelines
        first = context.input_pipeline_id * share
        return dataset.map(lambda x, y: (x[first:first + share], y[first:first + share])
                           ).unbatch().batch(context.get_per_replica_batch_size(batch))
    return dataset_fn


# With the ASPP dropout of the config (0.1): its masks are a function of the seed, the step
# and the example's index in the global batch, the same on one device and N replicas.
EQUAL = (f"model.builder={MINI_DEEPLAB}", "train.precision=float64", "train.batch_size=4",
         "train.steps=3", "train.checkpoint_every=3")


def two_logical_cpus():
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


def replicas_differ(trainer):
    """Largest difference between the two replicas' copies of any variable."""
    variables = list(trainer.model.weights) + list(trainer.optimizer.variables)
    return max(float(np.max(np.abs(v.value.values[0].numpy() - v.value.values[1].numpy())))
               for v in variables)


def sync_equal():
    import tensorflow as tf
    from deeplab_tf.train import loop
    mirrored = two_logical_cpus()
    config = smoke(*EQUAL)
    for name, strategy in (("one", tf.distribute.get_strategy()), ("mirrored", mirrored)):
        trainer = loop.Trainer(config, os.path.join(ROOT, name), strategy,
                               global_batch_dataset_fn(config))
        trainer.run()
    return dict(replicas_differ=replicas_differ(trainer))


def multi_worker():
    from deeplab_tf.train import loop, strategy as strategy_lib
    config = smoke(*EQUAL)
    trainer = loop.Trainer(config, os.path.join(ROOT, "multi"),
                           strategy_lib.make_strategy("multi_worker"),
                           global_batch_dataset_fn(config))
    trainer.run()
    return dict(step=int(trainer.step.numpy()), **multi_worker_claims(trainer.strategy))


def digest(arrays):
    import hashlib
    return hashlib.sha1(b"".join(np.asarray(a).tobytes() for a in arrays)).hexdigest()


def multi_worker_claims(strategy):
    """In the same two worker processes (issue 22): each worker's first batch of the
    experiment's own input, 2 mixed_float16 steps of the tiny model, and what this worker
    saved into its scratch directory before removing it (the chief removes nothing)."""
    from deeplab_tf.train import checkpointing, loop
    config = smoke(f"model.builder={TINY}", "train.precision=mixed_float16",
                   "train.batch_size=4", "train.steps=2", "train.checkpoint_every=1")
    trainer = loop.Trainer(config, os.path.join(ROOT, "multi_mixed"), strategy)
    removed, remove = [], checkpointing.remove_scratch

    def recording(manager):
        removed.append(sorted(os.listdir(manager.directory)))
        remove(manager)
    checkpointing.remove_scratch = recording
    trainer.restore()
    trainer._make_input()
    images = strategy.experimental_local_results(next(trainer.iterator)[0])[0].numpy()
    before = weights(trainer)
    metrics = trainer.run()
    after = weights(trainer)
    scratch = checkpointing.save_dir(trainer.workdir, trainer.is_chief, trainer.task_index)
    return dict(first_batch=digest([images]), mixed=dict(
        loss=metrics["loss"], step=int(trainer.step.numpy()),
        finite=all(bool(np.all(np.isfinite(a))) for a in after),
        moved=max(float(np.max(np.abs(a - b))) for a, b in zip(after, before)),
        weights=digest(after), loss_scale=float(trainer.optimizer.dynamic_scale.numpy())),
        removed=removed, scratch=scratch, scratch_left=os.path.exists(scratch),
        is_chief=trainer.is_chief)


def train_tiny(strategy_name, checkpoint_every):
    from absl import logging
    from deeplab_tf.train import loop, strategy as strategy_lib
    logging.set_verbosity(logging.INFO)
    config = smoke(f"model.builder={TINY}", f"train.steps={sys.argv[4]}",
                   f"train.checkpoint_every={checkpoint_every}",
                   "train.batch_size=4", "train.log_every=1")
    trainer = loop.Trainer(config, ROOT, strategy_lib.make_strategy(strategy_name))
    metrics = trainer.run()
    return dict(step=int(trainer.step.numpy()),
                steps_per_stream=metrics.get("steps_per_stream"))


def weights(trainer):
    return [v.numpy().copy() for v in trainer.model.trainable_variables]


def try_to_train(strategy, workdir, precision, xla, steps=2):
    """{"refused": message} or the loss, the largest weight change and finiteness."""
    from deeplab_tf.train import loop
    config = smoke(f"model.builder={TINY}", f"train.precision={precision}", f"train.xla={xla}",
                   "train.batch_size=4", f"train.steps={steps}",
                   f"train.checkpoint_every={steps}")
    try:
        trainer = loop.Trainer(config, workdir, strategy)
    except ValueError as error:
        return dict(refused=str(error))
    before = weights(trainer)
    metrics = trainer.run()
    after = weights(trainer)
    return dict(loss=metrics["loss"], moved=max(float(np.max(np.abs(a - b)))
                                                for a, b in zip(after, before)),
                finite=all(bool(np.all(np.isfinite(a))) for a in after),
                step=int(trainer.step.numpy()))


COMBINATIONS = [(p, x) for p in ("mixed_float16", "mixed_bfloat16") for x in (False, True)]


def inf_on_one_replica(strategy):
    """One mixed_float16 step whose replica 1 has an inf gradient, then a clean step."""
    import tensorflow as tf
    from deeplab_tf.train import loop
    config = smoke(f"model.builder={TINY}", "train.precision=mixed_float16",
                   "train.batch_size=4", "train.steps=2")
    trainer = loop.Trainer(config, os.path.join(ROOT, "inf"), strategy)
    trainer.restore()
    trainer._make_input()
    clean = trainer.train_step._forward_backward
    poison = tf.Variable(float("inf"), trainable=False)  # a step-1 inf, off afterwards

    def forward_backward(images, labels, valid, *mining):
        gradients, metrics = clean(images, labels, valid, *mining)
        on_replica_1 = tf.equal(tf.distribute.get_replica_context().replica_id_in_sync_group, 1)
        extra = tf.where(on_replica_1, poison, 0.0)
        return [gradients[0] + tf.cast(extra, gradients[0].dtype), *gradients[1:]], metrics
    trainer.train_step._forward_backward = forward_backward
    step_fn = trainer.step_function()
    scale = [float(trainer.optimizer.dynamic_scale.numpy())]
    snapshots = [weights(trainer)]
    for value in (float("inf"), 0.0):
        poison.assign(value)
        step_fn(trainer.iterator, tf.constant(False))
        scale.append(float(trainer.optimizer.dynamic_scale.numpy()))
        snapshots.append(weights(trainer))
    change = [max(float(np.max(np.abs(a - b))) for a, b in zip(later, earlier))
              for earlier, later in zip(snapshots, snapshots[1:])]
    return dict(scale=scale, change=change, replicas_differ=replicas_differ(trainer),
                finite=all(bool(np.all(np.isfinite(w))) for s in snapshots for w in s))


def precision():
    import tensorflow as tf
    mirrored = two_logical_cpus()
    results = {}
    for name, strategy in (("default", tf.distribute.get_strategy()), ("mirrored", mirrored)):
        for precision_name, xla in COMBINATIONS:
            key = f"{name}/{precision_name}/xla={xla}"
            results[key] = try_to_train(strategy, os.path.join(ROOT, key), precision_name, xla)
    results["inf_on_replica_1"] = inf_on_one_replica(mirrored)
    results["mirrored_resume"] = mirrored_resume(mirrored)
    return results


def mirrored_resume(strategy):
    """2 mirrored steps saved at ckpt-2; a new Trainer in the same work dir restores them
    (weights, momentum, loss scale-free float32, step) and trains on to step 3."""
    from deeplab_tf.train import loop
    workdir = os.path.join(ROOT, "mirrored_resume")

    def state(trainer):
        return [v.numpy().copy() for v in list(trainer.model.weights) +
                list(trainer.optimizer.variables)]

    def config(steps):
        return smoke(f"model.builder={TINY}", "train.batch_size=4", f"train.steps={steps}",
                     "train.checkpoint_every=2")
    first = loop.Trainer(config(2), workdir, strategy)
    first.run()
    saved = state(first)
    momentum = [v.numpy() for v in first.optimizer.variables if v.path.endswith("_momentum")]
    second = loop.Trainer(config(3), workdir, strategy)
    restored_step = second.restore()
    restored = state(second)
    differ = max(float(np.max(np.abs(a - b))) for a, b in zip(saved, restored))
    second.run()
    return dict(variables=len(saved), differ=differ, restored_step=restored_step,
                momentum_slots=len(momentum),
                momentum_nonzero=sum(bool(np.any(m != 0)) for m in momentum),
                replicas_differ=replicas_differ(second), final_step=int(second.step.numpy()))


def parameter_server():
    from deeplab_tf.train import loop, strategy as strategy_lib
    strategy = strategy_lib.make_strategy("parameter_server")
    # Contention: many short steps of two workers on one step counter.
    config = smoke(f"model.builder={TINY}", "train.steps=100", "train.checkpoint_every=25",
                   "train.log_every=25", "train.summary_every=25",
                   "train.image_summary_every=50")
    trainer = loop.Trainer(config, os.path.join(ROOT, "contention"), strategy)
    metrics = trainer.run()
    results = dict(contention=dict(step=int(trainer.step.numpy()),
                                   steps_per_stream=metrics["steps_per_stream"]))
    for precision_name, xla in COMBINATIONS:
        key = f"parameter_server/{precision_name}/xla={xla}"
        results[key] = try_to_train(strategy, os.path.join(ROOT, key), precision_name, xla,
                                    steps=4)
    return results


if __name__ == "__main__":
    result = dict(sync_equal=sync_equal, multi_worker=multi_worker, precision=precision,
                  parameter_server=parameter_server,
                  multi_worker_resume=lambda: train_tiny("multi_worker", 2),
                  parameter_server_train=lambda: train_tiny("parameter_server", 20))[MODE]()
    print("RESULT " + json.dumps(result), flush=True)
