"""Table 9 (Appendix A): batch size 4, 8, 12, 16 with BN fine-tuned, OS 16 train and eval.

    python -m tools.train --experiment=table9 --workdir=runs/table9_batch4 \
        --set train.batch_size=4

Paper: larger batches are better, 16 gives 77.21 (text); batch 4 / 8 / 12 (recalled from
the table) 64.43 / 75.76 / 76.49.
"""
from experiments import common


def get_config():
    return common.aspp_stage1()
