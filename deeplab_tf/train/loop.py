"""One custom training loop for every tf.distribute strategy (paper 4.1, Appendix B).

Keras 3 `fit` has no parameter-server support and breaks under MultiWorkerMirrored
(SPEC.md 6), so this loop is the only trainer. The update itself is `step.TrainStep`
(per replica: logits upsampled to the labels, cross-entropy over the valid pixels of the
GLOBAL batch + slim weight decay, TF1 momentum at lr = poly(step) with the authors'
gradient multipliers, train/optimizer.py); this file builds what it needs, runs the
synchronous strategies (default, mirrored, multi_worker) step after step, hands
parameter-server runs to `parameter_server.run`, and checks, logs, summarises and
checkpoints after each step.

Batch norm: trained with the model's decay (0.9997 in the paper), its statistics computed
over the whole global batch (`synchronized` across replicas, as one GPU with batch 16 did;
modeling/batch_norm.py, also inside nested models), or frozen (`train.freeze_batch_norm`, stage 2, the paper's "freeze batch normalization
parameters"): as in the authors' code (fine_tune_batch_norm=False) the layers run on their
moving statistics and stop updating them while SGD still moves gamma/beta;
`train.freeze_gamma_beta` freezes those as well.

`train.batch_size` is the global batch of one update: split over replicas when they are
synchronous, the batch of each worker's own update under parameter servers.

Resuming (what a checkpoint restores under each strategy: checkpointing.py; what a restart
may change in the config: run_records.py).
"""
import os
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from deeplab_tf import cluster
from deeplab_tf import config as config_lib
from deeplab_tf import modeling
from deeplab_tf import recipe
from deeplab_tf.train import checkpointing
from deeplab_tf.train import optimizer as optimizer_lib
from deeplab_tf.train import parameter_server
from deeplab_tf.train import run_records
from deeplab_tf.train import schedule as schedule_lib
from deeplab_tf.train import step as step_lib
from deeplab_tf.train import strategy as strategy_lib
from deeplab_tf.train import summaries as summaries_lib

# float64 is for numerical checks: one device and N replicas agree to float tolerance in
# it, which this randomly initialised network does not allow in float32 (WORKSPACE_NOTES).
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16", "float64")


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN/Inf loss or gradient; the last good checkpoint is kept."""


def default_dataset_fn(config):
    """input_context -> the experiment's training tf.data.Dataset (deeplab_tf.data)."""
    from deeplab_tf import data  # registers the TFDS builders

    def dataset_fn(input_context=None, seed=config.train.seed):
        return data.train_input(config.data, config.train.batch_size, seed=seed,
                                input_context=input_context)
    return dataset_fn


def data_class_table(config):
    """The class table of the training data set; fills and checks `config` against it."""
    from deeplab_tf import data
    dataset, data_dir = config.data.dataset, config.data.data_dir
    table = data.class_table(dataset, data_dir)
    source = f"data set {dataset}" + (f" in {data_dir}" if data_dir else "")
    config_lib.apply_class_table(config, table, source)
    return table


def _build_model(config, num_replicas):
    if config.train.precision not in PRECISIONS:
        raise ValueError(f"train.precision must be one of {PRECISIONS}, "
                         f"got {config.train.precision!r}")
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(config.train.precision)
    try:
        model = config_lib.build_model(config.model)
    finally:
        keras.config.set_dtype_policy(previous)
    # Both reach the batch norms of nested models, and refuse Keras' own batch norm.
    if config.train.freeze_batch_norm:  # moving statistics; gamma/beta train unless frozen
        modeling.freeze_batch_norm(model, gamma_beta=config.train.freeze_gamma_beta)
    elif num_replicas > 1:
        modeling.synchronize_batch_norm(model)  # statistics of the global batch
    return model


