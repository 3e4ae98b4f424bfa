"""VOC stage 1 (paper 4.1): ResNet-101, MG (1,2,4), ASPP (6,12,18) + image pooling, OS 16,
train_aug, crop 513, batch 16, lr 0.007 poly, 30K steps, BN trained (decay 0.9997).

    python -m tools.train --experiment=voc_stage1 --workdir=runs/voc_stage1 \
        --set train.init_checkpoint=PATH/resnet_v1_101.ckpt
    python -m tools.evaluate --experiment=voc_stage1 --workdir=runs/voc_stage1

Paper (VOC 2012 val mIoU, Table 6, from the text): 77.21 at OS 16; evaluated at OS 8
+1.3 (78.51); + multi-scale +0.94 (79.45); + flip +0.32 (79.77, stated):
    python -m tools.evaluate --experiment=voc_stage1 --workdir=runs/voc_stage1 \
        --set eval.output_stride=8 --set "eval.scales=(0.5,0.75,1.0,1.25,1.5,1.75)" \
        --set eval.flip=true
"""
from experiments import common


def get_config():
    config = common.eval_at(common.voc_stage1(), 16)
    config.paper = common.paper("voc_stage1", "Table 6", "MG (1, 2, 4) + ASPP + image pooling",
                                results=common.table6_results())
    return config
