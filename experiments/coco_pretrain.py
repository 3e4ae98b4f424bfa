"""COCO pre-training (paper 4.3): COCO images whose VOC-class regions exceed 1000 pixels,
non-VOC classes as background (the coco_voc_seg builder), stage 1 protocol.

    python -m tools.train --experiment=coco_pretrain --workdir=runs/coco_pretrain \
        --set train.init_checkpoint=PATH/resnet_v1_101.ckpt

Then voc_finetune_from_coco. No number of its own in the paper.
"""
from experiments import common


def get_config():
    config = common.voc_stage1()
    config.data.dataset = "coco_voc_seg"
    config.data.train_split = "train"
    config.data.eval_split = "val"
    config.paper = common.paper("coco_pretrain", row="COCO pre-training (4.3)")
    return common.eval_at(config, 16)
