"""Smoke run for the tests: a few steps of a small-input ResNet-50 on the synthetic set.

    python -m tools.train --experiment=smoke --workdir=/tmp/smoke \
        --set data.data_dir=DATA_DIR

Expected: finishes in well under a minute on a 2-core CPU; no accuracy target.

Crop 33 gives a 3x3 feature map at output stride 16. Atrous rates far above the feature
size (the paper's ASPP 6/12/18, multi-grid 2/4/8) only ever touch padding there, and
TensorFlow's CPU backward pass for such convolutions is very slow (tens of seconds a
step), so the smoke model uses unit rates 1 and ASPP rates (1, 2, 3): the same layers and
weights, just cheap.
"""
from experiments import common


def get_config():
    config = common.synthetic(crop_size=33)
    config.model.depth = 50
    config.model.multi_grid = (1, 1, 1)
    config.model.aspp_rates = (1, 2, 3)
    config.model.batch_norm_decay = 0.9
    config.data.shuffle_buffer = 16
    config.train.steps = 4
    config.train.batch_size = 2
    config.train.base_learning_rate = 0.01
    config.train.checkpoint_every = 2
    config.train.log_every = 1
    config.train.summary_every = 1
    config.train.image_summary_every = 2
    config.eval.output_stride = 16
    config.eval.crop_size = (65, 65)  # the tests' tiny images (40-60 px) fit
    return config
