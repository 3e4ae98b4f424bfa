r"""Ours against torchvision's DeepLabv3 on one machine, alternately, with medians and the ratio.

Each round runs `tools.bench.benchmark` and the peer's anchor script (../shared/bench/
torchvision_anchor.py, in a Python that has torch and torchvision) as separate processes,
swapping which goes first every round, so that drifting load from other work on a shared
machine falls on both alike. Prints every measurement as a JSON line, then a summary line:
medians over rounds, the ratio ours / torchvision (latency for infer, throughput for train),
and the load average before and after (a loaded machine makes all figures slower).
On the GPU machine (JAX, no TensorFlow) the same tool runs with --device=cuda and
--torch_python=python3; docs/benchmarks.md has the figures.

    python -m tools.bench.benchmark_vs_torchvision --torch_python=/work/bench-venv/bin/python \
        --mode=infer --output_stride=16 --batch_size=1 --crop_size=513 --rounds=5
    python -m tools.bench.benchmark_vs_torchvision --torch_python=/work/bench-venv/bin/python \
        --mode=train --batch_size=2 --crop_size=321 --steps=3 --rounds=3

Precision is fp32 on both sides by default: the anchor's own default is bf16 autocast,
which on a CPU without bf16 instructions measures emulation, not the model.
"""
import json
import os
import statistics
import subprocess
import sys

from absl import app
from absl import flags
from tools.bench import cpu

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

flags.DEFINE_string("torch_python", None, "Python with torch and torchvision installed.")
flags.DEFINE_string("anchor", os.path.join(_REPO, "..", "shared", "bench",
                                           "torchvision_anchor.py"),
                    "The peer's benchmark script.")
flags.DEFINE_enum("device", "cpu", ["cpu", "cuda"],
                  "The peer's device; ours runs on the active Keras backend's default device.")
flags.DEFINE_enum("mode", "infer", ["train", "infer"], "What to time.")
flags.DEFINE_enum("precision", "fp32", ["fp32", "bf16"], "Precision of both sides.")
flags.DEFINE_integer("depth", 101, "ResNet depth: 50 or 101.")
flags.DEFINE_integer("output_stride", 16, "Inference output stride (8 or 16); training "
                     "is at 16 on both sides.")
flags.DEFINE_integer("batch_size", 1, "Images per step.")
flags.DEFINE_integer("crop_size", 513, "Square input size.")
flags.DEFINE_integer("steps", 5, "Timed steps per process.")
flags.DEFINE_integer("warmup", 2, "Untimed steps per process.")
flags.DEFINE_integer("rounds", 3, "Alternating rounds (one process of each per round).")
flags.DEFINE_list("ours_flags", [], "Extra flags for tools.bench.benchmark, e.g. --xla.")
flags.DEFINE_integer("threads", 0, "CPU threads for both sides (OMP_NUM_THREADS, "
                     "TF_NUM_INTRAOP_THREADS); 0 leaves each library's default.")
flags.mark_flag_as_required("torch_python")
FLAGS = flags.FLAGS

# Runs the anchor unchanged and adds its process' peak resident host memory (KiB on Linux)
# and, on cuda, its device peaks: the anchor resets torch's peak after the training warm-up
# (so its own peak_mem_gib covers the timed steps only); the wrapper records the peak just
# before that reset (warm-up, cudnn.benchmark's trials included) and the peak at the end
# (inference: the whole run, as the anchor never resets there).
_ANCHOR_WRAPPER = (
    "import json, resource, runpy, sys\n"
    "import torch\n"
    "before_reset = []\n"
    "if torch.cuda.is_available():\n"
    "    _reset = torch.cuda.reset_peak_memory_stats\n"
    "    def _recording_reset(*args, **kwargs):\n"
    "        before_reset.append(torch.cuda.max_memory_allocated() / 2**30)\n"
    "        _reset(*args, **kwargs)\n"
    "    torch.cuda.reset_peak_memory_stats = _recording_reset\n"
    "sys.argv = sys.argv[1:]\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n"
    "out = {'host_peak_rss_gib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}\n"
    "if torch.cuda.is_available():\n"
    "    out['device_peak_at_end_gib'] = torch.cuda.max_memory_allocated() / 2**30\n"
    "    out['device_peak_before_reset_gib'] = before_reset[-1] if before_reset else None\n"
    "print(json.dumps(out))\n")


