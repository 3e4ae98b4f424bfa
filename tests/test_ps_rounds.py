"""The parameter-server loop's rounds (issue 22), in process with a recording coordinator:
no result is fetched before the coordinator has joined its round. A fetch of a step still
in flight could copy its result from a worker that had died meanwhile, outside TF's failure
handler, and stop the coordinator (deeplab_tf/train/parameter_server.py's docstring);
tests/test_cluster_ps.py kills real workers."""
import types

from deeplab_tf import config as config_lib
from deeplab_tf.train import parameter_server


class Remote:
    def __init__(self, coordinator, number):
        self.coordinator, self.number, self.joined = coordinator, number, False

    def fetch(self):
        self.coordinator.events.append(("fetch", self.number, self.joined))
        return dict(stream=self.number % 2, cross_entropy=1.0)


class Coordinator:
    """Records schedule / join / fetch; `join` applies the round's updates (one each)."""

    def __init__(self, step):
        self.step, self.events, self.in_flight = step, [], []

    def schedule(self, function, args):
        remote = Remote(self, len([e for e in self.events if e[0] == "schedule"]) + 1)
        self.events.append(("schedule", remote.number))
        self.in_flight.append(remote)
        return remote

    def join(self):
        self.events.append(("join",))
        self.step.value += len(self.in_flight)
        for remote in self.in_flight:
            remote.joined = True
        self.in_flight = []


class Step:
    value = 0

    def numpy(self):
        return self.value


def run_rounds(steps, checkpoint_every, log_every):
    train = config_lib.TrainConfig(steps=steps, checkpoint_every=checkpoint_every,
                                   log_every=log_every, batch_size=2)
    step = Step()
    done, saved = [], []
    trainer = types.SimpleNamespace(
        config=types.SimpleNamespace(train=train), coordinator=Coordinator(step),
        step_function=lambda: None, iterator=None, wants_images=lambda s: False,
        strategy=types.SimpleNamespace(cluster_resolver=None, extended=None), step=step,
        after_step=lambda d, outputs: done.append(d) or {}, save=saved.append)
    results = parameter_server.run(trainer, 0)
    return trainer.coordinator.events, done, saved, results


def test_results_are_fetched_only_after_their_round_is_joined():
    events, done, saved, results = run_rounds(steps=50, checkpoint_every=20, log_every=5)
    fetches = [e for e in events if e[0] == "fetch"]
    assert [number for _, number, _ in fetches] == list(range(1, 51))
    assert all(joined for _, _, joined in fetches)
    # One device worker: rounds of 16 steps up to a multiple of log_every, cut at each
    # checkpoint: 1-20 (16 -> 20), 21-40, 41-50 (the last step).
    joins = [i for i, e in enumerate(events) if e[0] == "join"]
    assert len(joins) == 3
    assert [e[1] for e in events[:joins[0]]] == list(range(1, 21))
    assert done == list(range(1, 51)) and saved == [20, 40, 50]
    assert results["steps_per_stream"] == {0: 25, 1: 25}


def test_rounds_end_on_log_points_checkpoints_and_the_last_step():
    train = config_lib.TrainConfig(steps=1000, checkpoint_every=100, log_every=10)
    assert parameter_server.round_end(0, train, workers=4) == 70  # 64 -> 70
    assert parameter_server.round_end(70, train, workers=4) == 100  # the checkpoint
    assert parameter_server.round_end(990, train, workers=1) == 1000
    train.log_every = 7
    assert parameter_server.round_end(0, train, workers=1) == 21
