"""Shared pieces of the experiment configs: functions, not copies.

Each experiment's `config.paper` (config_lib.PaperConfig) is the one place its paper row,
protocol and figures live (deeplab_tf.recipe reads it; tests/test_experiments.py checks
the docstring's figures against it).
"""
from deeplab_tf import config as config_lib
from deeplab_tf import recipe

result = recipe.paper_result  # (table, label, mIoU as printed, source, **settings)

VOC_HARD_CLASSES = (2, 9, 11, 16, 18)  # bicycle, chair, diningtable, pottedplant, sofa


def voc_stage1():
    """Paper 4.1 stage 1: train_aug, OS 16, crop 513, batch 16, lr 0.007, 30K steps, BN trained."""
    config = config_lib.ExperimentConfig()
    config.data.dataset = "pascal_voc_seg"
    config.data.train_split = "train_aug"
    config.data.eval_split = "val"
    return config


def synthetic(crop_size=129):
    """The generated VOC-layout set (tools/make_synthetic.py), sized for a CPU, trained
    from scratch (no ImageNet weights exist for it here)."""
    config = config_lib.ExperimentConfig()
    config.data.dataset = "synthetic_voc"
    config.data.crop_size = crop_size
    config.data.shuffle_buffer = 256
    config.train.init_checkpoint = config_lib.NO_INIT_CHECKPOINT
    # Its images are 100-180 px a side: all fit 193 = 16*12+1 = 8*24+1, as VOC's (at most
    # 500) fit 513.
    config.eval.crop_size = (193, 193)
    return config


def eval_at(config, output_stride, scales=(1.0,), flip=False):
    """Evaluation settings of a paper row: output stride, multi-scale inputs, flips."""
    config.eval.output_stride = output_stride
    config.eval.scales = tuple(scales)
    config.eval.flip = flip
    return config


MULTI_SCALE = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)  # paper 4.2, Table 4 / 6 "MS"
SINGLE_SCALE = dict(eval_scales=(1.0,), eval_flip=False)


def paper(protocol="voc_stage1", table="", row="", settings=None, varies=(), results=()):
    return config_lib.PaperConfig(protocol=protocol, table=table, row=row,
                                  settings=dict(settings or {}), varies=tuple(varies),
                                  results=tuple(results))


def table6_results():
    """Table 6 (4.3): the best ASPP model, trained at OS 16, evaluated four ways. 77.21 and
    79.77 are stated; the two between follow from the stated gains (+1.3, +0.94)."""
    return (
        result("Table 6", "OS 16", "77.21", "text", eval_output_stride=16, **SINGLE_SCALE),
        result("Table 6", "OS 8", "78.51", "77.21 + 1.3, text", eval_output_stride=8,
               **SINGLE_SCALE),
        result("Table 6", "OS 8 + MS", "79.45", "78.51 + 0.94, text", eval_output_stride=8,
               eval_scales=MULTI_SCALE, eval_flip=False),
        result("Table 6", "OS 8 + MS + flip", "79.77", "text", eval_output_stride=8,
               eval_scales=MULTI_SCALE, eval_flip=True))


def single_scale_at(output_stride):
    """Row settings of a table evaluated single-scale at one output stride."""
    return dict(eval_output_stride=output_stride, **SINGLE_SCALE)


def cascade(depth=50, extra_blocks=3, multi_grid=(1, 1, 1), output_stride=16):
    """Section 4.2 models: blocks 5-7 cascaded after block4, logits right on top (no ASPP),
    trained like stage 1 and evaluated single-scale at the training output stride."""
    config = voc_stage1()
    config.model.head = "cascade"
    config.model.depth = depth
    config.model.extra_blocks = extra_blocks
    config.model.multi_grid = tuple(multi_grid)
    config.model.output_stride = output_stride
    return eval_at(config, output_stride)


def aspp_stage1(multi_grid=(1, 2, 4), aspp_rates=(6, 12, 18), image_pooling=True):
    """Section 4.3 models: ResNet-101 + ASPP, stage 1 protocol, evaluated at OS 16."""
    config = voc_stage1()
    config.model.multi_grid = tuple(multi_grid)
    config.model.aspp_rates = tuple(aspp_rates)
    config.model.image_pooling = image_pooling
    return eval_at(config, 16)


def frozen_batch_norm_stage(config, init_checkpoint, base_learning_rate):
    """Stage 2 of paper 4.1: BN frozen, OS 8, from an earlier run's weights.

    "Frozen" as in the authors' code (fine_tune_batch_norm=False): batch norm runs on its
    moving statistics, which stay fixed; gamma and beta still learn
    (--set train.freeze_gamma_beta=true freezes them too).
    """
    config.model.output_stride = 8
    config.train.freeze_batch_norm = True
    config.train.base_learning_rate = base_learning_rate
    config.train.init_checkpoint = init_checkpoint
    return eval_at(config, 8)


def cityscapes(crop_size=769, steps=90000):
    """Appendix C: Cityscapes fine, 19 classes, crop 769, 90K steps, whole-image eval."""
    config = config_lib.ExperimentConfig()
    config.model.num_classes = 19
    config.data.dataset = "cityscapes_seg"
    config.data.num_classes = 19
    config.data.train_split = "train"
    config.data.eval_split = "val"
    config.data.crop_size = crop_size
    config.train.steps = steps
    config.eval.split = "val"
    # Whole 1024x2048 images, padded to the next output_stride*k+1 (Appendix C).
    config.eval.crop_size = (1025, 2049)
    return config
