"""Table 8 (Appendix A): the training protocol's three changes, VOC val at OS 16.

    python -m tools.train --experiment=table8 --workdir=runs/table8_full
    python -m tools.train --experiment=table8 --workdir=runs/table8_bn_frozen \
        --set train.freeze_batch_norm=true
    python -m tools.train --experiment=table8 --workdir=runs/table8_no_upsampling \
        --set train.upsample_logits=false
    python -m tools.train --experiment=table8 --workdir=runs/table8_crop321 \
        --set data.crop_size=321

Paper (all stated in the text): crop 513 + upsampled logits + BN fine-tuned 77.21;
without fine-tuning BN 75.95; labels downsampled instead of logits upsampled 76.01;
crop 321 67.22. "Without fine-tuning BN" is the authors' fine_tune_batch_norm=False, which
train.freeze_batch_norm=true reproduces: batch norm runs on its moving statistics (the
ImageNet ones in the backbone, the initial 0/1 in the new head) and never updates them,
while gamma and beta still learn. Add --set train.freeze_gamma_beta=true to freeze those
too (then the head's batch norms stay identities).
"""
from experiments import common


def get_config():
    config = common.aspp_stage1()
    full = dict(crop_size=513, batch_norm="trained", upsample_logits=True)
    config.paper = common.paper(
        "voc_stage1", "Table 8", "crop, upsampled logits, batch norm",
        varies=tuple(full), settings=common.single_scale_at(16), results=(
            common.result("Table 8", "crop 513 + UL + BN", "77.21", "text", **full),
            common.result("Table 8", "BN not fine-tuned", "75.95", "text",
                          **dict(full, batch_norm="frozen")),
            common.result("Table 8", "labels downsampled (no UL)", "76.01", "text",
                          **dict(full, upsample_logits=False)),
            common.result("Table 8", "crop 321", "67.22", "text",
                          **dict(full, crop_size=321))))
    return config
