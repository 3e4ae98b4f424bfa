"""Table 9 (Appendix A): batch size 4, 8, 12, 16 with BN fine-tuned, OS 16 train and eval.

    python -m tools.train --experiment=table9 --workdir=runs/table9_batch4 \
        --set train.batch_size=4

Paper: larger batches are better, 16 gives 77.21 (text); the batch 4 / 8 / 12 figures are
in the paper's table body, which the text used here lacks.
"""
from experiments import common


def get_config():
    config = common.aspp_stage1()
    config.paper = common.paper(
        "voc_stage1", "Table 9", "batch size, BN fine-tuned", varies=("batch_size",),
        settings=common.single_scale_at(16),
        results=(common.result("Table 9", "batch 16", "77.21", "text", batch_size=16),))
    return config
