r"""Every deployable format against torchvision on this CPU, alternately, in one call.

Builds a DeepLabv3 with random weights (speed only; R-101, OS 16, 513x513 by default),
exports it once into --export_dir (kept and reused: a SavedModel, TFLite float32 /
float16 / int8 and ONNX), then runs rounds: in each, one process per format loads its
file, runs --warmup untimed and --steps timed images (batch 1), and reports the median
latency and its peak resident memory; torchvision's DeepLabv3 (the peer's anchor, fp32,
`tools.bench.benchmark_vs_torchvision`'s runner) is one more process. The order rotates every
round so that drifting load from other work on a shared machine falls on all alike.
Prints one JSON line per measurement and a summary: medians, the ratio to torchvision,
the file sizes, the peak memory and the load average.

    python -m tools.bench.benchmark_deploy --torch_python=/work/venv-torch/bin/python \
        --export_dir=/tmp/deploy_bench --rounds=3 --threads=2

`--rounds=0` only writes the files, so that the slow conversions (minutes each for the
R-101, about 6 GB of memory for float16) can run while the machine is busy and the timed
rounds later on a quiet one.

int8 is calibrated on --num_representative random images here (the weights are random
too): the figure is the speed of full-integer kernels, not an accuracy.
"""
import json
import os
import resource
import statistics
import subprocess
import sys
import time

from absl import app, flags

from tools.bench import cpu
from tools.bench import benchmark_vs_torchvision as vs_torch  # its flags: torch_python, depth, ...

flags.DEFINE_string("export_dir", "/tmp/deeplab_deploy_bench", "Where the files are "
                    "written once and reused.")
flags.DEFINE_list("formats", ["saved_model", "tflite", "tflite_float16", "tflite_int8",
                              "onnx"], "Formats to time.")
flags.DEFINE_integer("num_representative", 8, "int8 calibration images (random).")
flags.DEFINE_string("worker", None, "Internal: time one format (FORMAT:PATH) and exit.")
FLAGS = flags.FLAGS

FILES = {"saved_model": "saved_model", "tflite": "model.tflite",
         "tflite_float16": "model_float16.tflite", "tflite_int8": "model_int8.tflite",
         "onnx": "model.onnx"}


def export_all():
    """Writes the missing files of FLAGS.formats; returns {format: path}."""
    import numpy as np
    from tools.bench import benchmarking
    from deeplab_tf.export import onnx, saved_model, tflite
    paths = {f: os.path.join(FLAGS.export_dir, FILES[f]) for f in FLAGS.formats}
    missing = [f for f, p in paths.items() if not os.path.exists(p)]
    if not missing:
        return paths
    os.makedirs(FLAGS.export_dir, exist_ok=True)
    size = (FLAGS.crop_size, FLAGS.crop_size)
    model = benchmarking.build_model(FLAGS.depth, FLAGS.output_stride, FLAGS.crop_size)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, size + (3,), dtype=np.uint8)
              for _ in range(FLAGS.num_representative)]
    for name in missing:
        start = time.monotonic()
        if name == "saved_model":
            saved_model.export_saved_model(model, paths[name], crop_size=size,
                                           warmup_size=None)
        elif name == "onnx":
            onnx.convert_onnx(model, paths[name], size, size)
        else:
            quantize = name.partition("_")[2] or "none"
            tflite.convert_tflite(model, paths[name], size, size, quantize, images)
        print(json.dumps({"exported": name, "seconds": round(time.monotonic() - start, 1)}),
              flush=True)
    return paths


def work(spec):
    """The worker: load one file, time it, print one JSON line."""
    import numpy as np
    name, path = spec.split(":", 1)
    image = np.random.default_rng(1).integers(0, 256, (FLAGS.crop_size, FLAGS.crop_size, 3),
                                              dtype=np.uint8)
    start = time.monotonic()
    if name == "saved_model":
        import tensorflow as tf
        serve = tf.saved_model.load(path).signatures["serve_images"]
        images = tf.constant(image[None])
        run = lambda: serve(images=images)["labels"].numpy()
    else:
        from deeplab_tf.export import runner
        deployed = runner.load(path, FLAGS.threads or None)
        run = lambda: deployed.labels(image)
    load_s = time.monotonic() - start
    for _ in range(FLAGS.warmup):
        run()
    times = []
    for _ in range(FLAGS.steps):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    print(json.dumps({"impl": name, "ms_median": 1e3 * statistics.median(times),
                      "ms_min": 1e3 * min(times), "load_s": load_s,
                      "host_peak_rss_gib": peak_rss_gib()}), flush=True)


