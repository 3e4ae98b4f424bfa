"""Shared pytest fixtures; each helper keeps its own clearly named section."""

# ---------------------------------------------------------------------------------------
# Run-wide guard: a skipped (or xfailed) test fails the run. The test extras (jax,
# pycocotools, cityscapesscripts) are imported plainly, so a broken install is an error;
# this catches any skip added later, so a green run always means every test ran and passed.
# ---------------------------------------------------------------------------------------
_NOT_RUN = []


def pytest_runtest_logreport(report):
    if report.skipped:
        _NOT_RUN.append(report.nodeid)


def pytest_collectreport(report):
    if report.skipped:
        _NOT_RUN.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    if _NOT_RUN and exitstatus == 0:
        session.exitstatus = 1


# Seconds per test file in a two-process run (`--durations=0`, 2-core CPU, 2026-11-27);
# a file not listed counts as short. Only the order depends on these figures.
FILE_SECONDS = {
    "test_train_resume.py": 205, "test_cluster_ps.py": 177, "test_benchmark.py": 144,
    "test_demo.py": 128, "test_export_saved_model.py": 115, "test_train.py": 108,
    "test_modeling.py": 106, "test_backends.py": 98, "test_learnability.py": 81,
    "test_train_replicas.py": 53, "test_experiments.py": 50, "test_eval_tools.py": 49,
    "test_data_builders.py": 45, "test_mixed_precision.py": 44, "test_train_fidelity.py": 43,
    "test_predict.py": 50, "test_eval_inference.py": 41, "test_train_roles.py": 38,
    "test_serving.py": 36, "test_checkpoints.py": 34,
    "test_export_tflite.py": 28, "test_train_summaries.py": 26, "test_console.py": 26,
    "test_profile_trace.py": 23,
}


def pytest_collection_modifyitems(items):
    """The longest files first: pytest-xdist hands out whole files (--dist loadfile, with
    --no-loadscope-reorder so that it keeps this order instead of sorting by test count),
    and a long file started last would run alone at the end."""
    items.sort(key=lambda item: -FILE_SECONDS.get(item.path.name, 0))  # stable otherwise


def pytest_terminal_summary(terminalreporter):
    if _NOT_RUN:
        terminalreporter.write_line(
            f"FAILED RUN: {len(_NOT_RUN)} test(s) skipped or xfailed, which this project "
            f"does not allow (tests/conftest.py): {', '.join(_NOT_RUN)}", red=True)


# ---------------------------------------------------------------------------------------
# Data fixtures (deeplab_tf.data): a small generated VOC-layout set, built with TFDS.
# ---------------------------------------------------------------------------------------
import types as _types

import pytest as _pytest


def make_synthetic_voc(root, num_train=16, num_val=6, seed=0):
    """Generates the synthetic VOC-layout set under root/source and builds it into
    root/tfds; returns a namespace (source_dir, data_dir, splits)."""
    from deeplab_tf import data
    from deeplab_tf.data import synthetic
    source_dir, data_dir = str(root / "source"), str(root / "tfds")
    splits = synthetic.generate(source_dir, seed=seed, num_train=num_train, num_val=num_val)
    data.build("synthetic_voc", source_dir, data_dir)
    return _types.SimpleNamespace(source_dir=source_dir, data_dir=data_dir, splits=splits)


@_pytest.fixture(scope="session")
def synthetic_voc(tmp_path_factory):
    """A built `synthetic_voc` (train 16, val 6): pass `.data_dir` as data.data_dir."""
    return make_synthetic_voc(tmp_path_factory.mktemp("synthetic_voc"))


# ---------------------------------------------------------------------------------------
# Training fixtures: the smallest built synthetic set the training tests run on.
# ---------------------------------------------------------------------------------------
@_pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """A built `synthetic_voc` of 12 train / 4 val images, 40-60 px: its TFDS data_dir."""
    from deeplab_tf import data
    from deeplab_tf.data import synthetic
    root = tmp_path_factory.mktemp("synthetic_tiny")
    synthetic.generate(root / "src", seed=0, num_train=12, num_val=4, min_size=40,
                       max_size=60)
    data.build("synthetic_voc", root / "src", root / "tfds")
    return str(root / "tfds")
