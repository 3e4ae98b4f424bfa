"""A parameter-server cluster on 127.0.0.1 whose workers are killed and restarted (issue
22).

    python tests/chaos_ps.py [--runs=10] [--kills=10] [--steps=800] [--seed=0]

1 ps + 2 workers serve (`tools.train`, as in a real cluster) and a coordinator (`--coordinator`
below) trains the tiny model of tests/small_models.py for STEPS steps (checkpoints every 20,
as `train_scripts.py parameter_server_train`). KILLS times, at random moments (a fixed
seed), a random worker is killed with SIGKILL and restarted on its address, as a cluster
manager would; the next kill waits until the restarted worker's new data stream has run
steps. Training does not end before the last restart has run steps either: a worker rejoins
only when the coordinator's recovery finds it back, seconds later, and on a fast CPU the
surviving worker used to finish the last steps first (issue 28: the claim then failed
though nothing was wrong). So the coordinator trains STEPS steps, then goes on 20 steps at
a time (the same data streams, `parameter_server.run`) until every kill has happened and a
stream above those seen before the last kill ran steps, or until MAX_STEPS: a worker that
never rejoins fails the check by that step bound, not by a clock. `check` then reads what
must hold: the coordinator exited 0, every scheduled step was applied and at most one more
per kill, each checkpoint ckpt-N holds step N at its boundary (plus at most the kills so
far) with the data-stream counter above every stream its steps came from, every step's loss
logged once and finite, and each restart's new stream ran steps. Every wait is bounded;
every process is killed at the end. tests/test_cluster_ps.py runs a quick variant (2 kills);
this script runs the full one, RUNS times with seeds SEED, SEED+1, ... and prints the pass
rate. Needs about 1 GiB per TensorFlow process (4 at once).
"""
import argparse
import ast
import json
import math
import os
import pathlib
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "tests", "train_scripts.py")
SERVERS = (("ps", 0), ("worker", 0), ("worker", 1))
# Spare workers loading TensorFlow at any time: two, so that one is ready at each kill.
SPARES = 2
CHECKPOINT_EVERY = 20  # as train_scripts.py parameter_server_train
# Steps the coordinator may add after STEPS while it waits for the last restart to run
# steps (a bound on the work, not a time): the restarted worker rejoins within a few rounds.
EXTRA_STEPS = 1000
ROUND = re.compile(r"steps (\d+)-(\d+): steps run by each data stream (\{[^}]*\})")
STEP = re.compile(r"step (\d+)/(\d+) \(\d+%\) loss (\S+)")


