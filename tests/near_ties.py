"""Comparing two code paths' labels exactly, except at the reference's argmax near-ties.

Two correct implementations of one model (Keras and a .tflite file, one CPU's kernels and
another's) compute the same logits up to rounding. Where the reference's top two logits are
further apart than the rounding can move them (`bound`), the arg max cannot change: the
labels must be equal there, on every CPU. Where they are closer (a near-tie), either class
is a correct answer and the other path may round either way. So instead of "labels agree
on >= 99% of pixels" (a share measured on one CPU: another CPU's kernels round some ties
the other way and fall below it), `assert_labels_match` asserts

  1. equality at every pixel whose reference top-2 gap exceeds `bound`;
  2. at a pixel that differs, the other path's class is itself within `bound` of the
     reference's top logit (a near-tie between those two classes, not any class);
  3. the near-ties themselves are few: at most `max_near_ties` pixels of the reference have
     a gap <= bound (the caller derives it from the input's geometry, `edge_crossings`), so
     a wide bound cannot excuse a wide disagreement.

Bounds (why each): a bound is the most the format's rounding can move a top-2 gap, two
logits each off by at most the stated error. `EPS` is each dtype's unit roundoff.
"""
import numpy as np

# Unit roundoff (half the distance from 1 to the next number) of each arithmetic.
EPS = {"float32": 2.0 ** -24, "float16": 2.0 ** -11}


def top2_gap(logits):
    """(arg max, top1 - top2) of logits [..., C] (probabilities work the same way, on their
    own scale)."""
    logits = np.asarray(logits, np.float64)
    ordered = np.sort(logits, axis=-1)
    return np.argmax(logits, axis=-1), ordered[..., -1] - ordered[..., -2]


def assert_labels_match(reference_logits, labels, bound, max_near_ties):
    """Asserts 1-3 of the module docstring; returns (near-tie pixels, differing pixels)."""
    reference_logits = np.asarray(reference_logits, np.float64)
    labels = np.asarray(labels)
    assert labels.shape == reference_logits.shape[:-1], (labels.shape, reference_logits.shape)
    expected, gap = top2_gap(reference_logits)
    decided = gap > bound
    wrong = decided & (labels != expected)
    assert not wrong.any(), (
        f"{int(wrong.sum())} pixels differ where the reference's top-2 gap exceeds the "
        f"bound {bound:.3g} (smallest such gap {gap[wrong].min():.3g}), first at "
        f"{tuple(int(i) for i in np.argwhere(wrong)[0])}")
    differ = labels != expected
    chosen = np.take_along_axis(reference_logits, labels[..., None].astype(np.int64),
                                axis=-1)[..., 0]
    deficit = reference_logits.max(axis=-1) - chosen
    assert np.all(deficit[differ] <= bound), (
        f"a differing pixel's class is {deficit[differ].max():.3g} below the top, over the "
        f"bound {bound:.3g}")
    near = int((~decided).sum())
    assert near <= max_near_ties, (
        f"{near} near-tie pixels (gap <= {bound:.3g}) in the reference, more than the "
        f"{max_near_ties} the input's geometry allows")
    return near, int(differ.sum())


def edge_crossings(classes):
    """How many times the rows and columns of a class map [H, W] cross from one class to
    another: a label ramps from one class to the next across each crossing, so it holds one
    near-tie per crossing, more only where the bound spans more than one pixel of the ramp."""
    classes = np.asarray(classes)
    return int(np.sum(classes[:, 1:] != classes[:, :-1]) +
               np.sum(classes[1:] != classes[:-1]))
