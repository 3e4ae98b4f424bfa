"""The training and evaluation input (paper 4.1 augmentation, 4.3 bootstrapping, 3 whole-
image inference): alignment of image and label, padding, determinism, sharding."""
import collections
import io
import itertools
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from deeplab_tf import config as config_lib
from deeplab_tf import data
from deeplab_tf import synthetic
from deeplab_tf.data import pipeline
from deeplab_tf.modeling import MEAN_PIXEL

HARD = (2, 9, 11, 16, 18)
# 21 colours, one per class, at least 127 apart in some channel and far from the mean.
COLOURS = np.array([c for c in itertools.product((0, 127, 255), repeat=3)
                    if c != (127, 127, 127)][:21], dtype=np.uint8)


def colour_scene(rng, block=12):
    """An image whose colour encodes the class of each 12x12 block of its label."""
    height, width = rng.integers(40, 91, size=2)
    blocks = rng.integers(0, 21, ((height - 1) // block + 1, (width - 1) // block + 1))
    label = np.kron(blocks, np.ones((block, block), dtype=np.int64))[:height, :width]
    return COLOURS[label], label.astype(np.uint8)


@pytest.fixture(scope="module")
def colour_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("colour")
    rng = np.random.default_rng(0)
    names = [f"c_{i:03d}" for i in range(12)]
    scenes = [(n, *colour_scene(rng)) for n in names]
    synthetic.write_voc_layout(str(root / "source"), scenes, {
        "train": names, "val": names[:3], "trainval": names}, jpeg_quality=100)
    data.build("synthetic_voc", root / "source", root / "tfds")
    sources = {}
    for name, _, label in scenes:
        path = os.path.join(root, "source", "JPEGImages", name + ".jpg")
        sources[name] = (tf.io.decode_jpeg(tf.io.read_file(path)).numpy(), label)
    return str(root / "tfds"), sources


def data_config(data_dir, **kwargs):
    config = config_lib.DataConfig(dataset="synthetic_voc", data_dir=data_dir,
                                   shuffle_buffer=16)
    for key, value in kwargs.items():
        setattr(config, key, value)
    return config


def first_batches(config, count, batch_size=4, seed=0, input_context=None):
    dataset = data.train_input(config, batch_size, seed=seed, input_context=input_context)
    return [(x.numpy(), y.numpy()) for x, y in dataset.take(count)]


@pytest.mark.parametrize("scale_step", [0.0, 0.25])
def test_label_follows_image_under_scale_crop_pad_flip(colour_data, scale_step):
    config = data_config(colour_data[0], crop_size=65, scale_step=scale_step)
    images, labels = map(np.concatenate, zip(*first_batches(config, 12)))
    assert images.shape == (48, 65, 65, 3) and images.dtype == np.float32
    assert labels.shape == (48, 65, 65) and labels.dtype == np.int32
    padding = labels == 255  # the source labels have no 255: 255 is exactly the padding
    np.testing.assert_array_equal(np.all(images == np.float32(MEAN_PIXEL), -1), padding)
    assert 0 < padding.mean() < 0.9  # small scales pad, large ones crop
    # Away from block borders (where bilinear mixes colours) the colour names the class.
    window = np.lib.stride_tricks.sliding_window_view(
        np.pad(labels, [(0, 0), (2, 2), (2, 2)], constant_values=-1), (5, 5), (1, 2))
    interior = (window == labels[..., None, None]).all((-1, -2)) & ~padding
    nearest = np.argmin(((images[..., None, :] - COLOURS.astype(np.float32)) ** 2).sum(-1), -1)
    assert interior.sum() > 0.3 * labels.size
    np.testing.assert_array_equal(nearest[interior], labels[interior])


def test_random_scales_are_the_authors_steps():
    """input_preprocess: scales from 0.5 to 2.0 in steps of 0.25 (scale_factor_step_size)."""
    from deeplab_tf.data import augment
    drawn = {float(augment.random_scale(tf.constant([3, i], tf.int64), 0.5, 2.0, 0.25))
             for i in range(200)}
    assert drawn == {0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0}
    continuous = [float(augment.random_scale(tf.constant([3, i], tf.int64), 0.5, 2.0, 0.0))
                  for i in range(50)]
    assert len(set(continuous)) == 50 and 0.5 <= min(continuous) < max(continuous) < 2.0


def test_unit_scale_reproduces_the_image_exactly_padded_and_flipped(colour_data):
    data_dir, sources = colour_data
    config = data_config(data_dir, crop_size=97, min_scale=1.0, max_scale=1.0)
    by_shape = collections.defaultdict(list)
    for image, label in sources.values():
        by_shape[image.shape].append((image, label))
    flips = set()
    for images, labels in first_batches(config, 6):
        for image, label in zip(images, labels):
            rows = int((label != 255).any(1).sum())
            columns = np.flatnonzero((label != 255).any(0))
            flipped = columns[0] > 0  # the padding moves to the left when flipped
            crop = np.s_[:rows, columns[0]:columns[-1] + 1]
            got_image, got_label = image[crop], label[crop]
            if flipped:
                got_image, got_label = got_image[:, ::-1], got_label[:, ::-1]
            matches = [np.array_equal(got_image, source.astype(np.float32)) and
                       np.array_equal(got_label, source_label)
                       for source, source_label in by_shape[got_image.shape]]
            assert any(matches)
            assert (label[rows:] == 255).all() and (image[rows:] == np.float32(MEAN_PIXEL)).all()
            flips.add(bool(flipped))
    assert flips == {True, False}


def test_stream_is_deterministic_in_the_seed(colour_data):
    config = data_config(colour_data[0], crop_size=33)
    a, b, c = (first_batches(config, 3, seed=s) for s in (0, 0, 1))
    assert all(np.array_equal(x[0], y[0]) and np.array_equal(x[1], y[1]) for x, y in zip(a, b))
    assert not all(np.array_equal(x[0], y[0]) for x, y in zip(a, c))


def names_of(dataset):
    return collections.Counter(ex["file_name"].decode() for ex in tfds.as_numpy(dataset))


def test_bootstrapping_repeats_hard_class_images_k_times(synthetic_voc):
    hard = {name for name in synthetic_voc.splits["train"] if set(np.unique(
        synthetic.make_scene(0, synthetic_voc.splits["trainval"].index(name))[1])) & set(HARD)}
    assert 0 < len(hard) < 16  # the synthetic set has both kinds
    for factor in (1, 3):
        config = data_config(synthetic_voc.data_dir, bootstrap_classes=HARD,
                             bootstrap_factor=factor)
        counts = names_of(pipeline.training_examples(config))
        assert counts == {name: factor if name in hard else 1
                          for name in synthetic_voc.splits["train"]}


def test_shards_are_disjoint_and_cover_the_split(synthetic_voc):
    config = data_config(synthetic_voc.data_dir, bootstrap_classes=HARD, bootstrap_factor=2)
    whole = names_of(pipeline.training_examples(config))
    shards = [names_of(pipeline.training_examples(config, tf.distribute.InputContext(
        num_input_pipelines=2, input_pipeline_id=i, num_replicas_in_sync=2))) for i in (0, 1)]
    assert not set(shards[0]) & set(shards[1])
    assert shards[0] + shards[1] == whole
    context = tf.distribute.InputContext(2, 1, 2)
    images, labels = first_batches(data_config(synthetic_voc.data_dir, crop_size=33), 1,
                                   batch_size=8, input_context=context)[0]
    assert images.shape == (4, 33, 33, 3) and labels.shape == (4, 33, 33)


@pytest.mark.parametrize("output_stride,crop_size", [(8, None), (16, None), (16, (129, 161))])
def test_eval_input_pads_whole_images(synthetic_voc, output_stride, crop_size):
    """Paper 4.1: padded at the bottom/right (never cropped) to the evaluation crop size,
    a larger image to the next output_stride*k+1 holding it; crop_size None: each image
    to its smallest output_stride*k+1."""
    config = data_config(synthetic_voc.data_dir)
    elements = list(data.eval_input(config, "val", output_stride, crop_size)
                    .as_numpy_iterator())
    again = [e["file_name"] for e in data.eval_input(config, "val", output_stride, crop_size)
             .as_numpy_iterator()]
    assert [e["file_name"] for e in elements] == again  # deterministic order
    assert sorted(n.decode() for n in again) == sorted(synthetic_voc.splits["val"])
    for element in elements:
        name, height, width = element["file_name"].decode(), element["height"], element["width"]
        _, padded_h, padded_w, _ = element["image"].shape
        assert element["label"].shape == (1, padded_h, padded_w)
        crop = crop_size or (1, 1)
        for size, least, padded in ((height, crop[0], padded_h), (width, crop[1], padded_w)):
            needed = max(size, least)  # the smallest output_stride*k+1 >= needed:
            assert (padded - 1) % output_stride == 0 and 0 <= padded - needed < output_stride
        source = os.path.join(synthetic_voc.source_dir, "JPEGImages", name + ".jpg")
        image = tf.io.decode_jpeg(tf.io.read_file(source)).numpy()
        np.testing.assert_array_equal(element["image"][0, :height, :width], image)
        index = synthetic_voc.splits["trainval"].index(name)
        np.testing.assert_array_equal(element["label"][0, :height, :width],
                                      synthetic.make_scene(0, index)[1])
        assert (element["label"][0, height:] == 255).all()
        assert (element["label"][0, :, width:] == 255).all()
        assert (element["image"][0, height:] == np.float32(MEAN_PIXEL)).all()


def test_class_count_and_split_are_checked(synthetic_voc):
    with pytest.raises(ValueError, match=r"has 21 classes, but data.num_classes is 19"):
        data.train_input(data_config(synthetic_voc.data_dir, num_classes=19), 2)
    with pytest.raises(ValueError, match=r"no split 'train_aug'"):
        data.train_input(data_config(synthetic_voc.data_dir, train_split="train_aug"), 2)
    with pytest.raises(FileNotFoundError, match=r"is not built"):
        data.eval_input(data_config(str(synthetic_voc.source_dir)), "val", 16)


def test_split_expressions_join_splits(synthetic_voc):
    # cityscapes_coarse trains on "train+val+train_extra".
    config = data_config(synthetic_voc.data_dir, train_split="train+val")
    names = [e["file_name"].numpy().decode() for e in pipeline.training_examples(config)]
    assert sorted(names) == sorted(synthetic_voc.splits["train"] + synthetic_voc.splits["val"])
    with pytest.raises(ValueError, match=r"no split 'extra'"):
        data.train_input(data_config(synthetic_voc.data_dir, train_split="train+extra"), 2)


def test_nearest_resize_makes_every_image_pixel_match_its_label(colour_data):
    """With nearest-neighbour images (a test-only option) no pixel may disagree."""
    from deeplab_tf.data import augment
    config = data_config(colour_data[0])
    dataset = tfds.load("synthetic_voc", split="train", data_dir=colour_data[0],
                        decoders={"image": tfds.decode.SkipDecoding()})
    for index, example in enumerate(dataset):
        for scale in (0.5, 0.75, 1.3, 2.0):
            image, label = augment.train_augment(
                example["image"], example["label"], tf.constant([7, index], tf.int64), 65,
                scale, scale, 0.0, True, True, image_method="nearest")
            image, label = image.numpy(), label.numpy()
            valid = label != 255
            nearest = np.argmin(((image[..., None, :] - COLOURS.astype(np.float32)) ** 2)
                                .sum(-1), -1)
            np.testing.assert_array_equal(nearest[valid], label[valid])
            assert (image[~valid] == np.float32(MEAN_PIXEL)).all()


def whole_image_reference(image, label, crop_size, scale, offset, flipped):
    """The authors' order on the whole image (input_preprocess.py): resize to
    int(s*H) x int(s*W) with aligned corners (bilinear image, nearest label), pad with the
    mean pixel / 255 to at least the crop, crop at `offset`, flip."""
    height, width = label.shape
    size = [int(np.float32(height) * np.float32(scale)),
            int(np.float32(width) * np.float32(scale))]
    scaled = tf.raw_ops.ResizeBilinear(images=image[None].astype(np.float32), size=size,
                                       align_corners=True, half_pixel_centers=False)[0]
    scaled_label = tf.raw_ops.ResizeNearestNeighbor(
        images=label[None, ..., None], size=size, align_corners=True,
        half_pixel_centers=False)[0, ..., 0]
    padded = np.empty((max(size[0], crop_size), max(size[1], crop_size), 3), np.float32)
    padded[...] = MEAN_PIXEL
    padded[:size[0], :size[1]] = scaled
    padded_label = np.full(padded.shape[:2], 255, np.int32)
    padded_label[:size[0], :size[1]] = scaled_label
    window = np.s_[offset[0]:offset[0] + crop_size, offset[1]:offset[1] + crop_size]
    image, label = padded[window], padded_label[window]
    return (image[:, ::-1], label[:, ::-1]) if flipped else (image, label)


@pytest.mark.parametrize("encoding", ["png", "jpeg"])
def test_crop_equals_the_same_window_of_the_whole_image_resize(encoding):
    """Paper 4.1 augmentation: resizing only the crop's source window samples exactly the
    pixels (and labels) of the whole-image resize, at every scale, offset and flip."""
    from PIL import Image
    from deeplab_tf.data import augment
    rng = np.random.default_rng(5)
    for case in range(12):
        height, width = (int(v) for v in rng.integers(7, 90, 2))
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        label = rng.integers(0, 21, (height, width), dtype=np.uint8)
        if encoding == "jpeg":  # 4:2:0, as VOC's: decoding a window is the delicate part
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, format="JPEG", quality=90, subsampling=2)
            encoded = buffer.getvalue()
            image = tf.io.decode_jpeg(encoded).numpy()
        else:
            encoded = tf.io.encode_png(image).numpy()
        crop_size = int(rng.choice([17, 33, 65]))
        for scale in (0.5, 0.75, 1.0, 1.25, 2.0, float(rng.uniform(0.5, 2.0))):
            scaled = [int(np.float32(s) * np.float32(scale)) for s in (height, width)]
            offset = [int(rng.integers(0, max(s - crop_size, 0) + 1)) for s in scaled]
            flipped = bool(case % 2)
            got_image, got_label = augment.scale_crop_flip(
                encoded, tf.constant(label[..., None]), encoding == "jpeg", crop_size,
                tf.constant(scale, tf.float32), offset, tf.constant(flipped))
            expected_image, expected_label = whole_image_reference(
                image, label, crop_size, scale, offset, flipped)
            where = f"case {case}: {height}x{width}, scale {scale}, offset {offset}"
            np.testing.assert_array_equal(got_label.numpy(), expected_label, err_msg=where)
            np.testing.assert_array_equal(got_image.numpy(), expected_image, err_msg=where)