class Trainer:
    """Builds model (`config.model.builder`), optimizer, data and checkpoints under
    `strategy`; `run()` trains."""

    def __init__(self, config, workdir, strategy=None, dataset_fn=None,
                 allow_config_change=False):
        self.config, self.workdir = config, workdir
        self.strategy = strategy or tf.distribute.get_strategy()
        self.kind = strategy_lib.kind(self.strategy)
        self.is_async = self.kind == "parameter_server"
        self.is_chief, self.task_index = strategy_lib.worker_index(self.strategy)
        train = config.train
        cluster.check_supported(train, self.kind, self.strategy.num_replicas_in_sync)
        self.init_checkpoint = config_lib.init_checkpoint_path(config)  # refuses ""
        # The data set's classes, typed once: the class count, names in the config, and
        # WORKDIR/classes.json for evaluation, pictures and exports.
        self.class_table = data_class_table(config)
        keras.utils.set_random_seed(train.seed)
        # A restart that changes the model, the data or the classes is refused before
        # anything is written (run_records.py); every task checks, so all of a cluster stop.
        previous = run_records.check_restart(workdir, config, self.class_table,
                                             allow_config_change)
        if self.is_chief:
            run_records.write(workdir, config, self.class_table, previous)
            recipe.write(recipe.report(config), workdir)  # WORKDIR/recipe.json and .txt
        with self.strategy.scope():
            self.model = _build_model(config, self.strategy.num_replicas_in_sync)
            # ONLY_FIRST_REPLICA: the replicas of a synchronous step count it once.
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step",
                                    aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
            self.schedule = schedule_lib.poly_schedule(train.base_learning_rate, train.steps,
                                                       train.learning_rate_power)
            optimizer = optimizer_lib.make_optimizer(  # TF1 momentum + gradient multipliers
                train, self.model, schedule_lib.learning_rate_fn(self.schedule, self.step))
            if train.precision == "mixed_float16":
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
            self.optimizer = optimizer
            self.optimizer.build(self.model.trainable_variables)
        self.train_step = step_lib.TrainStep(config, self.strategy, self.model,
                                             self.optimizer, self.step)
        self.trainable, self.kernels = self.train_step.trainable, self.train_step.kernels
        self.forward_backward = self.train_step.forward_backward
        self._dataset_fn = dataset_fn or default_dataset_fn(config)
        self.iterator = None
        # One device: the tf.data iterator itself goes into the checkpoint (an exact
        # resume). Distributed iterators are not trackable: those streams are re-seeded
        # from the restored step (sync) or drawn afresh per worker (parameter servers).
        self._iterator_in_checkpoint = self.kind == "default"
        self.data_streams = (parameter_server.DataStreams(self.strategy, self._dataset_fn,
                                                          train.seed)
                             if self.is_async else None)
        if self._iterator_in_checkpoint:
            self._make_input()
        self.manager = checkpointing.make_manager(
            checkpointing.save_dir(workdir, self.is_chief, self.task_index), self.model,
            self.optimizer, self.step,
            iterator=self.iterator if self._iterator_in_checkpoint else None,
            data_streams=self.data_streams.counter if self.is_async else None,
            max_to_keep=train.max_checkpoints if self.is_chief else 1)
        self.summaries = summaries_lib.TrainSummaries(
            os.path.join(workdir, "train"), self.class_table, enabled=self.is_chief)
        self._last_saved = None

    # ---------------------------------------------------------------- setup

    def _make_input(self):
        if self.is_async:
            self.coordinator = tf.distribute.coordinator.ClusterCoordinator(self.strategy)
            self.iterator = self.data_streams.iterator(self.coordinator)
        elif not self._iterator_in_checkpoint:
            seed = self._restart_seed()
            self.iterator = iter(self.strategy.distribute_datasets_from_function(
                lambda context: self._dataset_fn(context, seed=seed)))
        else:
            self.iterator = iter(checkpointing.symbolic(self._dataset_fn(None)))

    def _restart_seed(self):
        """The data seed of a synchronous stream that is not checkpointed: a restarted job
        draws a new stream rather than replaying the first batches of the previous one."""
        return self.config.train.seed + 7919 * int(self.step.numpy())

    def restore(self):
        """Resumes from this run's latest checkpoint, else applies train.init_checkpoint.

        Every task restores the chief's checkpoint (WORKDIR/checkpoints); under
        multi_worker the workers then check that they all restored the same step.
        """
        latest = checkpointing.restore_latest(self.manager.checkpoint, self.workdir)
        if self.kind == "multi_worker":
            checkpointing.check_workers_agree(self.strategy, int(self.step.numpy()),
                                              latest, self.workdir, self.task_index)
        if latest:
            logging.info("resumed from %s at step %d", latest, int(self.step.numpy()))
        elif self.init_checkpoint:
            checkpointing.load_init_weights(self.model, self.init_checkpoint,
                                            self.config.train, self.config.model)
        self._last_saved = int(self.step.numpy()) if latest else None
        return int(self.step.numpy())

    # ---------------------------------------------------------------- the loop

    def step_function(self):
        return self.train_step.function()

    def _step_fn(self):  # the name the one-device tests use
        return self.step_function()

    def wants_images(self, done):
        every = self.config.train.image_summary_every
        return bool(done % every == 0 or done == self.config.train.steps)

    def run(self):
        """Trains to train.steps; returns the metrics of the last step."""
        train = self.config.train
        start = self.restore()
        if not self._iterator_in_checkpoint:  # the streams depend on the restored state
            self._make_input()
        if start >= train.steps:
            logging.info("step %d: already at train.steps=%d", start, train.steps)
            return {}
        self._progress = summaries_lib.Progress(train.steps, start, train.batch_size,
                                                time.perf_counter)
        self.summaries.write_recipe(self.config, start)  # deeplab_tf/recipe.py, once a run
        if self.is_async:
            results = parameter_server.run(self, start)
        else:
            results = self._run_sync(start)
        self.summaries.flush()
        return results

    def _run_sync(self, start):
        train, metrics = self.config.train, {}
        step_fn = self.step_function()
        for done in range(start + 1, train.steps + 1):
            metrics = self.after_step(done, step_fn(self.iterator,
                                                    tf.constant(self.wants_images(done))))
            if done % train.checkpoint_every == 0 or done == train.steps:
                self.save(done)
        return metrics

    def after_step(self, done, outputs):
        """Checks, logs and summarises the results of the `done`-th step."""
        train = self.config.train
        cross_entropy = float(outputs["cross_entropy"])
        weight_decay = float(outputs["weight_decay"])
        loss = cross_entropy + weight_decay
        if not np.isfinite(loss) or (not self.train_step.loss_scaled and
                                     float(outputs["gradients_finite"]) < 1.0):
            latest = checkpointing.latest_checkpoint(self.workdir)
            raise NonFiniteLossError(
                f"non-finite {'loss' if not np.isfinite(loss) else 'gradients'} at step "
                f"{done} (loss {loss}); stopped without saving. Last good checkpoint: "
                f"{latest or 'none'}. Lower train.base_learning_rate or check the data.")
        self.summaries.accumulate(np.asarray(outputs["confusion"]))
        learning_rate = float(self.schedule(float(outputs["step"])))
        if done % train.summary_every == 0 or done == train.steps:
            seconds, examples = self._progress.rate(done, "summary")
            self.summaries.write_scalars(done, dict(
                loss=loss, cross_entropy=cross_entropy, weight_decay=weight_decay,
                learning_rate=learning_rate, step_time=seconds, examples_per_second=examples))
        if self.wants_images(done):
            self.summaries.write_images(done, np.asarray(outputs["image"]),
                                        np.asarray(outputs["label"]),
                                        np.asarray(outputs["prediction"]))
        if done % train.log_every == 0 or done == train.steps:
            self._progress.log(done, loss, learning_rate, *self._progress.rate(done, "log"))
        return dict(loss=loss, cross_entropy=cross_entropy, weight_decay=weight_decay,
                    learning_rate=learning_rate)

    def save(self, step):
        """Saves checkpoint ckpt-`step` (the step variable's value); every worker of a
        multi_worker run takes part, the others into a scratch directory they delete."""
        if step == self._last_saved:
            return
        path = self.manager.save(checkpoint_number=step)
        self._last_saved = step
        self.summaries.flush()
        if self.is_chief:
            logging.info("saved %s", path)
        else:
            checkpointing.remove_scratch(self.manager)


def train(config, workdir, strategy=None, dataset_fn=None, allow_config_change=False):
    """Trains `config` in `workdir` under `strategy`; returns the last step's metrics.

    `allow_config_change`: resume a run whose recorded config or class table differs in
    more than the benign fields (run_records.py), rather than refusing.
    """
    trainer = Trainer(config, workdir, strategy, dataset_fn, allow_config_change)
    return trainer.run()