def peak_rss_gib():
    """This process' own peak resident memory: VmHWM, which starts afresh at exec
    (ru_maxrss keeps the forking parent's peak across execve on Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def measure(name, path):
    env = dict(os.environ)
    if FLAGS.threads:
        env.update(OMP_NUM_THREADS=str(FLAGS.threads), TF_NUM_INTRAOP_THREADS=str(
            FLAGS.threads), TF_NUM_INTEROP_THREADS="1")
    command = [sys.executable, "-m", "tools.bench.benchmark_deploy", f"--worker={name}:{path}",
               f"--torch_python={FLAGS.torch_python}", f"--crop_size={FLAGS.crop_size}",
               f"--steps={FLAGS.steps}", f"--warmup={FLAGS.warmup}",
               f"--threads={FLAGS.threads}"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False,
                          cwd=vs_torch._REPO)  # pylint: disable=protected-access
    if done.returncode:
        raise RuntimeError(f"{name} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.splitlines()[-1])


# The precision each path's multiply-adds run at (float16 TFLite computes in float32 on CPUs).
PRECISION = {"saved_model": "fp32", "tflite": "fp32", "tflite_float16": "fp32",
             "tflite_int8": "int8", "onnx": "fp32", "torchvision": "fp32"}


def share_of_peak(medians, machine):
    """{path: achieved / physical limit at its precision}: how close to the CPU's limit."""
    from tools.bench import benchmarking
    model = benchmarking.build_model(FLAGS.depth, FLAGS.output_stride, FLAGS.crop_size)
    gflops = benchmarking.conv_flops_per_image(model) / 1e9
    return {name: cpu.share_of_peak(gflops, ms / 1e3,
                                    machine["peak_gops"].get(PRECISION.get(name, "fp32")))
            for name, ms in medians.items()}


def size_mb(path):
    if os.path.isfile(path):
        return os.path.getsize(path) / 1e6
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, names in os.walk(path)
               for f in names) / 1e6


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if FLAGS.worker:
        work(FLAGS.worker)
        return
    unknown = set(FLAGS.formats) - set(FILES)
    if unknown:
        raise app.UsageError(f"unknown formats {sorted(unknown)}; known: {sorted(FILES)}")
    FLAGS.mode, FLAGS.precision, FLAGS.batch_size = "infer", "fp32", 1
    paths = export_all()
    if not FLAGS.rounds:  # --rounds=0: write the files only (e.g. while the machine is busy)
        return
    load_before = os.getloadavg()
    jobs = [(name, lambda n=name: measure(n, paths[n])) for name in FLAGS.formats]
    jobs.append(("torchvision", vs_torch.torchvision))
    figures = {name: [] for name, _ in jobs}
    memory = {name: [] for name, _ in jobs}
    for round_index in range(FLAGS.rounds):
        shift = round_index % len(jobs)
        for name, job in jobs[shift:] + jobs[:shift]:
            result = job()
            figures[name].append(result["ms_median"])
            memory[name].append(result.get("host_peak_rss_gib"))
            print(json.dumps({"round": round_index, "load_avg_1min": os.getloadavg()[0],
                              **result}), flush=True)
    medians = {name: statistics.median(values) for name, values in figures.items()}
    machine = cpu.describe()
    print(json.dumps({
        "summary": "deploy", "cpu": machine,
        "share_of_peak": share_of_peak(medians, machine), "depth": FLAGS.depth, "output_stride": FLAGS.output_stride,
        "size": FLAGS.crop_size, "batch": 1, "threads": FLAGS.threads or "default",
        "rounds": FLAGS.rounds, "steps": FLAGS.steps, "ms_median": medians,
        "ratio_to_torchvision": {n: m / medians["torchvision"] for n, m in medians.items()},
        "size_mb": {n: size_mb(p) for n, p in paths.items()},
        "peak_rss_gib_median": {n: statistics.median(v) for n, v in memory.items()},
        "all_ms": figures, "load_avg_before": load_before, "load_avg_after": os.getloadavg(),
        "cpu_count": os.cpu_count()}), flush=True)


if __name__ == "__main__":
    app.run(main)