class Cluster:
    """1 ps + 2 workers serving on 127.0.0.1; `start("chief", 0, ...)` adds the chief."""

    def __init__(self, root, data_dir):
        from deeplab_tf.train import strategy as strategy_lib
        self.root, self.data_dir = pathlib.Path(root), data_dir
        self.root.mkdir(parents=True, exist_ok=True)
        self.spec = strategy_lib.local_cluster(workers=2, ps=1, chief=True)
        # An evaluator in TF_CONFIG (none runs) is no task of the training cluster.
        self.spec["evaluator"] = [f"127.0.0.1:{strategy_lib.free_ports(1)[0]}"]
        self.processes, self.logs, self.spares = {}, 0, []
        for task in SERVERS:
            self.start(*task)

    def train_argv(self, workdir, *overrides):
        return ["--experiment=smoke", f"--workdir={workdir}", "--strategy=parameter_server",
                f"--set=data.data_dir={self.data_dir}", "--set=train.log_every=1",
                *[f"--set={o}" for o in overrides]]

    def start(self, task_type, index, argv=None, command=None):
        """Starts a task; servers run the same tools.train command as everyone."""
        from deeplab_tf import cluster as cluster_lib
        from deeplab_tf.train import strategy as strategy_lib
        argv = self.train_argv(self.root / "servers") if argv is None else argv
        self.logs += 1
        log = self.root / f"{task_type}{index}_{self.logs}.log"
        env = {"PYTHONPATH": REPO}
        if task_type in cluster_lib.SERVER_TASKS:
            env.update(strategy_lib.LOCAL_SERVER_THREADS)
        self.processes[(task_type, index)] = strategy_lib.start_task(
            self.spec, task_type, index, list(argv), log, env=env, command=command,
            cwd=REPO)
        return log

    def start_spare(self):
        """A worker process started ahead, TensorFlow loaded: `replace` makes it serve a
        killed worker's address (a restart without the 10-30 s of TensorFlow's import on
        this machine, which would otherwise dominate every kill)."""
        from deeplab_tf.train import strategy as strategy_lib
        self.logs += 1
        log = self.root / f"spare_{self.logs}.log"
        env = dict(os.environ, PYTHONPATH=REPO, **strategy_lib.LOCAL_SERVER_THREADS)
        env.pop("TF_CONFIG", None)
        process = subprocess.Popen([sys.executable, __file__, "--spare"], env=env, cwd=REPO,
                                   stdin=subprocess.PIPE, stdout=open(log, "wb"),
                                   stderr=subprocess.STDOUT)
        self.spares.append((process, log))

    def replace(self, index, timeout):
        """Worker `index` (killed) served again by the spare, on its address."""
        from deeplab_tf.train import strategy as strategy_lib
        process, log = self.spares.pop(0)  # the oldest: the most likely to be ready
        ready = wait_for(lambda: "SPARE READY" in log.read_text(), process, timeout)
        assert ready, f"the spare worker did not start: {log.read_text()[-2000:]}"
        config = strategy_lib.tf_config(self.spec, "worker", index)
        process.stdin.write(config.encode() + b"\n")
        process.stdin.flush()
        self.processes[("worker", index)] = process
        self.start_spare()

    def kill(self, task_type, index):
        process = self.processes.pop((task_type, index))
        process.send_signal(signal.SIGKILL)
        process.wait()

    def close(self):
        for key in list(self.processes):
            self.kill(*key)
        while self.spares:
            process, _ = self.spares.pop()
            process.kill()
            process.wait()


def rounds(text):
    """[(first step, last step, {stream id: steps})] from the coordinator's log."""
    return [(int(a), int(b), {int(k): v for k, v in ast.literal_eval(s).items()})
            for a, b, s in ROUND.findall(text)]


def streams_seen(text):
    return {stream for _, _, counts in rounds(text) for stream in counts}


def wait_for(predicate, process, timeout):
    """True once predicate() holds; False at the timeout or when `process` has exited."""
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def chaos(cluster, workdir, steps, kills, seed, timeout=600):
    """Trains STEPS steps while killing and restarting workers KILLS times; returns what
    `check` needs. The coordinator is killed if still running at the end."""
    rng = random.Random(seed)
    progress = pathlib.Path(workdir).parent / f"{pathlib.Path(workdir).name}_kills.json"
    log = cluster.start("chief", 0, ["--coordinator", cluster.data_dir, str(workdir),
                                     str(steps), str(steps + EXTRA_STEPS), str(kills),
                                     str(progress)], command=[__file__])
    chief = cluster.processes[("chief", 0)]
    history = []  # per kill: (worker, streams seen before it)
    for _ in range(SPARES):
        cluster.start_spare()
    try:
        for _ in range(kills):
            # The previous restart's new stream (any stream, the first time) ran steps.
            before = max(history[-1][1]) if history else -1
            if not wait_for(lambda: any(s > before for s in streams_seen(log.read_text())),
                            chief, timeout):
                break
            time.sleep(rng.uniform(0.0, 1.5))  # a random moment of training
            if chief.poll() is not None:
                break
            worker = rng.randrange(2)
            history.append((worker, streams_seen(log.read_text())))
            # Told before the kill: the coordinator then trains on until this restart ran.
            write_atomically(progress, json.dumps(dict(kills=len(history),
                                                       above=max(history[-1][1]))))
            cluster.kill("worker", worker)
            time.sleep(rng.uniform(0.0, 1.0))
            cluster.replace(worker, timeout)  # back on its address
        code = chief.wait(timeout=timeout)
    finally:
        if ("chief", 0) in cluster.processes:
            if chief.poll() is None:
                chief.kill()
            cluster.processes.pop(("chief", 0)).wait()
    return dict(code=code, log=log.read_text(), history=history, steps=steps, kills=kills,
                workdir=str(workdir))


