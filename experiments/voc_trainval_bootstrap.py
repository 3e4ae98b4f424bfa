"""Test-set model (paper 4.3): trainval, OS 8, BN frozen, and bootstrapping: images with a
hard class (bicycle, chair, diningtable, pottedplant, sofa) appear twice per epoch.

    python -m tools.train --experiment=voc_trainval_bootstrap \
        --workdir=runs/voc_trainval_bootstrap \
        --set train.init_checkpoint=runs/voc_finetune_from_coco

Paper (text, Table 7): 85.7 mIoU on the VOC 2012 test server, OS 8 + multi-scale + flips,
no DenseCRF. The learning rate follows stage 2 (0.001); the paper does not restate it.
"""
from experiments import common


def get_config():
    config = common.voc_stage1()
    config.data.train_split = "trainval"
    config.data.eval_split = "test"
    config.data.bootstrap_classes = common.VOC_HARD_CLASSES
    config.data.bootstrap_factor = 2
    config = common.frozen_batch_norm_stage(
        config, init_checkpoint="runs/voc_finetune_from_coco", base_learning_rate=0.001)
    config.eval.split = "test"
    config.paper = common.paper(
        "voc_stage2", "Table 7", "trainval, bootstrapping, from COCO (4.3)", results=(
            common.result("Table 7", "test server, OS 8 + MS + flip", "85.7", "text",
                          eval_split="test", eval_output_stride=8,
                          eval_scales=common.MULTI_SCALE, eval_flip=True),))
    return common.eval_at(config, 8, scales=common.MULTI_SCALE, flip=True)
