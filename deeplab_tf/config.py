"""Experiment configuration: plain dataclasses, dotted overrides, one builder for the model.

An experiment (a file in `experiments/`) returns an `ExperimentConfig` from `get_config()`.
Tools change fields with `--set train.steps=400`; an unknown name is an error. Layers never
see a config: `build_model` turns the model section into plain constructor arguments.
"""
import ast
import dataclasses
import importlib
import json
import os
import typing


@dataclasses.dataclass
class ModelConfig:
    # The network: "deeplabv3" (the paper's: modeling.deeplabv3 with the fields below), or
    # "package.module:function" for a Keras model of one's own, called as
    # function(model_config, output_stride) and trained by the same trainer, strategies
    # and checkpoints (the tests train small ones this way). Evaluation, export and
    # prediction read the DeepLabv3 model's output stride and layout.
    builder: str = "deeplabv3"
    # None: the data set's class count (its class table), filled in when training starts.
    num_classes: typing.Optional[int] = 21
    depth: int = 101
    output_stride: typing.Optional[int] = 16
    multi_grid: tuple = (1, 2, 4)
    head: str = "aspp"  # "aspp" or "cascade"
    aspp_rates: typing.Optional[tuple] = None  # at output stride 16; None -> (6, 12, 18)
    image_pooling: bool = True
    extra_blocks: int = 0
    batch_norm_decay: float = 0.9997
    batch_norm_epsilon: float = 1e-5
    # The authors' head drops the ASPP projection with keep probability 0.9, in training
    # only (model.py `concat_projection_dropout`); 0 turns it off.
    aspp_dropout_rate: float = 0.1
    # Each ResNet unit's last batch-norm gamma starts at 0 instead of the authors' 1 (the
    # unit starts as its shortcut): only for training from scratch (the demo); an ImageNet
    # checkpoint replaces the gammas.
    zero_init_residual: bool = False


@dataclasses.dataclass
class DataConfig:
    dataset: str = "synthetic_voc"  # a TFDS builder name registered by deeplab_tf.data
    data_dir: typing.Optional[str] = None  # TFDS data_dir; None -> TFDS default
    train_split: str = "train"
    eval_split: str = "val"
    num_classes: typing.Optional[int] = 21  # None: the data set's, as model.num_classes
    ignore_label: int = 255
    crop_size: int = 513
    min_scale: float = 0.5
    max_scale: float = 2.0
    scale_step: float = 0.25  # 0 -> continuous scales
    flip: bool = True
    # Bootstrapping (paper 4.3): images holding any of these classes (ids or names of the
    # data set's class table) appear `bootstrap_factor` times per epoch.
    bootstrap_classes: tuple = ()
    bootstrap_factor: int = 1
    shuffle_buffer: int = 1000


