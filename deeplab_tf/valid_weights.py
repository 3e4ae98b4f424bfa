"""How many weights of an atrous filter still see the feature map (paper 3.3, Figure 4).

A k x k filter with atrous rate r, centred on output position (i, j) of an H x W feature
map ("same" padding), reads input (i + r*a, j + r*b) for a, b in -(k//2)..k//2. A weight
is *valid* when that input lies on the map rather than on the zero padding. As r grows
towards the map size, fewer weights stay valid, until only the centre one does and the
3x3 filter has become a 1x1 filter: the reason the paper adds image-level features to
ASPP. Figure 4 plots, for each rate, the fraction of output positions with 1, 4 and 9
valid weights of a 3x3 filter on a 65x65 map.

NumPy only. `python -m tools.bench.valid_weights` writes the CSV and the plot.
"""
import numpy as np


def valid_taps(size, rates, kernel_size=3):
    """Valid taps along one axis: array [len(rates), size].

    Entry [n, i] counts the offsets a in -(k//2)..k//2 with 0 <= i + rates[n]*a < size.
    A 2-D filter's taps are pairs of 1-D taps, so its count is a product of two of these.
    """
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd number, got {kernel_size}")
    rates = np.asarray(rates, dtype=np.int64).reshape(-1)
    if rates.size and rates.min() < 1:
        raise ValueError(f"atrous rates must be >= 1, got {rates.min()}")
    half = kernel_size // 2
    offsets = np.arange(-half, half + 1)
    position = np.arange(size)
    # [rate, position, tap] -> the input coordinate that tap reads.
    sampled = position[None, :, None] + rates[:, None, None] * offsets[None, None, :]
    return ((sampled >= 0) & (sampled < size)).sum(axis=-1)


def valid_weight_counts(feature_size, rates, kernel_size=3):
    """Valid weights of a k x k filter at every output position: [len(rates), H, W]."""
    height, width = ((feature_size, feature_size) if np.isscalar(feature_size)
                     else feature_size)
    rows = valid_taps(height, rates, kernel_size)
    cols = valid_taps(width, rates, kernel_size)
    return rows[:, :, None] * cols[:, None, :]


def valid_weight_fractions(feature_size=65, rates=range(1, 66), kernel_size=3):
    """Normalized counts of valid weights, the data of Figure 4.

    Args:
      feature_size: H (square map) or (H, W); Figure 4 uses 65 (a 513 image at OS 8).
      rates: atrous rates.
      kernel_size: k of the k x k filter (3 in ASPP).

    Returns:
      (counts, fractions): `counts` the numbers of valid weights that occur at any of the
      rates, ascending; `fractions[n, c]` the share of output positions where exactly
      `counts[c]` weights are valid at `rates[n]`. Every row sums to 1.
    """
    per_position = valid_weight_counts(feature_size, rates, kernel_size)
    counts = np.unique(per_position)
    fractions = (per_position[..., None] == counts).mean(axis=(1, 2))
    return counts, fractions
