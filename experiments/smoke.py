"""Smoke run for the tests: a few steps of a small-input ResNet-50 on the synthetic set.

    python -m tools.train --experiment=smoke --workdir=/tmp/smoke

Expected: finishes in well under a minute on a 2-core CPU; no accuracy target.
"""
from experiments import common


def get_config():
    config = common.synthetic(crop_size=65)
    config.model.depth = 50
    config.model.batch_norm_decay = 0.9
    config.train.steps = 4
    config.train.batch_size = 2
    config.train.base_learning_rate = 0.01
    config.train.checkpoint_every = 2
    config.train.log_every = 1
    config.train.summary_every = 1
    config.train.image_summary_every = 2
    config.eval.output_stride = 16
    return config
