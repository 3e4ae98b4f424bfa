"""The tf.data input functions: `train_input` (paper 4.1 augmentation, 4.3 bootstrapping)
and `eval_input` (whole images padded to the evaluation crop size, paper 4.1).

Both read a TFDS builder registered by `deeplab_tf.data`. Images and labels stay encoded
until the parallel map, where the augmentation decodes only the image window it needs.
"""
import tensorflow as tf
import tensorflow_datasets as tfds

from deeplab_tf.data import augment
from deeplab_tf.data.bootstrap import bootstrap
from deeplab_tf.evaluation.inference import padded_size

# Both stay encoded through the shuffle buffer (a tenth of the memory) and are decoded in
# the parallel map.
_SKIP = {"image": tfds.decode.SkipDecoding(), "label": tfds.decode.SkipDecoding()}

# Measured here: a float32 crop batch (16 x 513 x 513 x 3 = 50 MB) is freshly mmapped by
# glibc for every batch, and the page faults cost more than the augmentation's resize.
# With transparent huge pages and freed memory kept in the heap, the input pipeline is
# about 20% faster per core (tools/bench/benchmark_input.py). glibc reads this at process start:
# export GLIBC_TUNABLES=... before launching training.
MALLOC_TUNABLES = ("glibc.malloc.hugetlb=1:glibc.malloc.mmap_threshold=33554432:"
                   "glibc.malloc.trim_threshold=1073741824")


def load_builder(data_config):
    """The TFDS builder of `data_config.dataset`, after checking its class count."""
    builder = tfds.builder(data_config.dataset, data_dir=data_config.data_dir)
    if not builder.is_prepared():
        raise FileNotFoundError(
            f"dataset {data_config.dataset!r} is not built in {builder.data_dir}; run "
            f"python -m tools.build_dataset --dataset={data_config.dataset} "
            f"--manual_dir=DIR --data_dir={data_config.data_dir or 'DIR'}")
    if data_config.ignore_label != augment.IGNORE_LABEL:
        raise ValueError(f"data.ignore_label is {data_config.ignore_label}, but the builders "
                         f"store the ignore label as {augment.IGNORE_LABEL}")
    num_classes = builder.info.features["classes"].feature.num_classes
    if num_classes != data_config.num_classes:
        raise ValueError(f"dataset {data_config.dataset!r} ({builder.data_dir}) has "
                         f"{num_classes} classes, but data.num_classes is "
                         f"{data_config.num_classes}")
    return builder


def _is_jpeg(builder):
    """True (JPEG images), False (PNG), None (both: each image decoded by its format)."""
    image_format = builder.info.features["image"].encoding_format
    return None if image_format is None else image_format == "jpeg"


def _split(builder, split):
    # TFDS split expressions join splits with "+" (cityscapes_coarse: "train+val+train_extra").
    missing = [name for name in split.split("+") if name.strip() not in builder.info.splits]
    if missing:
        raise ValueError(f"dataset {builder.name!r} has no split {missing[0].strip()!r} (it "
                         f"has {sorted(builder.info.splits)})")
    return builder.as_dataset(split=split, shuffle_files=False, decoders=_SKIP,
                              read_config=tfds.ReadConfig(try_autocache=False))


def training_examples(data_config, input_context=None):
    """One epoch of encoded training examples: this worker's shard, bootstrapped.

    Sharding is by example (`Dataset.shard`), not by file, so any number of input
    pipelines works on data sets of a single file.
    """
    builder = load_builder(data_config)
    dataset = _split(builder, data_config.train_split)
    if input_context is not None:
        dataset = dataset.shard(input_context.num_input_pipelines,
                                input_context.input_pipeline_id)
    return bootstrap(dataset, data_config.bootstrap_classes, data_config.bootstrap_factor)


def train_input(data_config, batch_size, seed=0, input_context=None):
    """Infinite (images float32 [B,crop,crop,3] 0..255, labels int32 [B,crop,crop]).

    With a `tf.distribute.InputContext`, each input pipeline reads its own shard of the
    examples and `batch_size` (the global batch) becomes the per-replica batch.
    """
    is_jpeg = _is_jpeg(load_builder(data_config))
    dataset = training_examples(data_config, input_context)
    pipeline_id = 0
    if input_context is not None:
        pipeline_id = input_context.input_pipeline_id
        batch_size = input_context.get_per_replica_batch_size(batch_size)
    dataset = dataset.shuffle(data_config.shuffle_buffer, seed=seed + 1000 * pipeline_id,
                              reshuffle_each_iteration=True).repeat().enumerate()

    def augment_example(index, example):
        element_seed = tf.stack([tf.cast(seed * 1000003 + pipeline_id, tf.int64), index])
        label = tf.io.decode_png(example["label"], channels=1)
        return augment.train_augment(
            example["image"], label, element_seed, data_config.crop_size,
            data_config.min_scale, data_config.max_scale, data_config.scale_step,
            data_config.flip, is_jpeg)

    dataset = dataset.map(augment_example, num_parallel_calls=tf.data.AUTOTUNE,
                          deterministic=True)
    options = tf.data.Options()
    # Parallelism across examples, not inside one example's small ops: less thread
    # hand-off per example (the tf.data performance guide's advice for such maps).
    options.threading.max_intra_op_parallelism = 1
    return dataset.batch(batch_size, drop_remainder=True).prefetch(
        tf.data.AUTOTUNE).with_options(options)


def eval_input(data_config, split, output_stride, crop_size=None):
    """One whole image per element, in the split's order, padded (never cropped) to the
    evaluation crop size (height, width) as the authors' input_preprocess does: a larger
    image to the next output_stride*k+1 that holds it; crop_size None: each image to the
    smallest output_stride*k+1 (the `eval.pad_to="smallest"` protocol)."""
    builder = load_builder(data_config)
    output_stride = output_stride or 32  # no atrous: pad for the largest stride used
    crop_height, crop_width = (None, None) if crop_size is None else crop_size
    is_jpeg = _is_jpeg(builder)

    def pad_example(example):
        image = augment.decode_image(example["image"], is_jpeg)
        label = tf.io.decode_png(example["label"], channels=1)
        shape = tf.shape(label)
        image, label = augment.eval_pad(image, label,
                                        padded_size(shape[0], output_stride, crop_height),
                                        padded_size(shape[1], output_stride, crop_width))
        return {"image": image[None], "label": label[None], "height": shape[0],
                "width": shape[1], "file_name": example["file_name"]}

    return _split(builder, split).map(pad_example, num_parallel_calls=tf.data.AUTOTUNE,
                                      deterministic=True).prefetch(tf.data.AUTOTUNE)
