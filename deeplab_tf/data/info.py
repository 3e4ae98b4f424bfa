"""What a data set says about itself: its class table (names, colours, ignore value)."""
from deeplab_tf import classes


def class_table(dataset, data_dir=None):
    """The `classes.ClassTable` of `dataset` (a TFDS builder name built into `data_dir`).

    The built-in data sets have fixed tables; one's own ("custom_seg/NAME") has the table
    recorded in its metadata when it was built (deeplab_tf/data/custom.py).
    """
    from deeplab_tf.data import custom  # TensorFlow Datasets: only for one's own sets
    if custom.is_custom(dataset):
        return custom.class_table(dataset, data_dir)
    table = classes.builtin(dataset)
    if table is None:
        raise ValueError(f"data set {dataset!r} has no class table")
    return table
