"""Table 1: ResNet-50 with block7 (three cascaded blocks), output stride 8 ... 256.

    python -m tools.train --experiment=table1 --workdir=runs/table1_os8
    python -m tools.train --experiment=table1 --workdir=runs/table1_os16 \
        --set model.output_stride=16 --set eval.output_stride=16
    ... OS 32, 64, 128 likewise; OS 256 = no atrous convolution at all:
        --set model.output_stride=None --set eval.output_stride=None

Paper (VOC 2012 val mIoU, single scale): OS 8: 75.18 ... OS 256: 20.29 (both stated in
the text). The other cells (OS 16 ... 128) are in the paper's table body, which the
text used here lacks, so no figure is given for them.
"""
from experiments import common


def get_config():
    config = common.cascade(depth=50, extra_blocks=3, multi_grid=(1, 1, 1), output_stride=8)
    config.paper = common.paper(
        "voc_stage1", "Table 1", "ResNet-50 + block7", varies=(
            "output_stride", "eval_output_stride"),
        settings=dict(depth=50, head="cascade", extra_blocks=3, multi_grid=(1, 1, 1),
                      **common.SINGLE_SCALE),
        results=(common.result("Table 1", "OS 8", "75.18", "text", output_stride=8,
                               eval_output_stride=8),
                 common.result("Table 1", "OS 256 (no atrous)", "20.29", "text",
                               output_stride=None, eval_output_stride=None)))
    return config
