"""Shared pytest fixtures; each helper keeps its own clearly named section."""
import os as _os

# ---------------------------------------------------------------------------------------
# Threads: two pytest-xdist processes share two cores with the TensorFlow processes their
# tests start, so each TensorFlow gets one intra-op thread instead of one per core (set
# before any test imports TensorFlow; the subprocesses inherit it; a value already in the
# environment wins). Three smoke trainings at once on 2 cores: 97.8 s -> 86.0 s.
# ---------------------------------------------------------------------------------------
_os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")

# ---------------------------------------------------------------------------------------
# The repository on sys.path however pytest is started, so that `model.builder` strings
# such as "tests.small_models:tiny" import in this process as they do in the tools.
# ---------------------------------------------------------------------------------------
import sys as _sys

_REPO = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if _REPO not in _sys.path:
    _sys.path.insert(0, _REPO)

# ---------------------------------------------------------------------------------------
# Order: pytest-xdist hands out whole files (--dist loadfile) in collection order
# (setup.cfg: --no-loadscope-reorder). Files with a `slow` test go first, then the others by
# their number of tests, as xdist itself would order them: the long poles start early and
# short files fill in at the end. (xdist's own order, by number of tests alone, put the
# one-test demo and learnability files last: one process ran them for 2.5 minutes while
# the other had finished.)
# ---------------------------------------------------------------------------------------
def pytest_collection_modifyitems(config, items):
    per_file, slow = {}, set()
    for item in items:
        per_file[item.path] = per_file.get(item.path, 0) + 1
        if item.get_closest_marker("slow"):
            slow.add(item.path)
    items.sort(key=lambda item: (item.path not in slow, -per_file[item.path]))


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
    from deeplab_tf import synthetic
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
    from deeplab_tf import synthetic
    root = tmp_path_factory.mktemp("synthetic_tiny")
    synthetic.generate(root / "src", seed=0, num_train=12, num_val=4, min_size=40,
                       max_size=60)
    data.build("synthetic_voc", root / "src", root / "tfds")
    return str(root / "tfds")