def check(run):
    """Raises AssertionError naming what failed in a `chaos` run."""
    import tensorflow as tf
    text, history = run["log"], run["history"]
    assert run["code"] == 0, f"coordinator exit code {run['code']}:\n{text[-3000:]}"
    kills = len(history)
    assert kills == run["kills"], f"only {kills} kills before training ended: more steps"
    result = json.loads([l for l in text.splitlines() if l.startswith("RESULT ")][-1][7:])
    # The steps scheduled: STEPS, and more only while the last restart had not run steps.
    steps = result["scheduled"]
    assert run["steps"] <= steps <= run["steps"] + EXTRA_STEPS, (steps, run["steps"])
    assert steps < run["steps"] + EXTRA_STEPS or result["last_restart_ran"], \
        f"the last restarted worker ran no step in {EXTRA_STEPS} steps after STEPS"
    # Every scheduled step applied; a step re-run after its worker died may count twice.
    assert steps <= result["step"] <= steps + kills, (result["step"], steps, kills)
    # Every step's loss logged once, finite.
    logged = {}
    for step, total, loss in STEP.findall(text):
        assert int(step) <= int(total) <= steps and int(step) not in logged, step
        logged[int(step)] = float(loss)
    assert sorted(logged) == list(range(1, steps + 1)), "steps logged"
    assert all(math.isfinite(loss) for loss in logged.values())
    # Checkpoints: ckpt-N holds step N, N at its boundary plus at most the kills so far,
    # and the stream counter above every stream whose steps it holds.
    state = tf.train.get_checkpoint_state(os.path.join(run["workdir"], "checkpoints"))
    paths = list(state.all_model_checkpoint_paths)
    boundaries = sorted({min(b, steps) for b in range(CHECKPOINT_EVERY,
                                                      steps + CHECKPOINT_EVERY,
                                                      CHECKPOINT_EVERY)})[-len(paths):]
    found = rounds(text)
    for path, boundary in zip(paths, boundaries):
        number = int(path.rsplit("-", 1)[1])
        assert stored(path, "step") == number
        assert 0 <= number - boundary <= kills, (path, boundary)
        counter = stored(path, "data_streams")
        used = {s for _, last, counts in found if last <= boundary for s in counts}
        assert max(used) < counter, (path, used, counter)
    # Each restart's new stream ran steps: a stream id above all ids seen before the kill
    # ran steps after it (ids come from one counter in order of the datasets' creation).
    per_stream = {int(k): v for k, v in result["steps_per_stream"].items()}
    for worker, before in history:
        assert any(s > max(before) and n > 0 for s, n in per_stream.items()), \
            (worker, before)
    assert len(per_stream) >= 2 + kills and min(per_stream.values()) > 0, per_stream
    return dict(final_step=result["step"], streams=len(per_stream))


def stored(prefix, name):
    import tensorflow as tf
    return int(tf.train.load_variable(prefix, f"{name}/.ATTRIBUTES/VARIABLE_VALUE"))


def build_data(root):
    from deeplab_tf import data, synthetic
    synthetic.generate(root / "src", seed=0, num_train=12, num_val=4, min_size=40,
                       max_size=60)
    data.build("synthetic_voc", root / "src", root / "tfds")
    return str(root / "tfds")


