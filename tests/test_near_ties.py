"""The near-tie comparison of tests/near_ties.py: what it lets through and what it refuses."""
import numpy as np
import pytest

import near_ties


def ramp():
    """Logits [1, 9, 3] of a row crossing from class 0 to class 1 (an exact tie at pixel
    4), class 2 far below everywhere."""
    x = np.arange(9, dtype=np.float64)
    return np.stack([4.0 - x, x - 4.0, np.full(9, -50.0)], axis=-1)[None]


def test_labels_equal_except_at_near_ties_pass():
    logits = ramp()
    labels = np.argmax(logits, -1)
    assert near_ties.assert_labels_match(logits, labels, 0.5, max_near_ties=1) == (1, 0)
    labels[0, 4] = 1  # the tie rounded the other way
    assert near_ties.assert_labels_match(logits, labels, 0.5, max_near_ties=1) == (1, 1)


def test_a_difference_outside_the_ties_fails():
    labels = np.argmax(ramp(), -1)
    labels[0, 3] = 1  # gap 2 > bound
    with pytest.raises(AssertionError, match="1 pixels differ where .* exceeds the bound"):
        near_ties.assert_labels_match(ramp(), labels, 0.5, max_near_ties=1)


def test_a_far_class_at_a_tie_fails():
    labels = np.argmax(ramp(), -1)
    labels[0, 4] = 2  # a tie between 0 and 1 is no excuse for class 2
    with pytest.raises(AssertionError, match="below the top, over the bound"):
        near_ties.assert_labels_match(ramp(), labels, 0.5, max_near_ties=1)


def test_more_near_ties_than_the_geometry_allows_fail():
    labels = np.argmax(ramp(), -1)
    # A bound of 2.5 makes pixels 3-5 near-ties (gaps 2, 0, 2): more than the one crossing allows.
    with pytest.raises(AssertionError, match="3 near-tie pixels"):
        near_ties.assert_labels_match(ramp(), labels, 2.5, max_near_ties=1)


def test_edge_crossings_count_row_and_column_changes():
    classes = np.kron([[0, 1], [2, 0]], np.ones((3, 4), int))  # 6 x 8
    assert near_ties.edge_crossings(classes) == 6 * 1 + 8 * 1
    assert near_ties.edge_crossings(np.zeros((4, 4), int)) == 0
