"""Asynchronous training with parameter servers (paper Appendix B, Table 11).

The coordinator (TF_CONFIG task "chief") schedules steps on the workers through a
`ClusterCoordinator`; each worker reads the variables from the parameter servers, computes
its own update on its own batch of `train.batch_size` and applies it there. Results come
back a few steps behind the workers.

Checkpoints: at each `train.checkpoint_every` the coordinator stops scheduling, waits for
every scheduled step (`coordinator.join()`), checks all their results (a non-finite loss
stops training before anything is saved) and only then saves, so checkpoint ckpt-N holds
exactly the weights after N updates and step N. A worker that dies has its step re-run
elsewhere ("at least once": if it died after applying its update, that update counts
twice), so N can exceed the number of steps scheduled by one.

Data: every dataset the workers create (at the start, and again on a worker that recovers
from a failure) takes the next id from a counter on the parameter servers, atomically
(`ResourceCountUpTo`), and seeds its stream with it: no two streams are alike, across
failures and restarts (the counter is in the checkpoint). The id comes back with each
step's results, so the coordinator counts the steps each stream (worker) ran.
"""
import collections

import tensorflow as tf
from absl import logging

from deeplab_tf.train import strategy as strategy_lib

# Seed of stream k: train.seed + STREAM_SEED_STRIDE * (k + 1); the default strategy's
# stream keeps train.seed itself.
STREAM_SEED_STRIDE = 7919
_NO_LIMIT = 2 ** 62


class DataStreams:
    """The per-worker input of a parameter-server run, one distinct stream per dataset."""

    def __init__(self, strategy, dataset_fn, seed):
        with strategy.scope():
            # int64 and created in the strategy's scope: it lives on a parameter server.
            self.counter = tf.Variable(0, dtype=tf.int64, trainable=False,
                                       name="data_streams")
        self._dataset_fn, self._seed = dataset_fn, seed

    def dataset_fn(self):
        """The function every worker runs to build its dataset (traced once)."""
        if not tf.executing_eagerly():
            # tf.data takes a tensor seed, but TF 2.21's seed helper compares (graph seed,
            # op seed) with (0, 0) in Python, which fails for a graph tensor when the graph
            # seed is 0 (train.seed=0). A nonzero seed for this function's graph only.
            tf.random.set_seed(STREAM_SEED_STRIDE)
        stream = tf.raw_ops.ResourceCountUpTo(resource=self.counter.handle, limit=_NO_LIMIT,
                                              T=tf.int64)
        seed = self._seed + STREAM_SEED_STRIDE * (stream + 1)
        streams = tf.data.Dataset.from_tensors(stream).repeat()
        return tf.data.Dataset.zip(self._dataset_fn(None, seed=seed), streams).map(
            lambda batch, stream_id: (*batch, stream_id))

    def iterator(self, coordinator):
        return iter(coordinator.create_per_worker_dataset(self.dataset_fn))


def run(trainer, start):
    """Trains from step `start` to train.steps; returns the metrics of the last step.

    A parameter server that dies raises UnavailableError, which `tools.train` reports.
    """
    train = trainer.config.train
    coordinator = trainer.coordinator
    step_fn = trainer.step_function()
    in_flight = 2 * strategy_lib.num_workers(trainer.strategy)
    steps_per_stream = collections.Counter()
    metrics, done = {}, start
    while done < train.steps:
        # Up to the next checkpoint; then nothing is in flight while it is saved.
        stop = min((done // train.checkpoint_every + 1) * train.checkpoint_every,
                   train.steps)
        pending = collections.deque()
        for scheduled in range(done + 1, stop + 1):
            pending.append((scheduled, coordinator.schedule(
                step_fn, args=(trainer.iterator,
                               tf.constant(trainer.wants_images(scheduled))))))
            if len(pending) > in_flight:
                metrics = _finish(trainer, *pending.popleft(), steps_per_stream)
        coordinator.join()
        while pending:
            metrics = _finish(trainer, *pending.popleft(), steps_per_stream)
        done = stop
        trainer.save(int(trainer.step.numpy()))
    logging.info("steps run by each data stream (one per worker, a new one after a "
                 "worker's recovery): %s", dict(sorted(steps_per_stream.items())))
    return dict(metrics, steps_per_stream=dict(steps_per_stream))


def _finish(trainer, done, remote, steps_per_stream):
    outputs = remote.fetch()
    steps_per_stream[int(outputs.pop("stream"))] += 1
    return trainer.after_step(done, outputs)
