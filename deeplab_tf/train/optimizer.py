"""SGD with momentum as TF1's MomentumOptimizer, and the authors' gradient multipliers.

Paper 4.1 gives the "poly" learning rate but names no optimizer; the authors' train.py runs
tf.train.MomentumOptimizer with momentum 0.9, which accumulates the raw gradient and
multiplies by the learning rate of the current step:

    a <- m a + g;    w <- w - lr_t a

Keras' SGD folds the learning rate into the velocity (v <- m v - lr_t g; w <- w + v), which
is the same only while the learning rate is constant. Under poly it changes every step, so
Keras' form weighs old gradients by the learning rates of their own steps, TF1's by the
current one. `MomentumOptimizer` is Keras' SGD with TF1's update (same slot, "momentum").

Gradient multipliers (the authors' utils/train_utils.py `get_model_gradient_multipliers`,
applied by slim's `multiply_gradients` before the optimizer): every bias gradient is
doubled, and the "last layers" (the head: ASPP, image pooling, projection, logits; or the
logits alone) are multiplied by a flag that defaults to 1, a head bias by 2x that. In this
model only the logits have a bias (every other convolution feeds a batch norm).
"""
import keras
from keras import ops

# The authors' model.get_extra_layer_scopes(): logits, image_pooling, aspp*,
# concat_projection, as our layer names (modeling/aspp.py, modeling/deeplabv3.py).
HEAD_LAYER_PREFIXES = ("logits", "image_pooling", "aspp_")
LOGITS_LAYER = "logits"


def _layer_name(variable):
    return variable.path.split("/")[0]


def gradient_multipliers(model, bias_multiplier=2.0, last_layer_multiplier=1.0,
                         last_layers_contain_logits_only=False):
    """{variable path: multiplier} for every trainable variable of `model` whose gradient
    is scaled (absent: 1), by the authors' rule."""
    last_layers = (LOGITS_LAYER,) if last_layers_contain_logits_only else HEAD_LAYER_PREFIXES
    multipliers = {}
    for variable in model.trainable_variables:
        is_bias = variable.path.endswith("/bias")
        multiplier = bias_multiplier if is_bias else 1.0
        if _layer_name(variable).startswith(last_layers):
            multiplier = (bias_multiplier if is_bias else 1.0) * last_layer_multiplier
        if multiplier != 1.0:
            multipliers[variable.path] = float(multiplier)
    return multipliers


class _GradientMultipliers:
    """Mixin for a Keras optimizer: each variable's gradient times its multiplier.

    `gradient_multipliers` is {variable.path: multiplier}; variables not named get 1.
    """

    def __init__(self, *args, gradient_multipliers=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.gradient_multipliers = dict(gradient_multipliers or {})

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        unknown = set(self.gradient_multipliers) - {v.path for v in variables}
        if unknown:
            raise ValueError(f"gradient multipliers for variables the optimizer does not "
                             f"update: {sorted(unknown)[:5]}")
        # By index, as the optimizer's slots: a Python float per variable, folded into the
        # graph.
        self._multipliers = [self.gradient_multipliers.get(v.path, 1.0) for v in variables]

    def _multiplied(self, gradient, variable):
        """`gradient` in the variable's dtype, times the variable's multiplier."""
        gradient = ops.cast(gradient, variable.dtype)
        multiplier = self._multipliers[self._get_variable_index(variable)]
        if multiplier != 1.0:
            gradient = ops.multiply(gradient, ops.cast(multiplier, variable.dtype))
        return gradient

    def get_config(self):
        config = super().get_config()
        config["gradient_multipliers"] = dict(self.gradient_multipliers)
        return config


@keras.saving.register_keras_serializable(package="deeplab_tf")
class MomentumOptimizer(_GradientMultipliers, keras.optimizers.SGD):
    """TF1 momentum (a <- m a + multiplier g; w <- w - lr a) with per-variable multipliers.

    Args:
      learning_rate: a float, schedule or callable, as for keras.optimizers.SGD.
      momentum: m, the authors' 0.9 (train.py).
      gradient_multipliers: {variable.path: multiplier}; variables not named get 1.
    """

    def __init__(self, learning_rate=0.01, momentum=0.9, **kwargs):
        super().__init__(learning_rate=learning_rate, momentum=momentum, **kwargs)

    def update_step(self, gradient, variable, learning_rate):
        learning_rate = ops.cast(learning_rate, variable.dtype)
        gradient = self._multiplied(gradient, variable)
        if self.momentum == 0:
            self.assign_sub(variable, ops.multiply(gradient, learning_rate))
            return
        accumulator = self.momentums[self._get_variable_index(variable)]
        self.assign(accumulator, ops.add(
            ops.multiply(accumulator, ops.cast(self.momentum, variable.dtype)), gradient))
        self.assign_sub(variable, ops.multiply(accumulator, learning_rate))

    def get_config(self):
        config = super().get_config()
        config.pop("nesterov", None)
        return config


@keras.saving.register_keras_serializable(package="deeplab_tf")
class AdamOptimizer(_GradientMultipliers, keras.optimizers.Adam):
    """Keras' Adam with the same per-variable gradient multipliers (not the paper's).

    Only for short runs from scratch (the CPU demo, experiments/demo.py), where the
    authors' momentum SGD, made for 30K steps from ImageNet weights, learns too slowly.
    """

    def update_step(self, gradient, variable, learning_rate):
        super().update_step(self._multiplied(gradient, variable), variable, learning_rate)


OPTIMIZERS = ("momentum", "adam")


def make_optimizer(train_config, model, learning_rate):
    """The training optimizer of `train_config` (momentum or adam, multipliers) for `model`."""
    multipliers = gradient_multipliers(
        model, train_config.bias_gradient_multiplier,
        train_config.last_layer_gradient_multiplier,
        train_config.last_layers_contain_logits_only)
    if train_config.optimizer == "adam":
        return AdamOptimizer(learning_rate=learning_rate, gradient_multipliers=multipliers)
    if train_config.optimizer != "momentum":
        raise ValueError(f"train.optimizer must be one of {OPTIMIZERS}, got "
                         f"{train_config.optimizer!r}")
    return MomentumOptimizer(learning_rate=learning_rate, momentum=float(train_config.momentum),
                             gradient_multipliers=multipliers)
