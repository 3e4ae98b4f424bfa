"""Batch normalisation with the statistics of the authors' TF1 code (paper 4.1).

The authors train with slim's `batch_norm` (fused), i.e. `tf.compat.v1.nn.fused_batch_norm`
with is_training=True. That op normalises the batch by its biased variance (divided by n)
but returns, and so puts into the moving average that evaluation uses, the unbiased one
(divided by n - 1, n the values per channel: batch x height x width). Keras averages the
biased variance; the difference is n/(n-1), 16/15 in the image-pooling branch whose
1x1 features make n the batch. `BatchNormalization` follows the authors.

Synchronised over replicas (`synchronized = True`, set by the trainer for the global
batch), the statistics are computed in two passes, as one device's `tf.nn.moments` does:
the all-reduced sum and count give the global mean, then the all-reduced sum of squared
deviations from it gives the variance. Keras' own synchronised path takes E[x^2] - E[x]^2
in one pass, which loses the variance to cancellation when the mean is large against the
spread (ImageNet-trained features).

`frozen_statistics=True` is the authors' fine_tune_batch_norm=False (slim's batch_norm with
is_training=False, gamma and beta still trainable): the layer normalises with its moving
statistics, never updates them, and SGD still moves gamma and beta (Keras'
`trainable=False` would freeze gamma and beta as well).

`batch_norm_layers(model)` finds the batch norms of a model and of the models nested in
it (a custom `model.builder` may nest them), so freezing and synchronising reach all.

Only `keras.ops` outside the synchronised path (which is TensorFlow's tf.distribute):
the model runs on the TensorFlow and JAX backends alike.
"""
import keras
from keras import ops


@keras.saving.register_keras_serializable(package="deeplab_tf")
class BatchNormalization(keras.layers.BatchNormalization):
    """Keras batch norm with the authors' moving variance, exact synchronised statistics
    and frozen moving statistics (see the module docstring). The class keeps Keras' name,
    so a `.weights.h5` file keeps its layout."""

    def __init__(self, frozen_statistics=False, **kwargs):
        super().__init__(**kwargs)
        self.frozen_statistics = frozen_statistics

    def call(self, inputs, training=None, mask=None):
        if self.frozen_statistics:
            training = False
        if not (training and self.trainable) or mask is not None or self.renorm:
            return super().call(inputs, training=training, mask=mask)
        # Statistics in float32 at least, as Keras computes them under mixed precision.
        x = ops.cast(inputs, keras.backend.result_type(inputs.dtype, "float32"))
        mean, variance, count = self._statistics(x)
        # fused_batch_norm's Bessel factor: n / (n - 1), and 1 for n = 1.
        unbiased = variance * (count / ops.maximum(count - 1.0, 1.0))
        momentum = self.momentum
        self.moving_mean.assign(ops.cast(
            ops.cast(self.moving_mean, x.dtype) * momentum + mean * (1.0 - momentum),
            self.moving_mean.dtype))
        self.moving_variance.assign(ops.cast(
            ops.cast(self.moving_variance, x.dtype) * momentum + unbiased * (1.0 - momentum),
            self.moving_variance.dtype))
        gamma = None if self.gamma is None else ops.cast(self.gamma, x.dtype)
        beta = None if self.beta is None else ops.cast(self.beta, x.dtype)
        outputs = ops.batch_normalization(x, mean, variance, axis=self.axis, offset=beta,
                                          scale=gamma, epsilon=self.epsilon)
        return ops.cast(outputs, self.compute_dtype)

    def _statistics(self, x):
        """(mean, biased variance, values per channel n) of this step's batch: the global
        batch's when synchronised over several replicas."""
        axes = self._reduction_axes
        if self.synchronized:
            import tensorflow as tf  # only the TensorFlow backend synchronises
            context = tf.distribute.get_replica_context()
            if context is not None and context.num_replicas_in_sync > 1:
                return synchronized_moments(x, axes, context)
        mean, variance = ops.moments(x, axes)
        count = ops.cast(ops.size(x), x.dtype) / ops.cast(ops.shape(x)[self.axis], x.dtype)
        return mean, variance, count

    def get_config(self):
        return {**super().get_config(), "frozen_statistics": self.frozen_statistics}


def synchronized_moments(x, axes, context):
    """Mean, biased variance and count over `axes` of `x` on all replicas of `context`.

    Two all-reduces: [sum, count], then the sum of squared deviations from the global mean
    (the mean's gradient path through the second pass is zero: the deviations sum to 0).
    """
    import tensorflow as tf
    local_sum = tf.reduce_sum(x, axis=axes)
    local_count = tf.cast(tf.size(x), x.dtype) / tf.cast(tf.size(local_sum), x.dtype)
    totals = context.all_reduce(tf.distribute.ReduceOp.SUM,
                                tf.concat([local_sum, local_count[None]], axis=0))
    total, count = totals[:-1], totals[-1]
    mean = tf.math.divide_no_nan(total, count)
    shape = [1] * len(x.shape)
    shape[[i for i in range(len(x.shape)) if i not in axes][0]] = -1
    deviations = tf.reduce_sum(
        tf.math.squared_difference(x, tf.stop_gradient(tf.reshape(mean, shape))), axis=axes)
    variance = tf.math.divide_no_nan(
        context.all_reduce(tf.distribute.ReduceOp.SUM, deviations), count)
    return mean, variance, count


def batch_norm_layers(model):
    """Every batch-norm layer of `model`, including those of models nested in it."""
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            found.append(layer)
        elif hasattr(layer, "layers"):  # a nested model (or any container of layers)
            found.extend(batch_norm_layers(layer))
    return found


def _ours(model):
    layers = batch_norm_layers(model)
    plain = [layer.name for layer in layers if not isinstance(layer, BatchNormalization)]
    if plain:
        raise ValueError(f"{', '.join(plain)}: plain keras BatchNormalization; frozen and "
                         f"synchronised batch norm need deeplab_tf.modeling."
                         f"BatchNormalization (the authors' statistics)")
    return layers


def freeze_batch_norm(model, gamma_beta=False):
    """Stage 2 (paper 4.1): every batch norm of `model` (nested models included) runs on
    its moving statistics. gamma and beta stay trainable unless `gamma_beta`. Returns the
    number of layers."""
    layers = _ours(model)
    for layer in layers:
        layer.frozen_statistics = True
        if gamma_beta:
            layer.trainable = False
    return len(layers)


def synchronize_batch_norm(model):
    """Statistics over the global batch for every batch norm of `model` (nested models
    included) when it trains on several synchronous replicas. Returns the number of
    layers."""
    layers = _ours(model)
    for layer in layers:
        layer.synchronized = True
    return len(layers)
