r"""Device time per kernel family and the busiest kernels of a profiler trace (.xplane.pb).

Reads the trace that tools/bench/profile_step.py writes (on any machine with TensorFlow, whose
protobuf definitions of XSpace it uses) and prints, per device plane, the time of every
timeline line and, for the lines that hold kernels, time by family (convolution, matrix
product, reduction, elementwise fusion, copy) and the --top kernels.

    python -m tools.bench.summarize_trace --trace=/tmp/train.xplane.pb --steps=3
"""
import collections
import json
import re

from absl import app
from absl import flags

from deeplab_tf import console

flags.DEFINE_string("trace", None, "An .xplane.pb file.")
flags.DEFINE_integer("steps", 1, "Steps in the trace: times are divided by it.")
flags.DEFINE_integer("top", 25, "Kernels listed per plane.")
flags.DEFINE_string("plane", "/device:GPU", "Planes whose name starts with this.")
flags.mark_flag_as_required("trace")
FLAGS = flags.FLAGS

# First match wins: cuDNN/cutlass convolutions, then matrix products (nvjet: cuBLAS on
# Hopper), then XLA's fusions.
FAMILIES = (
    ("convolution", r"conv|xmma|implicit_gemm|fprop|dgrad|wgrad|cudnn|winograd"),
    ("matrix product", r"gemm|cutlass|matmul|dot|triton|nvjet"),
    ("reduction", r"reduce|reduction"),
    ("copy/transpose", r"copy|memcpy|memset|transpose"),
    ("elementwise fusion", r"fusion|loop|elementwise|kernel"),
)


def family(name):
    lowered = name.lower()
    for label, pattern in FAMILIES:
        if re.search(pattern, lowered):
            return label
    return "other"


def summarize(space, plane_prefix, steps, top):
    """{plane: {"lines": {line: ms}, "families": {family: ms}, "top": [(kernel, ms, n)]}}."""
    report = {}
    for plane in space.planes:
        if not plane.name.startswith(plane_prefix):
            continue
        names = {key: (meta.display_name or meta.name)
                 for key, meta in plane.event_metadata.items()}
        lines, families = {}, collections.Counter()
        kernels, counts = collections.Counter(), collections.Counter()
        for line in plane.lines:
            total = sum(event.duration_ps for event in line.events) / 1e9 / steps
            lines[line.display_name or line.name] = round(total, 3)
            # Kernel streams; "XLA Ops" / "XLA Modules" lines repeat the same time by op.
            if not (line.name.startswith("Stream") or "Stream" in line.display_name):
                continue
            for event in line.events:
                name = names.get(event.metadata_id, str(event.metadata_id))
                milliseconds = event.duration_ps / 1e9 / steps
                families[family(name)] += milliseconds
                kernels[name] += milliseconds
                counts[name] += 1
        report[plane.name] = {
            "lines_ms": lines,
            "families_ms": {k: round(v, 3) for k, v in families.most_common()},
            "top_kernels_ms": [(name[:120], round(ms, 3), counts[name] // steps)
                               for name, ms in kernels.most_common(top)],
        }
    return report


def summarize_file(path, plane_prefix, steps, top):
    """`summarize` of the trace file at `path`; ValueError naming the file and the planes it
    holds where none starts with `plane_prefix`."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2
    space = xplane_pb2.XSpace()
    with open(path, "rb") as f:
        space.ParseFromString(f.read())
    report = summarize(space, plane_prefix, steps, top)
    if not report:
        raise ValueError(f"no plane starting with {plane_prefix!r} in {path}; planes: "
                         f"{[plane.name for plane in space.planes]}")
    return report


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    report = summarize_file(FLAGS.trace, FLAGS.plane, FLAGS.steps, FLAGS.top)
    for plane, figures in report.items():
        print(f"== {plane} (ms per step)")
        print(json.dumps({"lines_ms": figures["lines_ms"],
                          "families_ms": figures["families_ms"]}, indent=1))
        for name, milliseconds, count in figures["top_kernels_ms"]:
            print(f"{milliseconds:9.3f} ms  x{count:<4d} {name}")


if __name__ == "__main__":
    console.run(main)
