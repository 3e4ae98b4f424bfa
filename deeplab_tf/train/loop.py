"""One custom training loop for every tf.distribute strategy (paper 4.1, Appendix B).

Keras 3 `fit` has no parameter-server support and breaks under MultiWorkerMirrored
(SPEC.md 6), so this loop is the only trainer. Per step and replica:

  labels (full size, or subsampled for the Table 8 "no upsampling" ablation)
  -> logits = model(images); upsampled bilinearly to the labels
  -> loss = sum of pixel cross-entropies / valid pixels of the GLOBAL batch
            + slim weight decay / replicas          (summed over replicas: the exact mean)
  -> TF1 momentum 0.9 at lr = poly(step), with the authors' gradient multipliers
     (train/optimizer.py); step += 1 (a tf.Variable: exact under async PS)

Batch norm: trained with the model's decay (0.9997 in the paper), its statistics computed
over the whole global batch (`synchronized` across replicas, as one GPU with batch 16 did),
or frozen (`train.freeze_batch_norm`, stage 2, the paper's "freeze batch normalization
parameters"): as in the authors' code (fine_tune_batch_norm=False) the layers run on their
moving statistics and stop updating them while SGD still moves gamma/beta;
`train.freeze_gamma_beta` freezes those as well.

Sync strategies (default, mirrored, multi_worker) run step after step; under
ParameterServerStrategy the coordinator schedules steps on the workers and reads results
back a few steps behind. `train.batch_size` is the global batch of one update: split over
replicas when they are synchronous, the batch of each worker's own update when async.
"""
import collections
import os
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from deeplab_tf import config as config_lib
from deeplab_tf import modeling
from deeplab_tf.train import checkpointing
from deeplab_tf.train import loss as loss_lib
from deeplab_tf.train import optimizer as optimizer_lib
from deeplab_tf.train import schedule as schedule_lib
from deeplab_tf.train import strategy as strategy_lib
from deeplab_tf.train import summaries as summaries_lib

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN/Inf loss or gradient; the last good checkpoint is kept."""


def default_dataset_fn(config):
    """input_context -> the experiment's training tf.data.Dataset (deeplab_tf.data)."""
    from deeplab_tf import data  # registers the TFDS builders

    def dataset_fn(input_context=None, seed=config.train.seed):
        return data.train_input(config.data, config.train.batch_size, seed=seed,
                                input_context=input_context)
    return dataset_fn


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
    if config.train.freeze_batch_norm:  # moving statistics; gamma/beta train unless frozen
        modeling.freeze_batch_norm(model, gamma_beta=config.train.freeze_gamma_beta)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            if not config.train.freeze_batch_norm and num_replicas > 1:
                layer.synchronized = True  # statistics of the global batch
    return model


