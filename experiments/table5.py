"""Table 5: ASPP with multi-grid and image-level features, ResNet-101, OS 16.

    python -m tools.train --experiment=table5 --workdir=runs/table5_full
    python -m tools.train --experiment=table5 --workdir=runs/table5_mg111_no_pool \
        --set "model.multi_grid=(1,1,1)" --set model.image_pooling=false
    python -m tools.train --experiment=table5 --workdir=runs/table5_rate24 \
        --set "model.aspp_rates=(6,12,18,24)" --set model.image_pooling=false

Paper (VOC val mIoU): MG (1,2,4) + ASPP (6,12,18) + image pooling 77.21 (text); adding
the rate-24 branch costs 0.12 (text). The other rows are in the paper's table body, which
the text used here lacks.
"""
from experiments import common


def get_config():
    config = common.aspp_stage1(multi_grid=(1, 2, 4), aspp_rates=(6, 12, 18),
                                image_pooling=True)
    config.paper = common.paper(
        "voc_stage1", "Table 5", "ASPP, multi-grid, image pooling",
        varies=("multi_grid", "aspp_rates", "image_pooling"),
        settings=common.single_scale_at(16),
        results=(common.result("Table 5", "MG (1, 2, 4) + ASPP (6, 12, 18) + image pooling",
                               "77.21", "text", multi_grid=(1, 2, 4),
                               aspp_rates=(6, 12, 18), image_pooling=True),))
    return config
