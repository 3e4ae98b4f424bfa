"""Bootstrapping (paper 4.3): hard-class images appear k times per epoch.

The paper duplicates, in the training set, the images that contain a hard class (VOC:
bicycle, chair, diningtable, pottedplant, sofa). Here the duplication happens in tf.data,
from the `classes` feature each builder stores, so no file is copied and no label is
decoded to decide. Repeats are spread by the shuffle that follows.
"""
import tensorflow as tf


def contains_any(classes, bootstrap_classes):
    """True when the example's class ids include any of `bootstrap_classes`."""
    hard = tf.constant(list(bootstrap_classes), dtype=classes.dtype)
    return tf.reduce_any(tf.equal(classes[:, None], hard[None, :]))


def bootstrap(dataset, bootstrap_classes, bootstrap_factor):
    """Each element whose "classes" hit `bootstrap_classes` appears `bootstrap_factor` times."""
    if bootstrap_factor < 1:
        raise ValueError(f"bootstrap_factor must be >= 1, got {bootstrap_factor}")
    if not bootstrap_classes or bootstrap_factor == 1:
        return dataset

    def repeat(example):
        times = tf.where(contains_any(example["classes"], bootstrap_classes),
                         tf.constant(bootstrap_factor, tf.int64), tf.constant(1, tf.int64))
        return tf.data.Dataset.from_tensors(example).repeat(times)

    return dataset.flat_map(repeat)
