"""CPU demo on the synthetic set: build data, train, evaluate, export, predict.

    python -m tools.demo --workdir=runs/demo
    # or only the training run, on a built synthetic set:
    python -m tools.train --experiment=demo --workdir=runs/demo/train_run \
        --set data.data_dir=runs/demo/tfds

A ResNet-50 DeepLabv3 (ASPP + image pooling) from scratch on 97x97 crops. The paper's
ASPP rates (6, 12, 18) are for 33x33 feature maps (crop 513, OS 16); on this 7x7 map they
would only read padding (and TensorFlow's CPU backward pass for such convolutions is very
slow), so the rates shrink with the crop.

Measured (synthetic set of tools.make_synthetic defaults, 300 train / 60 val images):
val mIoU 62.36% over the 8 classes present, pixel accuracy 92.16%, after 300 steps at
output stride 16 (tools.evaluate); at step 100 / 200 it was 4.1% / 15.3% (the moving BN
statistics lag the batch statistics early on). `python -m tools.demo` took 19 minutes on
the 2-core CPU, 17.6 of them training (0.2-0.35 steps/s, partly while the test suite ran);
the same figures came out of two runs (the run is deterministic in its seed).
"""
from experiments import common


def get_config():
    config = common.synthetic(crop_size=97)
    config.model.depth = 50
    config.model.multi_grid = (1, 1, 1)
    config.model.aspp_rates = (1, 2, 3)
    # A short run from scratch: the paper's 0.9997 would leave the moving statistics at
    # their initial values after a few hundred steps.
    config.model.batch_norm_decay = 0.99
    config.train.steps = 300
    config.train.batch_size = 8
    config.train.base_learning_rate = 0.02
    config.train.checkpoint_every = 100
    config.train.log_every = 10
    config.train.image_summary_every = 100
    config.eval.output_stride = 16
    return config
