"""Every experiment in experiments/ builds (its model, and its training input on a small
generated copy of its data set at crop 33) and matches the paper row it claims.

The paper's values are written here from the paper's text (the seed text, sections 3-4
and Appendices A and C) and SPEC.md, not read from the code: output stride, atrous rates
(block rates from the output stride, multi-grid, ASPP), crop, steps, learning rate,
batch, batch norm, data set and split, evaluation. A value the paper does not state is
left out of its row (and so not checked), never guessed. The rates are read from the
built model's layers and compared with the paper's rules.
"""
import dataclasses
import importlib
import pkgutil

import numpy as np
import pytest
import tensorflow_datasets as tfds

import experiments
from deeplab_tf import config as config_lib
from deeplab_tf import data as data_lib
from deeplab_tf import modeling
from deeplab_tf import synthetic_exports
from deeplab_tf.modeling import ASPP_RATES_AT_OS16

import data_layouts

# ---------------------------------------------------------------- the paper's rows

# Paper 4.1, the protocol of every VOC experiment of section 4 unless its table varies a
# value: "crop size to be 513", "output stride = 16 ... batch size of 16", BN
# "decay = 0.9997", "trainaug set with 30K iterations and initial learning rate = 0.007",
# poly power 0.9, BN trained, logits upsampled (not labels downsampled).
STAGE1 = dict(dataset="pascal_voc_seg", train_split="train_aug", num_classes=21, crop=513,
              output_stride=16, batch=16, bn_decay=0.9997, steps=30000, lr=0.007,
              power=0.9, freeze_bn=False, upsample_logits=True)
# Paper 3.3 and Table 5's best row: ResNet-101, multi-grid (1, 2, 4), ASPP (6, 12, 18) at
# output stride 16 with image-level features.
ASPP_MODEL = dict(depth=101, head="aspp", extra_blocks=0, multi_grid=(1, 2, 4),
                  aspp_rates_os16=(6, 12, 18), image_pooling=True)
# Paper 4.1, second stage: "freeze batch normalization parameters, employ output stride
# = 8, and train on the official PASCAL VOC 2012 trainval set for another 30K iterations
# and smaller base learning rate = 0.001".
STAGE2 = dict(STAGE1, train_split="trainval", output_stride=8, freeze_bn=True, lr=0.001)
# Paper 4.2 (Tables 1-3): cascaded copies of block4, logits on the last block, no ASPP.
CASCADE = dict(head="cascade", image_pooling=None)
VOC_MULTI_SCALE = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)  # paper 4.2 "scales = {0.5, ..., 1.75}"
# Paper 4.3, bootstrapping: "bicycle, chair, table, pottedplant, and sofa", as VOC ids.
VOC_HARD_CLASSES = {2, 9, 11, 16, 18}
# Appendix C (Table 12): "same training protocol as before except that we employ 90K
# training iterations, crop size equal to 769"; 19 evaluated classes.
CITYSCAPES = dict(STAGE1, dataset="cityscapes_seg", train_split="train", num_classes=19,
                  crop=769, steps=90000)

