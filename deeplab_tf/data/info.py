"""What a data set says about itself: its class table (names, colours, ignore value)."""
from deeplab_tf import classes


def class_table(dataset, data_dir=None):
    """The `classes.ClassTable` of `dataset` (a TFDS builder name built into `data_dir`).

    The built-in data sets have fixed tables; any other has none yet.
    """
    del data_dir  # the built-in tables do not depend on the build
    table = classes.builtin(dataset)
    if table is None:
        raise ValueError(f"data set {dataset!r} has no class table")
    return table