@dataclasses.dataclass
class TrainConfig:
    steps: int = 30000
    batch_size: int = 16
    base_learning_rate: float = 0.007
    learning_rate_power: float = 0.9
    # "momentum": the authors' (TF1 MomentumOptimizer, train/optimizer.py); "adam" only for
    # short runs from scratch (the CPU demo).
    optimizer: str = "momentum"
    momentum: float = 0.9
    weight_decay: float = 1e-4
    # Gradient multipliers (the authors' train_utils.get_model_gradient_multipliers): biases
    # (only the logits have any) learn at `bias_gradient_multiplier` x the rate; the head
    # (ASPP, image pooling, projection, logits; only the logits with
    # `last_layers_contain_logits_only`) at `last_layer_gradient_multiplier` x.
    bias_gradient_multiplier: float = 2.0
    last_layer_gradient_multiplier: float = 1.0
    last_layers_contain_logits_only: bool = False
    # Stage 2 (paper 4.1 "freeze batch normalization parameters"): batch norm runs on its
    # moving statistics, which stop updating; gamma and beta still learn, as with the
    # authors' fine_tune_batch_norm=False. `freeze_gamma_beta` freezes those too.
    freeze_batch_norm: bool = False
    freeze_gamma_beta: bool = False
    upsample_logits: bool = True  # False: downsample the labels instead (Table 8)
    # The authors' loss options (train_utils.add_softmax_cross_entropy_loss_for_each_scale;
    # the paper uses neither): `class_loss_weights` weighs each class's pixels (empty: all
    # 1; a tuple of one weight per class, or {class name or id: weight}, the others 1);
    # `top_k_percent_pixels` < 1 keeps only the hardest pixels of each replica's batch,
    # ramping from all of them to that share over `hard_example_mining_step` steps.
    class_loss_weights: tuple = ()
    top_k_percent_pixels: float = 1.0
    hard_example_mining_step: int = 0
    # Initialisation: a TF-slim resnet_v1 checkpoint (paper 4.1: ImageNet-pretrained), a
    # .weights.h5, or a work dir whose latest checkpoint starts this run (stage 2 from
    # stage 1); "none" trains from scratch. Left empty, training refuses to start.
    init_checkpoint: str = ""
    # The authors' initialize_last_layer: False starts the last layers (the head: ASPP,
    # image pooling, projection, logits; the logits alone with
    # `last_layers_contain_logits_only`) fresh instead of loading them from
    # init_checkpoint, as fine-tuning a model trained on other classes needs.
    initialize_last_layer: bool = True
    precision: str = "float32"  # float32 | mixed_bfloat16 | mixed_float16
    xla: bool = False
    seed: int = 0
    checkpoint_every: int = 1000
    max_checkpoints: int = 5
    log_every: int = 10
    summary_every: int = 10
    image_summary_every: int = 500


@dataclasses.dataclass
class EvalConfig:
    split: str = "val"
    output_stride: typing.Optional[int] = 8
    scales: tuple = (1.0,)
    flip: bool = False
    batch_size: int = 1
    # Paper 4.1: "crop size to be 513 during both training and test" (the authors'
    # eval_crop_size): every image is padded, never cropped, at the bottom/right with the
    # mean pixel to (height, width); a larger image to the next output_stride*k+1 that
    # holds it. pad_to="smallest" pads each image only to the smallest output_stride*k+1
    # holding it, a different protocol (image pooling then averages over another map).
    crop_size: tuple = (513, 513)
    pad_to: str = "crop_size"  # "crop_size" | "smallest"


@dataclasses.dataclass
class PaperConfig:
    """The paper's row an experiment reproduces: read by `deeplab_tf.recipe`, which lists
    a run's departures from `protocol` and prints the row's figures beside an mIoU.

    protocol: "voc_stage1", "voc_stage2", "cityscapes", "coco_pretrain" or "own_data"
    (recipe.PROTOCOLS). settings: the row's own values replacing the protocol's (recipe
    setting names, e.g. {"head": "cascade"}); varies: the settings its table varies (never
    departures); results: the row's figures, each {"table", "label", "miou", "source",
    "when": {setting: value}} (recipe.paper_result).
    """
    protocol: str = "voc_stage1"
    table: str = ""
    row: str = ""
    settings: dict = dataclasses.field(default_factory=dict)
    varies: tuple = ()
    results: tuple = ()


@dataclasses.dataclass
class ExperimentConfig:
    name: str = ""
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    paper: PaperConfig = dataclasses.field(default_factory=PaperConfig)


def _coerce(value_text, current, field_type, name):
    try:
        value = ast.literal_eval(value_text)
    except (ValueError, SyntaxError):
        value = value_text  # a bare word is a string
    if value is None:
        return None
    if isinstance(current, bool) or field_type is bool:
        if isinstance(value, str) and value.lower() in ("true", "false"):
            value = value.lower() == "true"
        if not isinstance(value, bool):
            raise ValueError(f"--set {name}: expected true or false, got {value_text!r}")
        return value
    if isinstance(value, dict) and isinstance(current, (tuple, dict)):
        return value  # {class name or id: value}, resolved through the class table
    if isinstance(current, tuple) or (current is None and isinstance(value, (list, tuple))):
        return tuple(value) if isinstance(value, (list, tuple)) else (value,)
    if isinstance(current, float):
        return float(value)
    if isinstance(current, int) and not isinstance(value, int):
        raise ValueError(f"--set {name}: expected an integer, got {value_text!r}")
    if isinstance(current, str) and not isinstance(value, str):
        return str(value_text)
    if isinstance(value, str) and value.startswith("~"):
        # The shell leaves `--set=data.data_dir=~/tfds` alone (a tilde after "=" is
        # expanded in assignments only): a path value starting with ~ is the user's home.
        return os.path.expanduser(value)
    return value


