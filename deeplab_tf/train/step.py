"""One training update of paper 4.1, as every tf.distribute strategy runs it.

Per replica:
  labels (full size, or subsampled for the Table 8 "no upsampling" ablation)
  -> logits = model(images); upsampled bilinearly to the labels
  -> loss = sum of pixel cross-entropies / valid pixels of the GLOBAL batch
            + slim weight decay / replicas          (summed over replicas: the exact mean)
  -> the optimizer sums the replicas' gradients and applies TF1 momentum at
     lr = poly(step) with the authors' gradient multipliers (optimizer.py);
     step += 1 (a tf.Variable: exact under asynchronous PS too)

Mixed float16 with several synchronous replicas: Keras 3's LossScaleOptimizer decides
"finite or skip" from the gradients of replica 0 alone, before they are all-reduced (or,
on strategies without merge_call, from each replica's own: the replicas then disagree
about entering the all-reduce). An inf on replica 1 then reached the weights as -inf with
the loss scale unchanged. `share_non_finite` makes the decision global: when any replica's
gradients are not finite, every replica's are made so, and every replica skips the
update and halves the scale.
"""
import keras
import tensorflow as tf

from deeplab_tf.train import loss as loss_lib


def all_finite(gradients):
    return tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in gradients])


def share_non_finite(gradients):
    """`gradients` of this replica, made non-finite if any replica's are not finite."""
    context = tf.distribute.get_replica_context()
    local = tf.cast(tf.logical_not(all_finite(gradients)), tf.float32)
    replicas_non_finite = context.all_reduce(tf.distribute.ReduceOp.SUM, local)
    # NaN in one gradient suffices: the optimizer's check is a reduce_all over all of them.
    poison = tf.where(replicas_non_finite > 0, float("nan"), 0.0)
    return [gradients[0] + tf.cast(poison, gradients[0].dtype), *gradients[1:]]


def _first_rows(tensor, keep):
    """`tensor`, or its first 0 rows when `keep` is False: summary images travel only
    when a summary is written (under PS every step's outputs go over the network)."""
    return tensor[:tf.cast(keep, tf.int32) * tf.shape(tensor)[0]]


class TrainStep:
    """The step function of a model, optimizer and step counter built under `strategy`."""

    def __init__(self, config, strategy, model, optimizer, step):
        self.config, self.strategy = config, strategy
        self.model, self.optimizer, self.step = model, optimizer, step
        self.trainable = model.trainable_variables
        self.kernels = loss_lib.conv_kernels(model)
        self.loss_scaled = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
        self.class_weights = loss_lib.class_weights(config)
        if not 0.0 < config.train.top_k_percent_pixels <= 1.0:
            raise ValueError(f"train.top_k_percent_pixels must be in (0, 1], got "
                             f"{config.train.top_k_percent_pixels!r}")
        self.mining = config.train.top_k_percent_pixels < 1.0
        self._forward_backward = (tf.function(self.forward_backward, jit_compile=True)
                                  if config.train.xla else self.forward_backward)

    def forward_backward(self, images, labels, global_valid_pixels, top_k_pixels=None):
        """Gradients and metrics of one replica's batch (XLA-compiled if train.xla)."""
        train, num_classes = self.config.train, self.config.model.num_classes
        replicas = tf.distribute.get_replica_context().num_replicas_in_sync
        with tf.GradientTape() as tape:
            logits = self.model(images, training=True)
            logits, labels = loss_lib.logits_and_labels(logits, labels, train.upsample_logits)
            ce_sum, _ = loss_lib.cross_entropy_sum(
                logits, labels, self.config.data.ignore_label, self.class_weights,
                top_k_pixels)
            cross_entropy = ce_sum / tf.maximum(tf.cast(global_valid_pixels, ce_sum.dtype), 1.0)
            weight_decay = loss_lib.weight_decay(self.kernels, train.weight_decay)
            total = cross_entropy + tf.cast(weight_decay, cross_entropy.dtype) / replicas
            if self.loss_scaled:
                total = self.optimizer.scale_loss(total)
        gradients = tape.gradient(total, self.trainable)
        metrics = dict(
            cross_entropy=cross_entropy, weight_decay=weight_decay,
            gradients_finite=tf.cast(all_finite(gradients), tf.float32),
            confusion=loss_lib.confusion_matrix(logits, labels, num_classes,
                                                self.config.data.ignore_label),
            # The first example, for the image summaries.
            image=tf.cast(tf.clip_by_value(images[0], 0, 255), tf.uint8),
            label=tf.cast(labels[0], tf.uint8),
            prediction=tf.cast(tf.argmax(logits[0], axis=-1, output_type=tf.int32),
                               tf.uint8))
        return gradients, metrics

    def replica_step(self, images, labels, with_images):
        context = tf.distribute.get_replica_context()
        if not self.config.train.upsample_logits:
            # Static logits size from the static crop: the labels are subsampled first.
            logits_shape = self.model.compute_output_shape(tuple(images.shape))
            labels = loss_lib.downsample_labels(labels, logits_shape[1:3])
        train = self.config.train
        learning_step = self.step.read_value()
        valid = tf.reduce_sum(tf.cast(labels != self.config.data.ignore_label, tf.float32))
        top_k = None
        if self.mining:  # k of this replica's pixels (the authors mine per clone)
            top_k = loss_lib.mined_pixels(tf.size(labels), learning_step,
                                          train.top_k_percent_pixels,
                                          train.hard_example_mining_step)
            valid = tf.minimum(valid, tf.cast(top_k, tf.float32))
        global_valid = context.all_reduce(tf.distribute.ReduceOp.SUM, valid)
        gradients, metrics = self._forward_backward(images, labels, global_valid, top_k)
        if self.loss_scaled and context.num_replicas_in_sync > 1:
            gradients = share_non_finite(gradients)
        self.optimizer.apply(gradients, self.trainable)
        self.step.assign_add(1)
        metrics["step"] = learning_step
        for name in ("image", "label", "prediction"):
            metrics[name] = _first_rows(metrics[name], with_images)
        return metrics

    def _reduce(self, per_replica):
        """Replica outputs -> one value each: sums, means, or the first replica's sample."""
        strategy, reduced = self.strategy, {}
        for name, value in per_replica.items():
            if name in ("cross_entropy", "confusion"):
                reduced[name] = strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)
            elif name in ("weight_decay", "gradients_finite"):
                reduced[name] = strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None)
            else:
                reduced[name] = strategy.experimental_local_results(value)[0]
        return reduced

    def function(self):
        """tf.function (iterator, with_images) -> the reduced metrics of one update.

        An iterator element is (images, labels) or, from the parameter-server input
        streams, (images, labels, stream): the stream id comes back with the metrics.
        """
        @tf.function
        def train_step(iterator, with_images=None):
            element = next(iterator)
            images, labels = element[0], element[1]
            if with_images is None:
                with_images = tf.constant(False)
            outputs = self._reduce(self.strategy.run(self.replica_step,
                                                     args=(images, labels, with_images)))
            if len(element) > 2:
                outputs["stream"] = element[2]
            return outputs
        return train_step
