"""Asynchronous training with parameter servers (paper Appendix B, Table 11).

The coordinator (TF_CONFIG task "chief") schedules steps on the workers through a
`ClusterCoordinator`; each worker reads the variables from the parameter servers, computes
its own update on its own batch of `train.batch_size` and applies it there.

Rounds: the coordinator schedules a round of steps (at least ROUND_STEPS_PER_WORKER per
worker, ending on a multiple of `train.log_every`, a checkpoint or the last step), waits for
all of them (`coordinator.join()`), and only then fetches, checks, logs and summarises
their results, then saves when the round ends on a checkpoint: ckpt-N holds exactly the
weights after N updates and step N, and a non-finite loss stops training before anything is
saved. Why fetch only after join (read in TF 2.21's coordinator/cluster_coordinator.py and
values.py): a step's result stays on its worker until the worker's thread in the
coordinator copies it (`Worker._process_closure`: `r.get()` inside the failure handler),
but `RemoteValueImpl._set_values` marks the result ready before that copy. A `fetch()` of
a step still in flight could win that race and copy the result itself, outside the failure
handler: when the worker had died meanwhile, `UnavailableError` (or, if it was already
restarted on its address, another error) escaped to the training loop and stopped the
coordinator. After `join()` every result has been copied by its worker thread, so a fetch
never touches a worker.

A worker that dies: a step whose result was not yet copied is put back and re-run on
another (or the restarted) worker, so its result is never lost, but its update is applied
at least once: if the worker died after applying it, it counts twice. The step counter can
therefore exceed the steps scheduled by at most one per worker death; the log says how
many updates were applied for how many steps.

Data: every dataset the workers create (at the start, and again on a worker that recovers
from a failure) takes the next id from a counter on the parameter servers, atomically
(`ResourceCountUpTo`), and seeds its stream with it: no two streams of one coordinator's
run are alike. The id comes back with each step's results, so the coordinator counts the
steps each stream (worker) ran. The counter is saved in each checkpoint while no step is in
flight, so every stream whose batches reached ckpt-N has an id below the saved count. A
coordinator restarted from ckpt-N hands out ids from that count again: ids the interrupted
run gave to streams created after ckpt-N (workers that recovered after it) repeat, with
their data; no batch whose update ckpt-N holds is drawn twice, as the updates of those
streams were discarded with everything after ckpt-N.
"""
import collections
import time

import tensorflow as tf
from absl import logging

from deeplab_tf.train import strategy as strategy_lib
from deeplab_tf.train import summaries as summaries_lib

# Seed of stream k: train.seed + STREAM_SEED_STRIDE * (k + 1); the default strategy's
# stream keeps train.seed itself.
STREAM_SEED_STRIDE = 7919
_NO_LIMIT = 2 ** 62
# Workers wait for the slowest at the end of a round: about half a step each, so a round
# of 16 steps per worker costs a few percent of throughput.
ROUND_STEPS_PER_WORKER = 16


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


def round_end(done, train, workers):
    """The last step of the round that follows step `done`."""
    end = done + ROUND_STEPS_PER_WORKER * workers
    end = -(-end // train.log_every) * train.log_every  # up to a multiple of log_every
    next_checkpoint = (done // train.checkpoint_every + 1) * train.checkpoint_every
    return min(end, next_checkpoint, train.steps)


class RoundClock:
    """The times the log and summaries give the steps of a round, whose results all arrive
    at its end: the k-th of n steps is put at k/n of the round's wall time."""

    def __init__(self):
        self.now = time.perf_counter()
        self._start, self._steps = self.now, 1

    def start_round(self, steps):
        self._start, self._steps = time.perf_counter(), steps

    def end_round(self):
        self._duration = time.perf_counter() - self._start

    def at(self, k):
        self.now = self._start + self._duration * k / self._steps

    def __call__(self):
        return self.now


def run(trainer, start):
    """Trains from step `start` to train.steps; returns the metrics of the last step.

    A parameter server that dies raises UnavailableError, which `tools.train` reports.
    """
    train = trainer.config.train
    coordinator = trainer.coordinator
    step_fn = trainer.step_function()
    workers = strategy_lib.num_workers(trainer.strategy)
    clock = RoundClock()
    # The log and summaries time the steps by the round clock (replaces the wall clock).
    trainer._progress = summaries_lib.Progress(train.steps, start, train.batch_size, clock)
    steps_per_stream = collections.Counter()
    metrics, done = {}, start
    while done < train.steps:
        stop = round_end(done, train, workers)
        steps = range(done + 1, stop + 1)
        clock.start_round(len(steps))
        results = [coordinator.schedule(step_fn, args=(
            trainer.iterator, tf.constant(trainer.wants_images(scheduled))))
            for scheduled in steps]
        coordinator.join()  # every result is on the coordinator now (docstring)
        clock.end_round()
        in_round = collections.Counter()
        for k, (scheduled, remote) in enumerate(zip(steps, results), 1):
            outputs = remote.fetch()
            in_round[int(outputs.pop("stream"))] += 1
            clock.at(k)
            metrics = trainer.after_step(scheduled, outputs)
        steps_per_stream.update(in_round)
        logging.info("steps %d-%d: steps run by each data stream %s", done + 1, stop,
                     dict(sorted(in_round.items())))
        done = stop
        if done % train.checkpoint_every == 0 or done == train.steps:
            trainer.save(int(trainer.step.numpy()))
    applied = int(trainer.step.numpy())
    logging.info("%d updates applied for the %d steps scheduled from step %d (a step whose "
                 "worker died after its update is re-run: at least once); steps run by "
                 "each data stream (one per worker, a new one after a worker's recovery): "
                 "%s", applied - start, train.steps - start, start,
                 dict(sorted(steps_per_stream.items())))
    return dict(metrics, steps_per_stream=dict(steps_per_stream))
