"""The "poly" learning-rate policy of paper 4.1: lr = base * (1 - step / max_steps) ** 0.9.

The step comes from the loop's own int64 `tf.Variable`, not from `optimizer.iterations`:
under ParameterServerStrategy a Keras 3 variable's `assign_add` is a read followed by a
write, so concurrent workers lose increments (SPEC.md section 6), while a `tf.Variable`'s
`AssignAddVariableOp` runs atomically on its parameter server.
"""
import keras
import tensorflow as tf


def poly_schedule(base_learning_rate, steps, power=0.9):
    """keras PolynomialDecay from `base_learning_rate` to 0 over `steps` steps."""
    return keras.optimizers.schedules.PolynomialDecay(
        initial_learning_rate=base_learning_rate, decay_steps=steps,
        end_learning_rate=0.0, power=power)


def learning_rate_fn(schedule, step):
    """A zero-argument callable for the optimizer: the schedule at the current `step`.

    Keras optimizers call a callable learning rate at every update (inside the step
    function), so the rate follows the step variable wherever the update runs.
    """
    return lambda: schedule(tf.cast(step, tf.float32))
