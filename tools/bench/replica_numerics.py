"""One device vs MirroredStrategy: how far float32 gradients are from exact (issue 11).

    python -m tools.bench.replica_numerics --data_dir=DATA_DIR [--crop_size=33]

DATA_DIR holds a built synthetic_voc (tools.make_synthetic, tools.build_dataset). The
smoke model (ResNet-50 + ASPP, random initialisation, seed 0) computes the loss gradient
of one global batch of 4 four ways, from the same weights and the trainer's own step code:
one device in float32 (the step as training runs it, in a tf.function), two logical CPUs
under MirroredStrategy with batch norm synchronised across them in float32, and one device
in float64 and mirrored in float64. It prints relative L2 errors, for the whole gradient
and per network stage: each float32 gradient against the float64 one, the two float32
gradients against each other, and the two float64 ones against each other. In float32 the
strategies differ by about as much as each differs from the float64 gradient, and in
float64 they agree: rounding amplified by this network, not a defect of the gradient
through the cross-replica batch-norm statistics.
"""
import tempfile

from absl import app, flags
import numpy as np

flags.DEFINE_string("data_dir", None, "TFDS data_dir holding synthetic_voc.")
flags.DEFINE_integer("crop_size", 33, "Training crop.")
flags.mark_flag_as_required("data_dir")
FLAGS = flags.FLAGS
STAGES = ("conv1", "block1", "block2", "block3", "block4", "aspp", "image_pooling", "logits")


def main(argv):
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from deeplab_tf import config as config_lib
    from deeplab_tf import data
    from deeplab_tf.train import loop

    def trainer(precision, strategy):
        config = config_lib.load_experiment("smoke", [
            f"data.data_dir={FLAGS.data_dir}", f"data.crop_size={FLAGS.crop_size}",
            "train.batch_size=4", f"train.precision={precision}"])
        return loop.Trainer(config, tempfile.mkdtemp(), strategy)

    def gradients(run, strategy):
        """The summed gradient of the global batch, each replica taking its share."""
        replicas = strategy.num_replicas_in_sync
        share = len(images) // replicas

        def replica_gradients(x, y):
            valid = tf.reduce_sum(tf.cast(y != 255, tf.float32))
            global_valid = tf.distribute.get_replica_context().all_reduce("SUM", valid)
            return run.forward_backward(x, y, global_valid)[0]

        @tf.function
        def compute():
            parts = strategy.experimental_distribute_values_from_function(
                lambda context: (images[context.replica_id_in_sync_group * share:][:share],
                                 labels[context.replica_id_in_sync_group * share:][:share]))
            per_replica = strategy.run(replica_gradients, args=parts)
            return [strategy.reduce("SUM", g, axis=None) for g in per_replica]
        return [g.numpy().astype(np.float64) for g in compute()]

    one = trainer("float32", tf.distribute.get_strategy())
    images, labels = next(iter(data.train_input(one.config.data, 4, seed=0)))
    weights = [w.numpy() for w in one.model.weights]
    mirrored_strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    mirrored, exact = trainer("float32", mirrored_strategy), trainer("float64", None)
    exact_mirrored = trainer("float64", mirrored_strategy)
    for other in (mirrored, exact, exact_mirrored):
        for variable, value in zip(other.model.weights, weights):
            variable.assign(tf.cast(value, variable.dtype))
    names = [v.path for v in one.trainable]
    found = dict(one=gradients(one, tf.distribute.get_strategy()),
                 mirrored=gradients(mirrored, mirrored_strategy),
                 exact=gradients(exact, tf.distribute.get_strategy()),
                 exact_mirrored=gradients(exact_mirrored, mirrored_strategy))

    def error(a, b, stage=""):
        pairs = [(x, y) for name, x, y in zip(names, a, b) if name.startswith(stage)]
        return (np.sqrt(sum(np.sum((x - y) ** 2) for x, y in pairs)) /
                np.sqrt(sum(np.sum(y ** 2) for _, y in pairs)))

    print(f"crop {FLAGS.crop_size}, global batch 4: relative L2 error of the gradient")
    print(f"{'':32s}" + "".join(f"{s[:8]:>9s}" for s in ("all",) + STAGES))
    for label, a, b in (("one device f32 vs float64", "one", "exact"),
                        ("mirrored f32 vs float64", "mirrored", "exact"),
                        ("mirrored f32 vs one device f32", "mirrored", "one"),
                        ("mirrored f64 vs one device f64", "exact_mirrored", "exact")):
        row = [error(found[a], found[b])] + [error(found[a], found[b], s) for s in STAGES]
        print(f"{label:32s}" + "".join(f"{e:9.1e}" for e in row))


if __name__ == "__main__":
    app.run(main)