class Trainer:
    """Builds model, optimizer, data and checkpoints under `strategy`; `run()` trains."""

    def __init__(self, config, workdir, strategy=None, dataset_fn=None):
        self.config, self.workdir = config, workdir
        self.strategy = strategy or tf.distribute.get_strategy()
        self.is_async = strategy_lib.is_parameter_server(self.strategy)
        self.is_chief, task_index = strategy_lib.worker_index(self.strategy)
        train = config.train
        if train.batch_size % self.strategy.num_replicas_in_sync:
            raise ValueError(f"train.batch_size={train.batch_size} does not split over "
                             f"{self.strategy.num_replicas_in_sync} replicas")
        if train.xla and self.strategy.num_replicas_in_sync > 1 \
                and not train.freeze_batch_norm:
            raise ValueError("train.xla needs one replica per update or frozen batch norm: "
                             "synchronized batch norm all-reduces inside the step")
        self.init_checkpoint = config_lib.init_checkpoint_path(config)  # refuses ""
        keras.utils.set_random_seed(train.seed)
        self._write_config()
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
            self.trainable = self.model.trainable_variables
            self.optimizer.build(self.trainable)
        self.kernels = loss_lib.conv_kernels(self.model)
        self._dataset_fn = dataset_fn or default_dataset_fn(config)
        self.iterator = None
        # A plain tf.data iterator goes into the checkpoint; distributed iterators are
        # not trackable, so those streams are re-seeded from the restored step instead.
        self._iterator_in_checkpoint = not self.is_async and not isinstance(
            self.strategy, (tf.distribute.MirroredStrategy,
                            tf.distribute.MultiWorkerMirroredStrategy))
        if self._iterator_in_checkpoint:
            self._make_input(self._dataset_fn)
        directory = checkpointing.checkpoint_dir(workdir)
        if not self.is_chief:  # multi_worker: every worker saves; others keep a copy aside
            directory = os.path.join(workdir, "replicas", f"worker_{task_index}")
        self.manager = checkpointing.make_manager(
            directory, self.model, self.optimizer, self.step,
            self.iterator if self._iterator_in_checkpoint else None,
            max_to_keep=train.max_checkpoints if self.is_chief else 1)
        self.summaries = summaries_lib.TrainSummaries(
            os.path.join(workdir, "train"), config.data.dataset, config.model.num_classes,
            enabled=self.is_chief)
        self._forward_backward_fn = tf.function(self.forward_backward, jit_compile=True) \
            if train.xla else self.forward_backward

    # ---------------------------------------------------------------- setup

    def _write_config(self):
        if self.is_chief:
            tf.io.gfile.makedirs(self.workdir)
            with tf.io.gfile.GFile(os.path.join(self.workdir, "config.json"), "w") as f:
                f.write(config_lib.to_json(self.config))

    def _make_input(self, dataset_fn):
        if self.is_async:
            self.coordinator = tf.distribute.coordinator.ClusterCoordinator(self.strategy)
            self.iterator = iter(self.coordinator.create_per_worker_dataset(
                self._per_worker_dataset_fn(dataset_fn)))
        elif not self._iterator_in_checkpoint:
            seed = self._restart_seed()
            self.iterator = iter(self.strategy.distribute_datasets_from_function(
                lambda context: dataset_fn(context, seed=seed)))
        else:
            self.iterator = iter(dataset_fn(None))

    def _restart_seed(self):
        """The data seed of a stream that is not checkpointed: a restarted job draws a new
        stream rather than replaying the first batches of the previous one."""
        return self.config.train.seed + 7919 * int(self.step.numpy())

    def _per_worker_dataset_fn(self, dataset_fn):
        """Distinct data streams for the parameter-server workers.

        Under PS every worker's input context is pipeline 0, and tf.data seeds must be
        Python ints, so one seed would feed every worker the same batches. Instead each
        worker builds one pipeline per worker seed and reads the one picked by a counter on
        the parameter servers, which every worker increments once (atomically) when it
        creates its dataset. Only the picked pipeline runs (the others fill at most their
        prefetch buffer). A restarted job offsets the seeds by its start step, so it does
        not replay the stream of the first run.
        """
        num_workers = strategy_lib.num_workers(self.strategy)
        with self.strategy.scope():
            self._worker_counter = tf.Variable(0, dtype=tf.int64, trainable=False,
                                               name="worker_dataset_counter")
        base_seed = self._restart_seed()

        def per_worker_dataset_fn():
            choice = self._worker_counter.assign_add(1) - 1
            pipelines = [dataset_fn(None, seed=base_seed + i) for i in range(num_workers)]
            choices = tf.data.Dataset.from_tensors(choice % num_workers).repeat()
            return tf.data.Dataset.choose_from_datasets(pipelines, choices)
        return per_worker_dataset_fn

    def restore(self):
        """Resumes from this run's latest checkpoint, else applies train.init_checkpoint."""
        latest = checkpointing.restore_latest(self.manager)
        if latest:
            logging.info("resumed from %s at step %d", latest, int(self.step.numpy()))
        elif self.init_checkpoint:
            checkpointing.load_init_weights(self.model, self.init_checkpoint)
        return int(self.step.numpy())

    # ---------------------------------------------------------------- one step

    def forward_backward(self, images, labels, global_valid_pixels):
        """Gradients and metrics of one replica's batch (XLA-compiled if train.xla)."""
        train, num_classes = self.config.train, self.config.model.num_classes
        replicas = tf.distribute.get_replica_context().num_replicas_in_sync
        with tf.GradientTape() as tape:
            logits = self.model(images, training=True)
            logits, labels = loss_lib.logits_and_labels(logits, labels, train.upsample_logits)
            ce_sum, _ = loss_lib.cross_entropy_sum(logits, labels, self.config.data.ignore_label)
            cross_entropy = ce_sum / tf.maximum(global_valid_pixels, 1.0)
            weight_decay = loss_lib.weight_decay(self.kernels, train.weight_decay)
            total = cross_entropy + weight_decay / replicas
            if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
                total = self.optimizer.scale_loss(total)
        gradients = tape.gradient(total, self.trainable)
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in gradients])
        predictions = tf.argmax(logits, axis=-1, output_type=tf.int32)
        metrics = dict(
            cross_entropy=cross_entropy, weight_decay=weight_decay,
            gradients_finite=tf.cast(finite, tf.float32),
            confusion=loss_lib.confusion_matrix(logits, labels, num_classes,
                                                self.config.data.ignore_label),
            # The first example, for the image summaries.
            image=tf.cast(tf.clip_by_value(images[0], 0, 255), tf.uint8),
            label=tf.cast(labels[0], tf.uint8), prediction=tf.cast(predictions[0], tf.uint8))
        return gradients, metrics

    def replica_step(self, images, labels):
        context = tf.distribute.get_replica_context()
        if not self.config.train.upsample_logits:
            # Static logits size from the static crop: the labels are subsampled first.
            logits_shape = self.model.compute_output_shape(tuple(images.shape))
            labels = loss_lib.downsample_labels(labels, logits_shape[1:3])
        valid = tf.reduce_sum(tf.cast(labels != self.config.data.ignore_label, tf.float32))
        global_valid = context.all_reduce(tf.distribute.ReduceOp.SUM, valid)
        learning_step = self.step.read_value()
        gradients, metrics = self._forward_backward_fn(images, labels, global_valid)
        self.optimizer.apply(gradients, self.trainable)
        self.step.assign_add(1)
        metrics["step"] = learning_step
        return metrics

    def _reduce(self, per_replica):
        """Replica outputs -> one value each: sums, means, or the first replica's sample."""
        strategy, reduced = self.strategy, {}
        for name, value in per_replica.items():
            if name in ("cross_entropy", "confusion"):
                reduced[name] = strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)
            elif name in ("weight_decay", "gradients_finite"):
                reduced[name] = strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None)
            else:
                reduced[name] = strategy.experimental_local_results(value)[0]
        return reduced

    def _step_fn(self):
        @tf.function
        def train_step(iterator):
            images, labels = next(iterator)
            return self._reduce(self.strategy.run(self.replica_step, args=(images, labels)))
        return train_step

    # ---------------------------------------------------------------- the loop

    def run(self):
        """Trains to train.steps; returns the metrics of the last step."""
        train = self.config.train
        start = self.restore()
        if not self._iterator_in_checkpoint:  # the streams depend on the restored step
            self._make_input(self._dataset_fn)
        if start >= train.steps:
            logging.info("step %d: already at train.steps=%d", start, train.steps)
            return {}
        self._progress = summaries_lib.Progress(train.steps, start, train.batch_size,
                                                time.perf_counter)
        self._last_saved = start
        step_fn = self._step_fn()
        results = self._run_async(step_fn, start) if self.is_async \
            else self._run_sync(step_fn, start)
        self._save(int(self.step.numpy()))
        self.summaries.flush()
        return results

    def _run_sync(self, step_fn, start):
        metrics = {}
        for done in range(start + 1, self.config.train.steps + 1):
            metrics = self._after_step(done, step_fn(self.iterator))
        return metrics

    def _run_async(self, step_fn, start):
        """Schedules the remaining steps; reads results a few steps behind the workers.

        A worker that dies has its step re-run elsewhere by the coordinator; a parameter
        server that dies raises UnavailableError, which `tools.train` reports.
        """
        in_flight = 2 * strategy_lib.num_workers(self.strategy)
        pending, metrics, done = collections.deque(), {}, start
        remaining = self.config.train.steps - start
        while remaining > 0 or pending:
            if remaining > 0:
                pending.append(self.coordinator.schedule(step_fn, args=(self.iterator,)))
                remaining -= 1
            if len(pending) > in_flight or (remaining == 0 and pending):
                done += 1
                metrics = self._after_step(done, pending.popleft().fetch())
        self.coordinator.join()
        return metrics

    def _after_step(self, done, outputs):
        """Checks, logs, summarises and checkpoints after `done` steps."""
        train = self.config.train
        cross_entropy = float(outputs["cross_entropy"])
        weight_decay = float(outputs["weight_decay"])
        loss = cross_entropy + weight_decay
        loss_scaling = isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer)
        if not np.isfinite(loss) or (not loss_scaling and
                                     float(outputs["gradients_finite"]) < 1.0):
            latest = self.manager.latest_checkpoint
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
        if done % train.image_summary_every == 0 or done == train.steps:
            self.summaries.write_images(done, np.asarray(outputs["image"]),
                                        np.asarray(outputs["label"]),
                                        np.asarray(outputs["prediction"]))
        if done % train.log_every == 0 or done == train.steps:
            self._progress.log(done, loss, learning_rate, *self._progress.rate(done, "log"))
        if done % train.checkpoint_every == 0 and done < train.steps:
            self._save(done)
        return dict(loss=loss, cross_entropy=cross_entropy, weight_decay=weight_decay,
                    learning_rate=learning_rate)

    def _save(self, done):
        if self.is_async:  # workers may be ahead of the results read so far
            done = int(self.step.numpy())
        if done == self._last_saved and self.manager.latest_checkpoint:
            return
        path = self.manager.save(checkpoint_number=done)
        self._last_saved = done
        self.summaries.flush()
        if self.is_chief:
            logging.info("saved %s", path)


def train(config, workdir, strategy=None, dataset_fn=None):
    """Trains `config` in `workdir` under `strategy`; returns the last step's metrics."""
    trainer = Trainer(config, workdir, strategy, dataset_fn)
    return trainer.run()
