"""The DeepLabv3 model family: shapes, atrous consistency, parameter counts, serialization."""
import numpy as np
import pytest
import tensorflow as tf
import keras

from deeplab_tf import config as config_lib
from deeplab_tf import modeling
from deeplab_tf.evaluation import inference
from deeplab_tf.modeling import resnet


def _randomize_batch_norm(model, seed=0):
    """Non-trivial BN statistics so that inference-mode features are not near-identity."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(0, 0.1, c),
                               rng.normal(0, 0.1, c), rng.uniform(0.5, 2.0, c)])


def _features(model, image):
    return np.asarray(model(image, training=False))


# ---------------------------------------------------------------- output stride -> layout

def test_plan_multi_grid_rates_follow_the_paper():
    # Paper 3.2.1: OS 16, Multi Grid (1, 2, 4) -> rates 2 * (1, 2, 4) in block4.
    plan = modeling.plan_blocks(101, 16, (1, 2, 4))
    assert [u.atrous_rate for u in plan[3]] == [2, 4, 8]
    assert [u.stride for u in plan[3]] == [1, 1, 1]
    # OS 8: block3 runs at rate 2, block4 at 4 * (1, 2, 4).
    plan = modeling.plan_blocks(101, 8, (1, 2, 4))
    assert {u.atrous_rate for u in plan[2]} == {2}
    assert [u.atrous_rate for u in plan[3]] == [4, 8, 16]


def test_plan_stride_two_is_the_last_unit_of_blocks_one_to_three():
    plan = modeling.plan_blocks(50, None, (1, 1, 1))
    for block in plan[:3]:
        assert [u.stride for u in block] == [1] * (len(block) - 1) + [2]
    assert [u.stride for u in plan[3]] == [1, 1, 1]  # block4 never strides when last
    assert modeling.effective_output_stride(plan) == 32


def test_plan_cascaded_blocks_rates_double_per_block():
    # Figure 3(b): OS 16, block4..block7 at rates 2, 4, 8, 16 (times the unit rates).
    plan = modeling.plan_blocks(50, 16, (1, 2, 1), extra_blocks=3)
    assert len(plan) == 7
    for block, rate in zip(plan[3:], (2, 4, 8, 16)):
        assert [u.atrous_rate for u in block] == [rate, 2 * rate, rate]
    # Without atrous convolution block7 ends at output stride 256 (Table 1).
    assert modeling.effective_output_stride(modeling.plan_blocks(50, None, (1, 1, 1), 3)) == 256
    assert modeling.effective_output_stride(modeling.plan_blocks(50, 64, (1, 1, 1), 3)) == 64


@pytest.mark.parametrize("bad,message", [
    (dict(output_stride=12), r"output_stride must be None or one of .*, got 12"),
    (dict(output_stride=64), r"output_stride 64 is out of reach: depth 50 with 0 extra "
                             r"blocks stops at stride 32"),
    (dict(depth=34), r"depth must be one of \[50, 101\], got 34"),
    (dict(multi_grid=(1, 2)), r"multi_grid needs 3 positive unit rates, got \(1, 2\)"),
    (dict(extra_blocks=4), r"extra_blocks must be 0\.\.3 .*, got 4"),
    # Without atrous convolution block4 strides, so multi-grid (1, 2, 4) cannot apply.
    (dict(output_stride=None, extra_blocks=1),
     r"block4 unit 3 strides by 2, so its multi-grid rate must be 1, got "
     r"multi_grid=\(1, 2, 4\)"),
])
def test_plan_rejects_what_the_network_cannot_do(bad, message):
    kwargs = dict(depth=50, output_stride=16, multi_grid=(1, 2, 4), extra_blocks=0)
    kwargs.update(bad)
    with pytest.raises(ValueError, match=message):
        modeling.plan_blocks(**kwargs)


def test_aspp_rates_scale_with_output_stride():
    assert modeling.scaled_rates((6, 12, 18), 16) == (6, 12, 18)
    assert modeling.scaled_rates((6, 12, 18), 8) == (12, 24, 36)
    assert modeling.scaled_rates((6, 12, 18), 4) == (24, 48, 72)
    assert modeling.scaled_rates((6, 12, 18, 24), 8) == (12, 24, 36, 48)
    model = modeling.deeplabv3(depth=50, output_stride=8, image_shape=(65, 65, 3))
    dilations = [model.get_layer(f"aspp_atrous{i}").dilation_rate for i in (1, 2, 3)]
    assert dilations == [(12, 12), (24, 24), (36, 36)]


# ---------------------------------------------------------------- feature sizes

@pytest.mark.parametrize("output_stride,expected", [(8, 65), (16, 33), (32, 17), (4, 129)])
def test_feature_size_for_513_inputs(output_stride, expected):
    backbone = modeling.atrous_resnet(50, output_stride, image_shape=(513, 513, 3))
    assert backbone.output_shape == (None, expected, expected, 2048)
    assert modeling.feature_size(513, output_stride) == expected
    model = modeling.deeplabv3(21, depth=50, output_stride=output_stride,
                               image_shape=(513, 513, 3))
    assert model.output_shape == (None, expected, expected, 21)


@pytest.mark.parametrize("size", [(321, 321), (96, 200), (1, 1), (769, 1025)])
@pytest.mark.parametrize("output_stride", [8, 16])
def test_feature_size_for_other_sizes(size, output_stride):
    backbone = modeling.atrous_resnet(50, output_stride, image_shape=(*size, 3))
    expected = tuple(modeling.feature_size(s, output_stride) for s in size)
    assert backbone.output_shape[1:3] == expected
    assert expected == tuple(int(np.ceil(s / output_stride)) for s in size)


def test_feature_size_computed_on_a_real_image():
    model = modeling.deeplabv3(21, depth=50, output_stride=16)
    logits = model(np.zeros((2, 100, 71, 3), "float32"))
    assert logits.shape == (2, 7, 5, 21)
    full = modeling.with_upsampled_logits(model)(np.zeros((2, 100, 71, 3), "float32"))
    assert full.shape == (2, 100, 71, 21)


def test_block_endpoints_reachable_by_name():
    model = modeling.deeplabv3(21, depth=50, output_stride=16, image_shape=(129, 129, 3))
    sizes = {name: model.get_layer(name).output.shape[1:]
             for name in ("block1", "block2", "block3", "block4")}
    assert sizes == {"block1": (17, 17, 256), "block2": (9, 9, 512),
                     "block3": (9, 9, 1024), "block4": (9, 9, 2048)}


# ---------------------------------------------------------------- atrous consistency

@pytest.mark.parametrize("coarse,dense", [(16, 8), (8, 4)])
def test_atrous_consistency(coarse, dense):
    """Same weights: the coarse map equals the dense map sampled every second pixel."""
    size = 16 * 4 + 1  # 16k+1: both maps are 2m+1 / m+1 pixels wide
    coarse_model = modeling.atrous_resnet(50, coarse, (1, 2, 4))
    _randomize_batch_norm(coarse_model)
    dense_model = modeling.atrous_resnet(50, dense, (1, 2, 4))
    dense_model.set_weights(coarse_model.get_weights())
    image = np.random.default_rng(1).uniform(0, 255, (2, size, size, 3)).astype("float32")
    coarse_features = _features(coarse_model, image)
    dense_features = _features(dense_model, image)
    assert dense_features.shape[1] == 2 * coarse_features.shape[1] - 1
    scale = np.abs(dense_features).max()
    np.testing.assert_allclose(dense_features[:, ::2, ::2] / scale, coarse_features / scale,
                               atol=2e-5)


# ---------------------------------------------------------------- parameter counts

def _count(weights):
    return sum(int(np.prod(w.shape)) for w in weights)


def _expected_backbone(depth, extra_blocks=0):
    """Independent count of the layer list: conv kernels + BN gamma/beta."""
    conv_bn = lambda k, cin, cout: k * k * cin * cout + 2 * cout
    total, depth_in = conv_bn(7, 3, 64), 64
    units = list(resnet.UNITS_PER_BLOCK[depth]) + [3] * extra_blocks
    bases = [64, 128, 256, 512] + [512] * extra_blocks
    for num_units, base in zip(units, bases):
        for _ in range(num_units):
            if depth_in != 4 * base:
                total += conv_bn(1, depth_in, 4 * base)  # projection shortcut
            total += conv_bn(1, depth_in, base) + conv_bn(3, base, base)
            total += conv_bn(1, base, 4 * base)
            depth_in = 4 * base
    return total


def test_trainable_parameter_counts_match_the_paper_layer_list():
    assert _count(modeling.deeplabv3(21, depth=101).trainable_weights) == 58_040_661
    assert _count(modeling.deeplabv3(21, depth=50).trainable_weights) == 39_048_533
    head = 256 * 2048 * 2 + 3 * 9 * 2048 * 256 + 1280 * 256 + 6 * 512 + 256 * 21 + 21
    assert _expected_backbone(101) + head == 58_040_661
    assert _expected_backbone(50) + head == 39_048_533


@pytest.mark.parametrize("depth,extra_blocks", [(50, 3), (101, 1)])
def test_cascade_parameter_counts(depth, extra_blocks):
    model = modeling.deeplabv3(21, depth=depth, head="cascade", extra_blocks=extra_blocks,
                               multi_grid=(1, 1, 1))
    expected = _expected_backbone(depth, extra_blocks) + 2048 * 21 + 21
    assert _count(model.trainable_weights) == expected


def test_aspp_fourth_branch_and_no_image_pooling_counts():
    base = _count(modeling.deeplabv3(21, depth=50).trainable_weights)
    four = _count(modeling.deeplabv3(21, depth=50, aspp_rates=(6, 12, 18, 24)).trainable_weights)
    # One more 3x3 branch (+BN), and the projection sees 256 more input channels.
    assert four - base == 9 * 2048 * 256 + 512 + 256 * 256
    plain = _count(modeling.deeplabv3(21, depth=50, image_pooling=False).trainable_weights)
    assert base - plain == 2048 * 256 + 512 + 256 * 256


# ---------------------------------------------------------------- weights and serialization

def test_weights_do_not_depend_on_output_stride(tmp_path):
    os16 = modeling.deeplabv3(21, depth=50, output_stride=16)
    _randomize_batch_norm(os16)
    path = str(tmp_path / "os16.weights.h5")
    os16.save_weights(path)
    os8 = modeling.deeplabv3(21, depth=50, output_stride=8)
    os8.load_weights(path)
    for a, b in zip(os16.weights, os8.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert [w.path for w in os16.weights] == [w.path for w in os8.weights]


def test_get_config_round_trip_and_keras_file(tmp_path):
    model = modeling.deeplabv3(5, depth=50, output_stride=16, multi_grid=(1, 2, 1),
                               aspp_rates=(6, 12, 18, 24), image_pooling=True)
    config = model.get_config()
    clone = modeling.DeepLabV3.from_config(config)
    assert clone.get_config() == config
    assert _count(clone.weights) == _count(model.weights)
    _randomize_batch_norm(model)
    image = np.random.default_rng(2).uniform(0, 255, (1, 49, 57, 3)).astype("float32")
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, modeling.DeepLabV3)
    assert loaded.get_config() == config
    np.testing.assert_allclose(loaded(image), model(image), rtol=1e-5, atol=1e-5)
    backbone = modeling.atrous_resnet(50, 8, (1, 2, 4), extra_blocks=2)
    assert modeling.AtrousResNet.from_config(backbone.get_config()).get_config() == \
        backbone.get_config()


def test_resize_bilinear_equals_tf_align_corners():
    x = np.random.default_rng(3).normal(size=(2, 5, 9, 3)).astype("float32")
    for size in [(17, 33), (5, 9), (3, 4), (1, 1)]:
        ours = np.asarray(modeling.resize_bilinear(x, size))
        theirs = tf.compat.v1.image.resize_bilinear(x, size, align_corners=True).numpy()
        np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_mixed_precision_logits_stay_float32():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = modeling.deeplabv3(21, depth=50, output_stride=16)
        assert model.get_layer("block4_unit_3_conv2").compute_dtype == "bfloat16"
        logits = model(np.zeros((1, 33, 33, 3), "float32"))
        assert logits.dtype == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")


# ---------------------------------------------------------------- the authors' head details

def _small_aspp_model(**kwargs):
    return modeling.deeplabv3(21, depth=50, multi_grid=(1, 1, 1), aspp_rates=(1, 2, 3),
                              **kwargs)


def test_aspp_dropout_acts_in_training_only():
    """model.py: dropout with keep probability 0.9 after the ASPP projection, training
    only; it adds no weights and rate 0 removes it."""
    model = _small_aspp_model()
    dropout = model.get_layer("aspp_projection_dropout")
    assert dropout.rate == pytest.approx(0.1)
    probe = keras.Model(model.input, [model.get_layer("aspp_projection_relu").output,
                                      dropout.output])
    image = np.random.default_rng(4).uniform(0, 255, (4, 65, 65, 3)).astype("float32")
    before, after = (np.asarray(t) for t in probe(image, training=True))
    positive = before > 0
    dropped = positive & (after == 0)
    assert 0.07 < dropped.sum() / positive.sum() < 0.13  # ~10% of 4*5*5*256 values
    kept = positive & ~dropped
    np.testing.assert_allclose(after[kept], before[kept] / 0.9, rtol=1e-5)
    before, after = (np.asarray(t) for t in probe(image, training=False))
    np.testing.assert_array_equal(after, before)
    plain = _small_aspp_model(aspp_dropout_rate=0.0)
    assert not any(isinstance(l, keras.layers.Dropout) for l in plain.layers)
    assert _count(plain.weights) == _count(model.weights)
    cascade = modeling.deeplabv3(21, depth=50, head="cascade", multi_grid=(1, 1, 1))
    assert not any(isinstance(l, keras.layers.Dropout) for l in cascade.layers)


def test_initialisers_follow_slim_defaults_in_the_authors_scopes():
    """Head: slim.conv2d's xavier_initializer (Glorot uniform); logits: truncated normal,
    stddev 0.01, zero bias; ResNet scope (incl. the cascaded block5): slim's
    variance_scaling_initializer, a normal of stddev sqrt(1.3 * 2 / fan_in) truncated at
    two stddev."""
    from scipy import stats
    truncated_std = stats.truncnorm(-2, 2).std()  # 0.8796: the std of the truncated unit
    keras.utils.set_random_seed(5)
    model = modeling.deeplabv3(21, depth=50, multi_grid=(1, 1, 1))
    for name in ("aspp_conv1x1", "aspp_atrous2", "image_pooling", "aspp_projection"):
        kernel = model.get_layer(name).kernel.numpy()
        fan_in = np.prod(kernel.shape[:3])
        fan_out = np.prod(kernel.shape[:2]) * kernel.shape[3]
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        assert np.abs(kernel).max() <= limit, name
        assert kernel.std() == pytest.approx(limit / np.sqrt(3), rel=0.03), name
    kernel, bias = model.get_layer("logits").get_weights()
    assert np.abs(kernel).max() <= 0.02 and not bias.any()
    assert kernel.std() == pytest.approx(0.01 * truncated_std, rel=0.1)
    cascade = modeling.deeplabv3(21, depth=50, head="cascade", extra_blocks=1,
                                 multi_grid=(1, 1, 1))
    for layer_model, name in ((model, "conv1"), (model, "block4_unit_1_conv2"),
                              (model, "block3_unit_2_conv1"), (cascade, "block5_unit_2_conv2")):
        kernel = layer_model.get_layer(name).kernel.numpy()
        stddev = np.sqrt(1.3 * 2.0 / np.prod(kernel.shape[:3]))
        assert np.abs(kernel).max() <= 2 * stddev, name
        assert kernel.std() == pytest.approx(stddev * truncated_std, rel=0.03), name


def test_zero_init_residual_starts_each_units_last_gamma_at_zero():
    """Only each bottleneck unit's conv3 batch norm (16 units of ResNet-50: 3, 4, 6, 3)
    starts at gamma 0; the default keeps the authors' 1 everywhere; the option survives
    get_config."""
    units = [f"block{b}_unit_{u}_conv3_bn"
             for b, count in enumerate((3, 4, 6, 3), start=1) for u in range(1, count + 1)]

    def gammas(model):
        return {layer.name: layer.gamma.numpy() for layer in model.layers
                if isinstance(layer, keras.layers.BatchNormalization)}

    model = config_lib.build_model(config_lib.ModelConfig(depth=50, zero_init_residual=True))
    started = gammas(model)
    assert sorted(name for name, gamma in started.items() if not gamma.any()) == sorted(units)
    assert all(np.all(gamma == 1) for name, gamma in started.items() if name not in units)
    assert modeling.DeepLabV3.from_config(model.get_config()).zero_init_residual
    default = gammas(config_lib.build_model(config_lib.ModelConfig(depth=50)))
    assert default.keys() == started.keys()
    assert all(np.all(gamma == 1) for gamma in default.values())


def test_model_builder_names_a_function_or_is_refused_with_its_value():
    model = config_lib.build_model(config_lib.ModelConfig(builder="tests.small_models:tiny",
                                                          num_classes=5))
    assert [layer.name for layer in model.layers if layer.weights] == ["conv", "conv_bn",
                                                                       "logits"]
    assert model.output_shape == (None, None, None, 5)
    with pytest.raises(ValueError, match="not a DeepLabv3 model"):
        inference.model_output_stride(model)  # evaluation, export and prediction refuse it
    for builder, message in (("tiny", r"'deeplabv3' or 'package.module:function', got 'tiny'"),
                             ("tests.absent:tiny", r"'tests.absent:tiny': cannot import"),
                             ("tests.small_models:absent", r"has no function 'absent'")):
        with pytest.raises(ValueError, match=message):
            config_lib.build_model(config_lib.ModelConfig(builder=builder))


def test_frozen_statistics_batch_norm_trains_gamma_and_beta_only():
    """The authors' fine_tune_batch_norm=False: moving statistics used and kept, gamma
    and beta still trainable."""
    rng = np.random.default_rng(6)
    layer = modeling.BatchNormalization(momentum=0.9, epsilon=1e-5, frozen_statistics=True)
    layer.build((None, 4))
    mean, variance = rng.normal(size=4), rng.uniform(0.5, 2, 4)
    gamma, beta = rng.uniform(0.5, 1.5, 4), rng.normal(size=4)
    layer.set_weights([gamma, beta, mean, variance])
    x = rng.normal(3.0, 2.0, (8, 4)).astype("float32")  # far from the moving statistics
    with tf.GradientTape() as tape:
        y = layer(x, training=True)
    expected = gamma * (x - mean) / np.sqrt(variance + 1e-5) + beta
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(layer.moving_mean.numpy(), mean, rtol=1e-6)
    np.testing.assert_allclose(layer.moving_variance.numpy(), variance, rtol=1e-6)
    assert {v.path.split("/")[-1] for v in layer.trainable_weights} == {"gamma", "beta"}
    grads = tape.gradient(y, [layer.gamma, layer.beta])
    assert all(np.all(np.asarray(g) != 0) for g in grads)
    # Without the flag the same call normalises by the batch and moves the statistics.
    layer.frozen_statistics = False
    layer(x, training=True)
    assert not np.allclose(layer.moving_mean.numpy(), mean)

    model = _small_aspp_model()
    count = len(model.trainable_weights)
    bns = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert modeling.freeze_batch_norm(model) == len(bns) > 50
    assert all(l.frozen_statistics for l in bns) and len(model.trainable_weights) == count
    modeling.freeze_batch_norm(model, gamma_beta=True)
    assert len(model.trainable_weights) == count - 2 * len(bns)


def test_batch_norm_and_mean_pixel_are_the_papers_and_the_authors():
    """Paper 4.1: batch norm decay 0.9997 (epsilon 1e-5 as in the authors' model.py);
    core/feature_extractor.py: resnet_v1 inputs minus _MEAN_RGB = (123.15, 115.90, 103.06)."""
    model = _small_aspp_model()
    bns = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert bns and all(l.momentum == 0.9997 and l.epsilon == 1e-5 for l in bns)
    authors_mean = np.array([123.15, 115.90, 103.06], np.float32)
    centred = keras.Model(model.input, model.get_layer("mean_pixel").output)
    np.testing.assert_array_equal(np.asarray(centred(np.broadcast_to(authors_mean,
                                                                     (1, 3, 3, 3)))), 0.0)


def test_dropout_random_state_is_checkpointed(tmp_path):
    """A run resumed from a checkpoint draws the dropout masks the uninterrupted run would."""
    keras.utils.set_random_seed(0)
    model = _small_aspp_model()
    image = np.full((1, 33, 33, 3), 100.0, np.float32)
    for _ in range(2):
        model(image, training=True)
    path = tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))
    uninterrupted = np.asarray(model(image, training=True))
    keras.utils.set_random_seed(0)  # a restarted process seeds the same way
    resumed = _small_aspp_model()
    tf.train.Checkpoint(model=resumed).restore(path).assert_existing_objects_matched()
    np.testing.assert_array_equal(np.asarray(resumed(image, training=True)), uninterrupted)
