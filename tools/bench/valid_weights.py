r"""Figure 4 of the paper: valid weights of a 3x3 atrous filter on a 65x65 feature map.

    python -m tools.bench.valid_weights --output_dir=/tmp/figure4

writes valid_weights.csv (one row per atrous rate: the fraction of output positions with
exactly 1, 2, 4, 6 or 9 valid weights; a square map never gives 3 because a rate that
leaves one valid tap along an axis leaves one along the other as well) and
valid_weights.png (the 1, 4 and 9 curves, as in the paper). On 65x65 the 9-weight share
is 0.94 at rate 1 and falls to 0 at rate 33; from rate 65 every position has 1.
"""
import csv
import os

from absl import app
from absl import flags
from absl import logging
import numpy as np

from deeplab_tf import console, valid_weights

flags.DEFINE_integer("feature_size", 65, "Side of the square feature map (65: 513 at OS 8).")
flags.DEFINE_integer("max_rate", 65, "Largest atrous rate; rates run from 1.")
flags.DEFINE_string("output_dir", ".", "Where valid_weights.csv and .png go.")
FLAGS = flags.FLAGS

PAPER_CURVES = (1, 4, 9)  # the counts Figure 4 plots


def write_csv(path, rates, counts, fractions):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["atrous_rate"] + [f"valid_{c}" for c in counts])
        for rate, row in zip(rates, fractions):
            writer.writerow([rate] + [f"{x:.6f}" for x in row])


def plot(path, rates, counts, fractions, feature_size):
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top

    figure, axes = plt.subplots(figsize=(6, 4.4), dpi=120)
    for count in PAPER_CURVES:
        if count in counts:
            label = f"{count} valid weight{'s' if count > 1 else ''}"
            axes.plot(rates, fractions[:, list(counts).index(count)], marker=".",
                      label=label)
    axes.set_xlabel("atrous rate")
    axes.set_ylabel("normalized count")
    axes.set_ylim(-0.02, 1.02)
    axes.set_title(f"3x3 filter on a {feature_size}x{feature_size} feature map")
    axes.grid(alpha=0.3)
    # Below the axes: every corner of the plot is crossed by a curve.
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=3, frameon=False)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if FLAGS.feature_size < 1 or FLAGS.max_rate < 1:
        raise app.UsageError("--feature_size and --max_rate must be positive")
    rates = np.arange(1, FLAGS.max_rate + 1)
    counts, fractions = valid_weights.valid_weight_fractions(FLAGS.feature_size, rates)
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    csv_path = os.path.join(FLAGS.output_dir, "valid_weights.csv")
    png_path = os.path.join(FLAGS.output_dir, "valid_weights.png")
    write_csv(csv_path, rates, counts, fractions)
    plot(png_path, rates, counts, fractions, FLAGS.feature_size)
    for rate in (1, 6, 12, 18, 24, 36, FLAGS.feature_size - 1, FLAGS.feature_size):
        if 1 <= rate <= FLAGS.max_rate:
            shares = ", ".join(f"{c}: {x:.3f}" for c, x in zip(counts, fractions[rate - 1]))
            logging.info("rate %d: share of positions by valid weights {%s}", rate, shares)
    logging.info("Wrote %s and %s", csv_path, png_path)


if __name__ == "__main__":
    console.run(main, tensorflow=False)  # numpy only
