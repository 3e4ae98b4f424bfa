"""Figure 4: valid weights of an atrous 3x3 filter, against independent counts."""
import collections
import csv
import subprocess
import sys

import numpy as np
import pytest
from scipy import signal

from deeplab_tf import valid_weights


def brute_force_fractions(size, rate):
    """{valid weights: share of positions}, looping over positions and the 9 taps."""
    tally = collections.Counter()
    for i in range(size):
        for j in range(size):
            tally[sum(0 <= i + rate * a < size and 0 <= j + rate * b < size
                      for a in (-1, 0, 1) for b in (-1, 0, 1))] += 1
    return {count: n / size**2 for count, n in tally.items()}


def convolved_counts(shape, rate, kernel_size):
    """Valid weights per position: a ones-mask convolved with an atrous ones-kernel."""
    kernel = np.zeros(((kernel_size - 1) * rate + 1,) * 2)
    kernel[::rate, ::rate] = 1
    # "same" centres the kernel on each output position, zeros outside: the padding.
    return np.rint(signal.fftconvolve(np.ones(shape), kernel, mode="same")).astype(int)


@pytest.mark.parametrize("rate", [1, 2, 7, 12, 24, 32, 33, 36, 64, 65, 100])
def test_fractions_match_a_brute_force_count(rate):
    counts, fractions = valid_weights.valid_weight_fractions(65, [rate])
    expected = brute_force_fractions(65, rate)
    got = {int(c): f for c, f in zip(counts, fractions[0]) if f > 0}
    assert got.keys() == expected.keys()
    for count, share in expected.items():
        assert got[count] == pytest.approx(share, abs=1e-12), count


@pytest.mark.parametrize("shape,kernel_size", [((65, 65), 3), ((33, 50), 3), ((20, 31), 5)])
def test_counts_match_an_atrous_convolution_of_ones(shape, kernel_size):
    rates = np.arange(1, 60)
    counts = valid_weights.valid_weight_counts(shape, rates, kernel_size)
    assert counts.shape == (len(rates),) + shape
    for rate, per_position in zip(rates, counts):
        np.testing.assert_array_equal(per_position,
                                      convolved_counts(shape, rate, kernel_size),
                                      err_msg=f"rate {rate}")


def test_figure4_endpoints():
    rates = np.arange(1, 81)
    counts, fractions = valid_weights.valid_weight_fractions(65, rates)
    # A square map with one rate on both axes never gives 3 (= 3 taps x 1 tap).
    assert counts.tolist() == [1, 2, 4, 6, 9]
    np.testing.assert_allclose(fractions.sum(axis=1), 1.0)
    share = {int(c): fractions[:, i] for i, c in enumerate(counts)}
    # Rate 1: all 9 weights valid except on the one-pixel border.
    assert share[9][0] == pytest.approx((63 / 65) ** 2)
    assert share[9][0] > 0.9
    # The last rate with any 9-valid position is 32 (only the centre pixel).
    assert share[9][31] == pytest.approx(1 / 65**2)
    assert share[9][32] == 0
    # From rate 65 on, the 3x3 filter is a 1x1 filter everywhere.
    assert np.all(share[1][64:] == 1.0)
    assert share[1][63] < 1.0


def test_bad_arguments():
    with pytest.raises(ValueError, match="kernel_size"):
        valid_weights.valid_taps(65, [1], kernel_size=4)
    with pytest.raises(ValueError, match="rates must be >= 1"):
        valid_weights.valid_taps(65, [0, 1])


def test_tool_writes_csv_and_png(tmp_path):
    subprocess.run([sys.executable, "-m", "tools.bench.valid_weights", "--feature_size=65",
                    "--max_rate=70", f"--output_dir={tmp_path}"], check=True, timeout=120)
    with open(tmp_path / "valid_weights.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["atrous_rate", "valid_1", "valid_2", "valid_4", "valid_6", "valid_9"]
    assert [int(r[0]) for r in rows[1:]] == list(range(1, 71))
    _, fractions = valid_weights.valid_weight_fractions(65, range(1, 71))
    np.testing.assert_allclose(np.array(rows[1:], float)[:, 1:], fractions, atol=1e-6)
    png = (tmp_path / "valid_weights.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
