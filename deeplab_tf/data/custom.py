"""`custom_seg/NAME`: one's own segmentation data as a TFDS builder, any classes.

Not in the paper: the authors' build_voc2012_data.py converts one layout with 21 fixed
classes. Here any export folder that `own_layout` reads (a VOC-style tree as CVAT or
labelme write it, or images/ + masks/) becomes a TFDS data set, and the class table it was
built with (names, colours, ignore label) travels in the data set's metadata. Images are
stored as their files are, byte for byte: JPEG, PNG, or a mix of both (then the image
feature has no fixed encoding_format and each image is decoded by its own format):

    python -m tools.build_dataset --dataset=custom_seg/shapes --manual_dir=EXPORT \
        --data_dir=~/tensorflow_datasets

NAME is the user's (letters, digits, underscores): every own data set is a TFDS
BuilderConfig of `custom_seg`, stored in DATA_DIR/custom_seg/NAME/VERSION, so any number
of them live side by side in one data_dir. Training and evaluation find one again with
`data.dataset="custom_seg/NAME"` and the same `data.data_dir`: TFDS reads a built config
that the code does not list from its own files (features, class names, metadata), and
`class_table("custom_seg/NAME", data_dir)` returns its `classes.ClassTable`.
"""
import dataclasses
import os
import re
import typing

import tensorflow_datasets as tfds

from deeplab_tf import classes
from deeplab_tf.data import features, own_layout

NAME = "custom_seg"
_CONFIG_NAME = re.compile(r"^\w+$")


def is_custom(dataset):
    return dataset == NAME or dataset.startswith(NAME + "/")


def config_name(dataset):
    """NAME of "custom_seg/NAME"; an error that says how to name one otherwise."""
    name = dataset[len(NAME) + 1:] if dataset.startswith(NAME + "/") else ""
    if not _CONFIG_NAME.match(name):
        raise ValueError(f"dataset {dataset!r}: name your own data set "
                         f"{NAME}/NAME, NAME of letters, digits and underscores "
                         f"(e.g. {NAME}/shapes)")
    return name


@dataclasses.dataclass(eq=False)
class CustomSegConfig(tfds.core.BuilderConfig):
    """One own data set; `layout` (an `own_layout.OwnLayout`) only while it is built."""
    layout: typing.Any = None


class CustomSeg(tfds.core.GeneratorBasedBuilder):
    """One's own segmentation data: a VOC-style export or images/ + masks/, any classes."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "VOC-style trees (CVAT, labelme) and plain folders."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = own_layout.__doc__

    def _create_builder_config(self, builder_config, version):
        # Every name is a data set of the user's: there is no list of configs to look it
        # up in. A built one is read from its files (tfds.builder does that for a config
        # the code does not list); this path serves one not built yet, so that
        # is_prepared() is False and the caller can say how to build it.
        del version
        if builder_config is None:
            config_name(NAME)  # raises: the name is missing
        if isinstance(builder_config, str):
            builder_config = CustomSegConfig(name=config_name(f"{NAME}/{builder_config}"))
        return builder_config

    def _info(self):
        layout = self.builder_config.layout
        if layout is None:  # not built: nothing is known about the classes yet
            return tfds.core.DatasetInfo(
                builder=self, description=self.__doc__,
                features=features.segmentation_features(None, "jpeg"))
        return tfds.core.DatasetInfo(
            builder=self, description=(f"{self.__doc__} Built from {layout.manual_dir} "
                                       f"with the classes of {layout.class_file.path}."),
            features=features.segmentation_features(layout.table.names,
                                                    layout.image_format),
            metadata=tfds.core.MetadataDict(layout.metadata()))

    def _split_generators(self, dl_manager):
        del dl_manager  # the layout was read and checked before the build began
        layout = self.builder_config.layout
        if layout is None:
            raise ValueError(f"{NAME}/{self.builder_config.name} is built by "
                             f"deeplab_tf.data.build (tools.build_dataset), which reads "
                             f"and checks the export folder first")
        return {split: self._generate_examples(items)
                for split, items in layout.split_items().items()}

    def _generate_examples(self, items):
        layout = self.builder_config.layout
        for name, image_path, mask_path in items:
            yield name, features.checked_example(
                image_path, layout.read_mask(mask_path), mask_path, name,
                layout.table.num_classes, layout.format_of(name))


def make_builder(dataset, manual_dir, data_dir=None, **options):
    """The builder of "custom_seg/NAME" from `manual_dir`, after reading and checking all
    of it (`own_layout.OwnLayout`'s options: class_file, ignore_value, ignore_color,
    val_fraction, split_seed)."""
    name = config_name(dataset)
    layout = own_layout.OwnLayout(manual_dir, **options)
    return CustomSeg(config=CustomSegConfig(name=name, layout=layout,
                                            description=f"built from {layout.manual_dir}"),
                     data_dir=data_dir)


def class_table(dataset, data_dir=None):
    """The `classes.ClassTable` recorded when "custom_seg/NAME" was built in `data_dir`."""
    config_name(dataset)
    data_dir = data_dir and os.path.expanduser(os.fspath(data_dir))
    builder = tfds.builder(dataset, data_dir=data_dir)
    if not os.path.isfile(os.path.join(builder.data_dir, "dataset_info.json")):
        raise FileNotFoundError(
            f"dataset {dataset!r} is not built in {builder.data_dir}; run python -m "
            f"tools.build_dataset --dataset={dataset} --manual_dir=EXPORT_DIR "
            f"--data_dir={data_dir or 'DIR'}")
    metadata = builder.info.metadata or {}
    if "class_table" not in metadata:
        raise ValueError(f"{builder.data_dir}: no class table in the data set's metadata")
    return classes.ClassTable.from_dict(metadata["class_table"])
