"""Tools that measure the project rather than use it: speed, memory, traces, numerics.

`python -m tools.bench.NAME --help`; docs/benchmarks.md has what each measured and how.
`benchmarking.py` holds the measuring code that `benchmark`, `benchmark_vs_torchvision` and
`profile_step` share (and the tests call).
"""
