"""CPU demo on the synthetic set: build data, train, evaluate, export, predict.

    python -m tools.train --experiment=demo --workdir=runs/demo

The README gives the mIoU it reaches on the synthetic val split and how long it takes.
"""
from experiments import common


def get_config():
    config = common.synthetic(crop_size=129)
    config.model.depth = 50
    # A short run from scratch: the paper's 0.9997 would leave the moving statistics at
    # their initial values after a few hundred steps.
    config.model.batch_norm_decay = 0.99
    config.train.steps = 300
    config.train.batch_size = 8
    config.train.base_learning_rate = 0.01
    config.train.checkpoint_every = 100
    config.train.image_summary_every = 100
    config.eval.output_stride = 16
    return config
