"""Shared pieces of the experiment configs: functions, not copies."""
from deeplab_tf import config as config_lib

VOC_HARD_CLASSES = (2, 9, 11, 16, 18)  # bicycle, chair, diningtable, pottedplant, sofa


def voc_stage1():
    """Paper 4.1 stage 1: train_aug, OS 16, crop 513, batch 16, lr 0.007, 30K steps, BN trained."""
    config = config_lib.ExperimentConfig()
    config.data.dataset = "pascal_voc_seg"
    config.data.train_split = "train_aug"
    config.data.eval_split = "val"
    return config


def synthetic(crop_size=129):
    """The generated VOC-layout set (tools/make_synthetic.py), sized for a CPU."""
    config = config_lib.ExperimentConfig()
    config.data.dataset = "synthetic_voc"
    config.data.crop_size = crop_size
    config.data.shuffle_buffer = 256
    return config
