"""Table 2: ResNet-50 / ResNet-101 with 0-3 cascaded blocks (block4 ... block7), OS 16.

    python -m tools.train --experiment=table2 --workdir=runs/table2_r50_block7
    python -m tools.train --experiment=table2 --workdir=runs/table2_r101_block5 \
        --set model.depth=101 --set model.extra_blocks=1

Multi-grid (1, 1, 1), logits right on the last block. Paper (VOC val mIoU): the text
states only the trend (cascading blocks helps, ResNet-101 above ResNet-50); the figures
are in the paper's table body, which the text used here lacks.
"""
from experiments import common


def get_config():
    config = common.cascade(depth=50, extra_blocks=3, multi_grid=(1, 1, 1), output_stride=16)
    config.paper = common.paper(
        "voc_stage1", "Table 2", "cascaded blocks, MG (1, 1, 1)",
        varies=("depth", "extra_blocks"),
        settings=dict(head="cascade", multi_grid=(1, 1, 1), **common.single_scale_at(16)))
    return config
