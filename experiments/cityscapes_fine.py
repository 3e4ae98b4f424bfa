"""Cityscapes, train fine only (paper Appendix C, Table 12): crop 769, 90K steps, the
stage 1 protocol otherwise, whole 1024x2048 images at evaluation.

    python -m tools.train --experiment=cityscapes_fine --workdir=runs/cityscapes_fine \
        --set train.init_checkpoint=PATH/resnet_v1_101.ckpt
    python -m tools.evaluate --experiment=cityscapes_fine --workdir=runs/cityscapes_fine

Paper (Cityscapes val mIoU, text): OS 16 77.23; OS 8 77.82; OS 8 + scales
{0.75, 1, 1.25} + flip 79.30 (the evaluation configured below).
"""
from experiments import common


def get_config():
    config = common.cityscapes(crop_size=769, steps=90000)
    scales = (0.75, 1.0, 1.25)
    config.paper = common.paper("cityscapes", "Table 12", "train fine", results=(
        common.result("Table 12", "OS 16", "77.23", "text", eval_output_stride=16,
                      **common.SINGLE_SCALE),
        common.result("Table 12", "OS 8", "77.82", "text", eval_output_stride=8,
                      **common.SINGLE_SCALE),
        common.result("Table 12", "OS 8 + MS + flip", "79.30", "text", eval_output_stride=8,
                      eval_scales=scales, eval_flip=True)))
    return common.eval_at(config, 8, scales=scales, flip=True)