def write_atomically(path, text):
    temporary = pathlib.Path(f"{path}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def coordinator(data_dir, workdir, steps, max_steps, kills, progress):
    """The chief (`chaos`): trains the tiny model STEPS steps, then CHECKPOINT_EVERY more
    at a time on the same data streams until the harness has made all KILLS kills (the
    PROGRESS file) and a stream above those seen before the last one ran steps, or until
    MAX_STEPS; prints RESULT."""
    import collections
    sys.path.insert(0, REPO)
    from absl import logging
    from deeplab_tf import config as config_lib
    from deeplab_tf.train import loop, parameter_server, strategy as strategy_lib
    logging.set_verbosity(logging.INFO)
    config = config_lib.load_experiment("smoke", [
        f"data.data_dir={data_dir}", "model.builder=tests.small_models:tiny",
        f"train.steps={steps}", f"train.checkpoint_every={CHECKPOINT_EVERY}",
        "train.batch_size=4", "train.log_every=1"])
    trainer = loop.Trainer(config, workdir, strategy_lib.make_strategy("parameter_server"))
    per_stream = collections.Counter(trainer.run()["steps_per_stream"])

    def last_restart_ran():
        told = json.loads(pathlib.Path(progress).read_text()) if os.path.exists(
            progress) else dict(kills=0, above=-1)
        return told["kills"] == kills and any(
            s > told["above"] and n > 0 for s, n in per_stream.items())

    while not last_restart_ran() and config.train.steps < max_steps:
        start = config.train.steps
        config.train.steps = min(start + CHECKPOINT_EVERY, max_steps)
        per_stream.update(parameter_server.run(trainer, start)["steps_per_stream"])
    print("RESULT " + json.dumps(dict(
        step=int(trainer.step.numpy()), scheduled=config.train.steps,
        last_restart_ran=last_restart_ran(), steps_per_stream=dict(per_stream))), flush=True)


def spare():
    """The spare worker process (`Cluster.start_spare`): serves the TF_CONFIG it is sent."""
    sys.path.insert(0, REPO)
    from deeplab_tf.train import strategy as strategy_lib
    import tensorflow  # noqa: F401  (loaded before the worker it replaces is killed)
    print("SPARE READY", flush=True)
    os.environ["TF_CONFIG"] = sys.stdin.readline()
    strategy_lib.run_server()  # what tools.train runs for a worker task


def main():
    if sys.argv[1:] == ["--spare"]:
        return spare()
    if sys.argv[1:2] == ["--coordinator"]:
        data_dir, workdir, steps, max_steps, kills, progress = sys.argv[2:8]
        return coordinator(data_dir, workdir, int(steps), int(max_steps), int(kills),
                           progress)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data_dir", default=None,
                        help="a built synthetic_voc (made if unset)")
    args = parser.parse_args()
    sys.path.insert(0, REPO)
    root = pathlib.Path(tempfile.mkdtemp(prefix="chaos_ps_"))
    data_dir = args.data_dir or build_data(root / "data")
    passed = 0
    for run_index in range(args.runs):
        seed = args.seed + run_index
        cluster = Cluster(root / f"run{run_index}", data_dir)
        started = time.time()
        try:
            run = chaos(cluster, cluster.root / "workdir", args.steps, args.kills, seed)
            found = check(run)
            passed += 1
            print(f"run {run_index} seed {seed}: PASS in {time.time() - started:.0f} s "
                  f"{found}",
                  flush=True)
        except Exception:  # one failed run is a result, not the end of the series
            print(f"run {run_index} seed {seed}: FAIL in {time.time() - started:.0f} s "
                  f"(logs in {cluster.root})\n{traceback.format_exc()[-2000:]}", flush=True)
        finally:
            cluster.close()
    print(f"passed {passed}/{args.runs} (kills {args.kills}, steps {args.steps})",
          flush=True)
    return 0 if passed == args.runs else 1


if __name__ == "__main__":
    sys.exit(main())