def override(config, assignments):
    """Applies ["train.steps=400", ...] to `config` in place and returns it."""
    for assignment in assignments:
        if "=" not in assignment:
            raise ValueError(f"--set expects key=value, got {assignment!r}")
        name, value_text = assignment.split("=", 1)
        *path, leaf = name.strip().split(".")
        target = config
        for part in path:
            if not dataclasses.is_dataclass(target) or not hasattr(target, part):
                raise ValueError(f"--set {name}: unknown config section {part!r}")
            target = getattr(target, part)
        fields = {f.name: f for f in dataclasses.fields(target)} if dataclasses.is_dataclass(
            target) else {}
        if leaf not in fields or dataclasses.is_dataclass(getattr(target, leaf)):
            known = ", ".join(sorted(fields))
            raise ValueError(f"--set {name}: unknown field {leaf!r} (known: {known})")
        current = getattr(target, leaf)
        setattr(target, leaf, _coerce(value_text.strip(), current, fields[leaf].type, name))
    return config


def load_experiment(name, overrides=()):
    """Imports `experiments.<name>` and returns its config with `overrides` applied."""
    try:
        module = importlib.import_module(f"experiments.{name}")
    except ModuleNotFoundError as error:
        if error.name != f"experiments.{name}":
            raise
        raise ValueError(f"no experiment named {name!r} (a file experiments/{name}.py)") from None
    config = module.get_config()
    config.name = config.name or name
    return override(config, overrides)


def override_eval(config, output_stride=None, scales=None, flip=None):
    """Replaces the evaluation output stride, scales and flip where a tool's flag gives them.

    Returns `config.eval`, the settings inference then runs with.
    """
    if output_stride is not None:
        config.eval.output_stride = output_stride
    if scales:
        config.eval.scales = tuple(float(s) for s in scales)
    if flip is not None:
        config.eval.flip = flip
    return config.eval


PAD_TO = ("crop_size", "smallest")
NO_INIT_CHECKPOINT = "none"


def eval_crop_size(eval_config):
    """(height, width) every evaluation image is padded to, or None for pad_to="smallest"."""
    if eval_config.pad_to not in PAD_TO:
        raise ValueError(f"eval.pad_to must be one of {PAD_TO}, got {eval_config.pad_to!r}")
    if eval_config.pad_to == "smallest":
        return None
    size = tuple(eval_config.crop_size or ())
    if len(size) == 1:  # --set eval.crop_size=513: a square
        size = size * 2
    if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
        raise ValueError(f"eval.crop_size must be (height, width), two positive integers, "
                         f"got {eval_config.crop_size!r}")
    return size


def init_checkpoint_path(config):
    """The path training starts from, or None for "none" (from scratch).

    Raises ValueError when `train.init_checkpoint` is empty: the paper starts every run
    from an ImageNet-pretrained ResNet (4.1), and a forgotten flag would otherwise train
    from scratch for 30K steps without a word.
    """
    path = config.train.init_checkpoint
    if path is None or path.strip().lower() == NO_INIT_CHECKPOINT:  # "none" or --set ...=None
        return None
    path = path.strip()
    if not path:
        depth = config.model.depth
        raise ValueError(
            f"train.init_checkpoint is not set: experiment {config.name or '(unnamed)'} "
            f"starts from an ImageNet-pretrained ResNet-{depth} (paper 4.1); pass "
            f"--set=train.init_checkpoint=PATH/resnet_v1_{depth}.ckpt (TF-slim's "
            f"resnet_v1_{depth}_2016_08_28.tar.gz, unpacked), or "
            f"--set=train.init_checkpoint={NO_INIT_CHECKPOINT} to train from scratch")
    return path


