"""Table 3: multi-grid (r1, r2, r3) for ResNet-101 with 0-3 cascaded blocks, OS 16.

    python -m tools.train --experiment=table3 --workdir=runs/table3_block7_mg121
    python -m tools.train --experiment=table3 --workdir=runs/table3_block4_mg124 \
        --set model.extra_blocks=0 --set "model.multi_grid=(1,2,4)"

Variants: multi_grid in (1,1,1), (1,2,1), (2,2,2), (1,2,3), (1,2,4); extra_blocks 0-3.
Paper: the best model is block7 with (1, 2, 1) (stated in the text; its OS 16 figure is in
the table body, not in the text used here), and evaluated at OS 8 with multi-scale and flips (Table 4) 79.35 (text):
    python -m tools.evaluate --experiment=table3 --workdir=runs/table3_block7_mg121 \
        --set eval.output_stride=8 --set "eval.scales=(0.5,0.75,1.0,1.25,1.5,1.75)" \
        --set eval.flip=true
"""
from experiments import common


def get_config():
    config = common.cascade(depth=101, extra_blocks=3, multi_grid=(1, 2, 1), output_stride=16)
    # Trained as Table 3 (OS 16); its figure is Table 4's evaluation of the best cell.
    config.paper = common.paper(
        "voc_stage1", "Table 3", "ResNet-101 cascaded blocks, multi-grid",
        varies=("multi_grid", "extra_blocks"), settings=dict(head="cascade"),
        results=(common.result("Table 4", "block7 + MG (1, 2, 1), OS 8 + MS + flip",
                               "79.35", "text", multi_grid=(1, 2, 1), extra_blocks=3,
                               eval_output_stride=8, eval_scales=common.MULTI_SCALE,
                               eval_flip=True),))
    return config