PAPER = {
    "voc_stage1": dict(STAGE1, **ASPP_MODEL, eval_output_stride=16, eval_scales=(1.0,),
                       eval_flip=False, number="77.21"),
    "voc_stage2": dict(STAGE2, **ASPP_MODEL, init_from="voc_stage1",
                       eval_output_stride=8),
    # Table 1: ResNet-50 with block7, output stride 8 (the configured cell), no multi-grid
    # (it is introduced in Table 3), evaluated at the training output stride.
    "table1": dict(STAGE1, depth=50, extra_blocks=3, multi_grid=(1, 1, 1),
                   output_stride=8, eval_output_stride=8, number="75.18", **CASCADE),
    # Table 2: ResNet-50 / 101 with 0-3 cascaded blocks at output stride 16; block7 and
    # ResNet-50 is the configured cell.
    "table2": dict(STAGE1, depth=50, extra_blocks=3, multi_grid=(1, 1, 1),
                   eval_output_stride=16, **CASCADE),
    # Table 3: ResNet-101, multi-grid; "Our best model is the case where block7 and
    # (r1, r2, r3) = (1, 2, 1) are employed".
    "table3": dict(STAGE1, depth=101, extra_blocks=3, multi_grid=(1, 2, 1),
                   eval_output_stride=16, number="79.35", **CASCADE),
    "table5": dict(STAGE1, **ASPP_MODEL, eval_output_stride=16, number="77.21"),
    # Table 8: the new protocol (crop 513, upsampled logits, BN fine-tuned), OS 16.
    "table8": dict(STAGE1, **ASPP_MODEL, eval_output_stride=16, number="77.21"),
    # Table 9: batch size, OS 16 "during both training and evaluation"; 16 is the default.
    "table9": dict(STAGE1, **ASPP_MODEL, eval_output_stride=16, number="77.21"),
    # Table 10 (top rows): training output stride 8 with "batch size 6", evaluation OS 16.
    "table10": dict(STAGE1, **ASPP_MODEL, output_stride=8, batch=6, eval_output_stride=16,
                    number="74.45"),
    # 4.3: "pretrain our best ASPP model on MS-COCO", non-VOC classes as background; its
    # crop, stride and schedule are not restated.
    "coco_pretrain": dict(ASPP_MODEL, dataset="coco_voc_seg", num_classes=21),
    # 4.3: "smaller initial learning rate = 0.0001 and same training protocol as in Sec.
    # 4.1"; 82.7 "when using output stride = 8, multi-scale inputs and ... flipped".
    "voc_finetune_from_coco": dict(STAGE1, **ASPP_MODEL, lr=0.0001, init_from="coco_pretrain",
                                   eval_output_stride=8, eval_scales=VOC_MULTI_SCALE,
                                   eval_flip=True, number="82.7"),
    # 4.3 / Table 7: trainval, "output stride = 8", "batch normalization parameters are
    # frozen", hard-class images duplicated; the test set at OS 8 + MS + flip. Its
    # learning rate and steps are not stated.
    "voc_trainval_bootstrap": dict(ASPP_MODEL, dataset="pascal_voc_seg",
                                   train_split="trainval", num_classes=21, crop=513,
                                   output_stride=8, freeze_bn=True, bn_decay=0.9997,
                                   bootstrap_classes=VOC_HARD_CLASSES, bootstrap_factor=2,
                                   init_from="voc_finetune_from_coco", eval_split="test",
                                   eval_output_stride=8, eval_scales=VOC_MULTI_SCALE,
                                   eval_flip=True, number="85.7"),
    # Table 12: train fine, OS 8 + scales {0.75, 1, 1.25} + flip: 79.30.
    "cityscapes_fine": dict(CITYSCAPES, **ASPP_MODEL, eval_output_stride=8,
                            eval_scales=(0.75, 1.0, 1.25), eval_flip=True, number="79.30"),
    # Table 13: "trainval coarse set (i.e., the 3475 finely annotated images and the extra
    # 20000 coarsely annotated images)", scales {0.75, ..., 2}, evaluation OS 4.
    "cityscapes_coarse": dict(CITYSCAPES, **ASPP_MODEL, train_split="train+val+train_extra",
                              eval_output_stride=4,
                              eval_scales=(0.75, 1.0, 1.25, 1.5, 1.75, 2.0), number="81.3"),
}
PROTOCOL = {"voc_stage2": "voc_stage2", "voc_trainval_bootstrap": "voc_stage2",
            "coco_pretrain": "coco_pretrain", "cityscapes_fine": "cityscapes",
            "cityscapes_coarse": "cityscapes"}
# Not paper rows: CPU runs on the generated set.
NOT_PAPER = {"smoke": "synthetic_voc", "demo": "synthetic_voc", "custom": "custom_seg/mine"}

NAMES = sorted(m.name for m in pkgutil.iter_modules(experiments.__path__)
               if m.name != "common")


def test_every_experiment_has_a_row_here():
    assert set(NAMES) == set(PAPER) | set(NOT_PAPER), "add the new experiment's paper row"


# ---------------------------------------------------------------- the paper's rules