def apply_class_table(config, table, source):
    """Fills the class counts and class names of `config` from the data set's `table`.

    `source` says where the table came from (for the messages). model.num_classes and
    data.num_classes left None become the table's count; a number that disagrees is
    refused in one line naming both. data.bootstrap_classes and the keys of a
    train.class_loss_weights dict may be class names: they become ids (an unknown name is
    refused naming the known ones). Returns `config`, changed in place.
    """
    for section, target in (("model", config.model), ("data", config.data)):
        if target.num_classes is None:
            target.num_classes = table.num_classes
        elif target.num_classes != table.num_classes:
            raise ValueError(
                f"{section}.num_classes={target.num_classes} (experiment "
                f"{config.name or '(unnamed)'}) but {source} has {table.num_classes} "
                f"classes ({', '.join(table.names)}): drop the setting or "
                f"--set {section}.num_classes={table.num_classes}")
    config.data.bootstrap_classes = tuple(
        _class_id(table, c, "data.bootstrap_classes") for c in config.data.bootstrap_classes)
    weights = config.train.class_loss_weights
    if isinstance(weights, dict):
        by_id = [1.0] * table.num_classes
        for key, weight in weights.items():
            by_id[_class_id(table, key, "train.class_loss_weights")] = float(weight)
        config.train.class_loss_weights = tuple(by_id)
    return config


def _class_id(table, value, field):
    if isinstance(value, str) and not value.isdigit():
        try:
            return table.index(value)
        except ValueError as error:
            raise ValueError(f"{field}: {error}") from None
    if not 0 <= int(value) < table.num_classes:
        raise ValueError(f"{field}: class id {value} is not one of 0..{table.num_classes - 1} "
                         f"({', '.join(table.names)})")
    return int(value)


def to_json(config):
    return json.dumps(dataclasses.asdict(config), indent=2, sort_keys=True)


def model_kwargs(model_config, output_stride="train"):
    """Plain constructor arguments for `deeplab_tf.modeling.deeplabv3`.

    `output_stride` replaces the configured one (evaluation at OS 8 of an OS 16 model).
    """
    kwargs = dataclasses.asdict(model_config)
    del kwargs["builder"]
    if output_stride != "train":
        kwargs["output_stride"] = output_stride
    return kwargs


DEEPLABV3 = "deeplabv3"


def model_builder(name):
    """The function `model.builder` names (None for the paper's DeepLabv3).

    Raises ValueError naming the value when it is not "deeplabv3" or an importable
    "package.module:function".
    """
    if name == DEEPLABV3:
        return None
    module_name, _, function = str(name).partition(":")
    if not module_name or not function:
        raise ValueError(f"model.builder must be {DEEPLABV3!r} or 'package.module:function', "
                         f"got {name!r}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        raise ValueError(f"model.builder {name!r}: cannot import {module_name} "
                         f"({error})") from None
    builder = getattr(module, function, None)
    if not callable(builder):
        raise ValueError(f"model.builder {name!r}: {module_name} has no function {function!r}")
    return builder


def build_model(model_config, output_stride="train"):
    """The Keras model of `model_config`, at its training output stride or `output_stride`."""
    builder = model_builder(model_config.builder)
    if builder is not None:
        stride = model_config.output_stride if output_stride == "train" else output_stride
        return builder(model_config, stride)
    from deeplab_tf import modeling  # keeps `deeplab_tf.config` importable without Keras
    return modeling.deeplabv3(**model_kwargs(model_config, output_stride))


def from_dict(values):
    """Inverse of `dataclasses.asdict` for an `ExperimentConfig` (e.g. a work dir's config.json)."""
    config = ExperimentConfig(name=values.get("name", ""))
    for section in ("model", "data", "train", "eval", "paper"):  # an older run has no paper
        target = getattr(config, section)
        for key, value in values.get(section, {}).items():
            if not hasattr(target, key):
                raise ValueError(f"config.json: unknown field {section}.{key}")
            if section == "paper":  # nested: the figures' settings hold tuples too
                value = _tuples(value)
            setattr(target, key, tuple(value) if isinstance(value, list) else value)
    return config


def _tuples(value):
    """JSON's lists back into the tuples they were, inside dicts and lists too."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return value


def from_json(text):
    return from_dict(json.loads(text))
