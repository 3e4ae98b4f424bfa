"""VOC fine-tuning after COCO pre-training (paper 4.3): the stage 1 protocol with base
learning rate 0.0001, from coco_pretrain's weights.

    python -m tools.train --experiment=voc_finetune_from_coco \
        --workdir=runs/voc_finetune_from_coco --set train.init_checkpoint=runs/coco_pretrain
    python -m tools.evaluate --experiment=voc_finetune_from_coco \
        --workdir=runs/voc_finetune_from_coco

Paper (text, Table 6): 82.7 VOC val mIoU at OS 8 with multi-scale inputs and flips (the
evaluation below is configured that way).
"""
from deeplab_tf import recipe
from experiments import common


def get_config():
    config = common.voc_stage1()
    config.train.base_learning_rate = 0.0001
    config.train.init_checkpoint = "runs/coco_pretrain"
    config.paper = common.paper(
        "voc_stage1", "Table 6", "COCO pre-trained, fine-tuned on VOC (4.3)",
        settings=dict(learning_rate=0.0001, init=recipe.TRAINED_RUN), results=(
            common.result("Table 6", "COCO, OS 8 + MS + flip", "82.7", "text",
                          eval_output_stride=8, eval_scales=common.MULTI_SCALE,
                          eval_flip=True),))
    return common.eval_at(config, 8, scales=common.MULTI_SCALE, flip=True)