def _json_lines(command, cwd):
    env = dict(os.environ)
    if FLAGS.threads:
        env.update(OMP_NUM_THREADS=str(FLAGS.threads), MKL_NUM_THREADS=str(FLAGS.threads),
                   TF_NUM_INTRAOP_THREADS=str(FLAGS.threads), TF_NUM_INTEROP_THREADS="1")
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                          check=False)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n"
                           f"{done.stderr[-3000:]}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def ours():
    command = [sys.executable, "-m", "tools.bench.benchmark", f"--mode={FLAGS.mode}",
               f"--depth={FLAGS.depth}", f"--batch_size={FLAGS.batch_size}",
               f"--crop_size={FLAGS.crop_size}", f"--precision={FLAGS.precision}",
               f"--steps={FLAGS.steps}", f"--warmup={FLAGS.warmup}",
               f"--output_stride={FLAGS.output_stride if FLAGS.mode == 'infer' else 16}",
               *FLAGS.ours_flags]
    (result,) = _json_lines(command, _REPO)
    return result


def torchvision():
    anchor = os.path.abspath(FLAGS.anchor)
    if not os.path.exists(anchor):
        raise FileNotFoundError(f"--anchor {anchor} does not exist")
    command = [FLAGS.torch_python, "-c", _ANCHOR_WRAPPER, anchor, "--device", FLAGS.device,
               "--mode", FLAGS.mode, "--precision", FLAGS.precision,
               "--depth", str(FLAGS.depth), "--size", str(FLAGS.crop_size),
               "--steps", str(FLAGS.steps), "--warmup", str(FLAGS.warmup)]
    if FLAGS.mode == "infer":
        command += ["--infer-os", str(FLAGS.output_stride),
                    "--infer-batch", str(FLAGS.batch_size)]
    else:
        command += ["--batch", str(FLAGS.batch_size)]
    result, memory = _json_lines(command, os.path.dirname(anchor))
    return {**result, **memory}


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    # The memory rules only: this process runs no model (and must not claim a GPU).
    from tools.bench import benchmarking
    key = "ms_median" if FLAGS.mode == "infer" else "images_per_s"
    load_before = os.getloadavg()
    figures = {"deeplab_tf": [], "torchvision": []}
    memory = {"deeplab_tf": [], "torchvision": []}
    whole_run = {"deeplab_tf": [], "torchvision": []}
    for round_index in range(FLAGS.rounds):
        order = [("deeplab_tf", ours), ("torchvision", torchvision)]
        for name, measure in order if round_index % 2 == 0 else order[::-1]:
            result = measure()
            figures[name].append(result[key])
            memory[name].append(benchmarking.comparable_memory(name, result))
            whole_run[name].append(benchmarking.whole_run_memory(name, result))
            print(json.dumps({"round": round_index, "load_avg_1min": os.getloadavg()[0],
                              **result}), flush=True)
    medians = {name: statistics.median(values) for name, values in figures.items()}
    best = {name: (min if FLAGS.mode == "infer" else max)(values)
            for name, values in figures.items()}
    print(json.dumps({
        "summary": FLAGS.mode, "figure": key, "rounds": FLAGS.rounds,
        "cpu": cpu.describe(),
        "precision": FLAGS.precision, "batch_size": FLAGS.batch_size,
        "crop_size": FLAGS.crop_size, "ours_flags": FLAGS.ours_flags,
        "device": FLAGS.device, "threads": FLAGS.threads or "default",
        "median": medians, "best": best, "all": figures,
        "peak_memory_gib_median": {name: statistics.median(values)
                                   for name, values in memory.items()},
        "peak_memory_covers": ("timed steps (train) / whole run (infer), device"
                               if FLAGS.device == "cuda" else "host peak RSS per process"),
        "whole_run_device_peak_gib": {name: max((v for v in values if v is not None),
                                                default=None)
                                      for name, values in whole_run.items()},
        "ratio_ours_over_torchvision": medians["deeplab_tf"] / medians["torchvision"],
        "load_avg_before": load_before, "load_avg_after": os.getloadavg(),
        "cpu_count": os.cpu_count()}), flush=True)


if __name__ == "__main__":
    app.run(main)
