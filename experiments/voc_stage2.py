"""VOC stage 2 (paper 4.1): from stage 1's weights, BN frozen, OS 8, trainval, lr 0.001,
30K steps. "Frozen" as in the authors' code: the moving statistics are fixed, gamma and
beta still learn (train.freeze_gamma_beta=true freezes them too).

    python -m tools.train --experiment=voc_stage2 --workdir=runs/voc_stage2 \
        --set train.init_checkpoint=runs/voc_stage1

Trained on trainval, so VOC val says nothing any more and the paper gives no figure for
this stage alone: this is the model for the test server (with bootstrapping and COCO
pre-training, see voc_trainval_bootstrap and its Table 7 figure).
"""
from experiments import common


def get_config():
    config = common.voc_stage1()
    config.data.train_split = "trainval"
    config = common.frozen_batch_norm_stage(config, init_checkpoint="runs/voc_stage1",
                                            base_learning_rate=0.001)
    config.paper = common.paper("voc_stage2", row="stage 2 (4.1)")
    return config
