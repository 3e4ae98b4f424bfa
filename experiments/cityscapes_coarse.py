"""Cityscapes with the coarse annotations (paper Appendix C, Table 13): train on fine
train + val and the 20K coarse train_extra images, evaluate at OS 4 with scales up to 2.

    python -m tools.train --experiment=cityscapes_coarse --workdir=runs/cityscapes_coarse \
        --set train.init_checkpoint=PATH/resnet_v1_101.ckpt

Paper (text): 81.3 mIoU on the Cityscapes test server. Evaluation at OS 4 and scales
{0.75, ..., 2} adds 0.8 and 0.1 over three scales at OS 8 (text). The train split is a
TFDS split expression over the three splits of cityscapes_seg.
"""
from experiments import common


def get_config():
    config = common.cityscapes(crop_size=769, steps=90000)
    config.data.train_split = "train+val+train_extra"
    config.eval.split = "val"
    scales = (0.75, 1.0, 1.25, 1.5, 1.75, 2.0)
    config.paper = common.paper(
        "cityscapes", "Table 13", "train fine + val + coarse",
        settings=dict(train_split="train+val+train_extra"), results=(
            common.result("Table 13", "test server, OS 4 + scales up to 2", "81.3", "text",
                          eval_split="test", eval_output_stride=4, eval_scales=scales),))
    return common.eval_at(config, 4, scales=(0.75, 1.0, 1.25, 1.5, 1.75, 2.0), flip=True)