def block_rate(block, output_stride):
    """Paper 3.1: block b's input sits at stride 4 * 2^(b-1) without atrous convolution
    (block1 at 4, block4 at 32, block7 at 256); from the output stride on, the stride is
    turned into an atrous rate: OS 16 -> block4 rate 2; OS 8 -> block3 2, block4 4."""
    if output_stride is None:
        return 1
    return max(1, 4 * 2 ** (block - 1) // output_stride)


def strides_in(block, output_stride, last_block):
    """The last unit of every block but the last strides by 2 while below the output
    stride (Fig. 3; slim layout: the stride sits in the unit's 3x3 conv)."""
    natural = 4 * 2 ** (block - 1)
    return block != last_block and (output_stride is None or natural < output_stride)


def check_model_layers(model, row, output_stride):
    units = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}[row["depth"]] + (3,) * row["extra_blocks"]
    last_block = len(units)
    for block, count in enumerate(units, start=1):
        for unit in range(1, count + 1):
            conv = model.get_layer(f"block{block}_unit_{unit}_conv2")
            rate = block_rate(block, output_stride)
            if block >= 4:  # paper 3.2.1: multi-grid in block4 and every cascaded block
                rate *= row["multi_grid"][unit - 1]
            stride = 2 if unit == count and strides_in(block, output_stride, last_block) else 1
            assert tuple(conv.dilation_rate) == (rate, rate), conv.name
            assert tuple(conv.strides) == (stride, stride), conv.name
    names = {layer.name for layer in model.layers}
    assert f"block{last_block + 1}_unit_1_conv2" not in names
    if row["head"] == "aspp":
        # Paper 3.3: rates (6, 12, 18) at output stride 16, "doubled when output stride = 8".
        expected = [r * 16 // output_stride for r in row["aspp_rates_os16"]]
        got = [model.get_layer(f"aspp_atrous{i}").dilation_rate[0]
               for i in range(1, len(expected) + 1)]
        assert got == expected
        assert f"aspp_atrous{len(expected) + 1}" not in names
        assert ("image_pooling" in names) == row["image_pooling"]
    else:
        assert not any(name.startswith(("aspp", "image_pooling")) for name in names)


# ---------------------------------------------------------------- building

_MODELS = {}


def built_model(model_config):
    """One build per distinct model (several experiments share one; aspp_rates=None is
    the builder's default, the same model as those rates given explicitly)."""
    model_config = dataclasses.replace(
        model_config, aspp_rates=model_config.aspp_rates or ASPP_RATES_AT_OS16)
    key = config_lib.to_json(config_lib.ExperimentConfig(model=model_config))
    if key not in _MODELS:
        _MODELS[key] = config_lib.build_model(model_config)
    return _MODELS[key]


@pytest.fixture(scope="module")
def small_data(tmp_path_factory, data_dir):
    """{dataset: TFDS data_dir} of small generated copies of every data set used."""
    root = tmp_path_factory.mktemp("experiment_data")
    rng = np.random.default_rng(0)
    data_layouts.make_voc_with_sbd(root / "voc", rng, "mat")
    data_lib.build("pascal_voc_seg", root / "voc", root / "tfds")
    data_layouts.make_cityscapes(root / "cityscapes", rng, size=(40, 48))
    data_lib.build("cityscapes_seg", root / "cityscapes", root / "tfds")
    data_layouts.make_coco(root / "coco", rng, folder="train2017")
    data_layouts.make_coco(root / "coco", rng, folder="val2017")
    data_lib.build("coco_voc_seg", root / "coco", root / "tfds")
    synthetic_exports.write_cvat_export(root / "mine", num_images=6)
    data_lib.build("custom_seg/mine", root / "mine", root / "tfds")
    return {"pascal_voc_seg": str(root / "tfds"), "cityscapes_seg": str(root / "tfds"),
            "coco_voc_seg": str(root / "tfds"), "synthetic_voc": data_dir,
            "custom_seg/mine": str(root / "tfds")}


def with_classes(config, data_dir):
    """An experiment that takes its class count from the data set (custom), given it."""
    if config.model.num_classes is None:
        table = data_lib.class_table(config.data.dataset, data_dir)
        config_lib.apply_class_table(config, table, config.data.dataset)
    return config


def check_row(config, row):
    model, data, train, evaluation = config.model, config.data, config.train, config.eval
    fields = {
        "depth": model.depth, "head": model.head, "extra_blocks": model.extra_blocks,
        "output_stride": model.output_stride, "multi_grid": tuple(model.multi_grid),
        "image_pooling": model.image_pooling if model.head == "aspp" else None,
        "bn_decay": model.batch_norm_decay, "num_classes": model.num_classes,
        "dataset": data.dataset, "train_split": data.train_split, "crop": data.crop_size,
        "steps": train.steps, "lr": train.base_learning_rate,
        "power": train.learning_rate_power, "batch": train.batch_size,
        "freeze_bn": train.freeze_batch_norm, "upsample_logits": train.upsample_logits,
        "bootstrap_classes": set(data.bootstrap_classes),
        "bootstrap_factor": data.bootstrap_factor, "eval_split": evaluation.split,
        "eval_output_stride": evaluation.output_stride,
        "eval_scales": tuple(evaluation.scales), "eval_flip": evaluation.flip}
    checked = {key: fields[key] for key in row if key in fields}
    assert checked == {key: row[key] for key in checked}
    assert data.num_classes == model.num_classes
    if "init_from" in row:  # the run this stage starts from (its documented work dir)
        assert train.init_checkpoint.rstrip("/").endswith(row["init_from"])
    if "bootstrap_classes" not in row:
        assert not data.bootstrap_classes


@pytest.mark.parametrize("name", NAMES)
def test_experiment_builds_and_matches_its_paper_row(name, small_data):
    module = importlib.import_module(f"experiments.{name}")
    config = config_lib.load_experiment(name)
    with_classes(config, small_data.get(config.data.dataset))
    row = PAPER.get(name)
    if row is not None:
        check_row(config, row)
        if "number" in row:  # the paper's figure of this row: in its config and docstring
            assert row["number"] in [r["miou"] for r in config.paper.results]
            assert row["number"] in module.__doc__
        # Its paper section names this file's protocol: stage 2 (frozen BN, OS 8) rows
        # the stage 2 one, Cityscapes rows Cityscapes', the rest VOC stage 1's / COCO's.
        assert config.paper.protocol == PROTOCOL.get(name, "voc_stage1")
    else:
        assert config.data.dataset == NOT_PAPER[name]

    # The model as configured: its layers follow the paper's rates, and a 33x33 image
    # comes out at ceil(33 / output stride).
    model = built_model(config.model)
    output_stride = config.model.output_stride
    if row is not None:
        check_model_layers(model, row, output_stride)
    logits = np.asarray(model(np.zeros((1, 33, 33, 3), np.float32)))
    assert logits.shape == (1, -(-33 // output_stride), -(-33 // output_stride),
                            config.model.num_classes)
    # At the evaluation output stride (the same weights, paper 4.1): the plan of rates.
    eval_stride = config.eval.output_stride
    if row is not None and eval_stride != output_stride:
        plan = modeling.plan_blocks(config.model.depth, eval_stride, config.model.multi_grid,
                                    config.model.extra_blocks)
        for block, units in enumerate(plan, start=1):
            multi_grid = row["multi_grid"] if block >= 4 else (1,) * len(units)
            assert [u.atrous_rate for u in units] == [
                block_rate(block, eval_stride) * r for r in multi_grid], block
        if row["head"] == "aspp":
            assert modeling.scaled_rates(config.model.aspp_rates or (6, 12, 18), eval_stride
                                         ) == tuple(r * 16 // eval_stride
                                                    for r in row["aspp_rates_os16"])

    # The training input of its own data set and split, at crop 33.
    small = with_classes(config_lib.load_experiment(name, [
        f"data.data_dir={small_data[config.data.dataset]}", "data.crop_size=33"]),
        small_data[config.data.dataset])
    images, labels = next(iter(data_lib.train_input(small.data, 2)))
    assert images.shape == (2, 33, 33, 3) and images.dtype == "float32"
    assert labels.shape == (2, 33, 33) and labels.dtype == "int32"
    values = set(np.unique(labels.numpy()))
    assert values <= set(range(config.data.num_classes)) | {255}
    # The evaluation split exists (VOC test labels are not public: the test server).
    splits = tfds.builder(config.data.dataset, data_dir=small_data[config.data.dataset]
                          ).info.splits
    assert config.eval.split in splits or (name == "voc_trainval_bootstrap" and
                                           config.eval.split == "test")
