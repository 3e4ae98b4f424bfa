"""tools.bench.profile_step writes a trace; tools.bench.summarize_trace adds up its kernels
by family."""
import os
import subprocess
import sys

import pytest
from tensorflow.tsl.profiler.protobuf import xplane_pb2

from tools.bench import summarize_trace

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _space():
    """A GPU plane with one kernel stream and one 'XLA Ops' line, durations in ps."""
    space = xplane_pb2.XSpace()
    plane = space.planes.add(name="/device:GPU:0")
    kernels = {1: "sm90_xmma_fprop_implicit_gemm_bf16", 2: "input_reduce_fusion_3",
               3: "loop_add_fusion", 4: "nvjet_sm90_tst_128x272", 5: "memcpy128"}
    for key, name in kernels.items():
        plane.event_metadata[key].id = key
        plane.event_metadata[key].name = name
    stream = plane.lines.add(name="Stream #14(Compute)")
    # Two steps: each kernel runs once per step, 1, 2, 3, 4 and 5 ms.
    for _ in range(2):
        for key in kernels:
            stream.events.add(metadata_id=key, duration_ps=key * 10**9)
    ops_line = plane.lines.add(name="XLA Ops")
    ops_line.events.add(metadata_id=1, duration_ps=7 * 10**9)
    space.planes.add(name="/host:CPU").lines.add(name="python")
    return space


def test_family_totals_per_step_equal_the_kernels_durations():
    report = summarize_trace.summarize(_space(), "/device:GPU", steps=2, top=3)
    assert list(report) == ["/device:GPU:0"]
    figures = report["/device:GPU:0"]
    assert figures["families_ms"] == {"convolution": 1.0, "reduction": 2.0,
                                      "elementwise fusion": 3.0, "matrix product": 4.0,
                                      "copy/transpose": 5.0}
    # Line totals count every event; only stream lines feed the families.
    assert figures["lines_ms"] == {"Stream #14(Compute)": 15.0, "XLA Ops": 3.5}
    assert figures["top_kernels_ms"] == [("memcpy128", 5.0, 1),
                                         ("nvjet_sm90_tst_128x272", 4.0, 1),
                                         ("loop_add_fusion", 3.0, 1)]


def test_profile_step_writes_a_trace_that_summarize_reads(tmp_path):
    trace = tmp_path / "infer.xplane.pb"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run(
        [sys.executable, "-m", "tools.bench.profile_step", "--mode=infer", "--depth=50",
         "--batch_size=1", "--crop_size=33", "--precision=fp32", "--warmup=1", "--steps=1",
         f"--output={trace}"], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert trace.stat().st_size > 0
    report = summarize_trace.summarize_file(str(trace), "/host:CPU", steps=1, top=5)
    assert report and all(figures["lines_ms"] for figures in report.values())
    # No GPU plane in a CPU trace: a clear error that names the file and lists the planes
    # there are (tools.bench.summarize_trace prints it as its one error line).
    with pytest.raises(ValueError, match=r"no plane starting with '/device:GPU' in .*"
                                         r"infer\.xplane\.pb; planes: \[.*'/host:CPU'"):
        summarize_trace.summarize_file(str(trace), "/device:GPU", steps=1, top=5)
