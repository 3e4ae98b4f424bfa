"""A run directory's records (config.json, classes.json) and what a restart may change.

The trainer writes WORKDIR/config.json (the experiment with its overrides and the class
counts filled in) and WORKDIR/classes.json (the data set's class table); evaluation,
pictures and exports read them to rebuild the trained model. Started again on a work dir
that holds a checkpoint, the trainer resumes it, so the new command must describe the same
training: a restart whose experiment or --set overrides change the model, the data or the
class table would resume weights under settings they were not trained with, or go on
silently on other data, and rewriting the records would make them lie about the
checkpoints already there.

So before anything is written, `check_restart` compares the new config and class table
with the recorded ones. Only the fields in `BENIGN` may differ freely (the change is
logged): how long the run goes, how often it saves, logs and summarises, how its step is
compiled, and the experiment's name. It is a whitelist on purpose: a field added later is
refused until someone decides it cannot change what is trained. Any other difference is
refused with a `ConfigChangeError` naming each field with its recorded and new values and
the flag (tools.train --allow_config_change) that accepts it deliberately; then the
previous records are kept as config.step_N.json / classes.step_N.json (N: the step
resumed) before the new ones are written. A record that cannot be read is refused the same
way, naming the file. A work dir without a checkpoint has nothing to resume: its records
are simply written.
"""
import json
import os

import tensorflow as tf
from absl import logging

from deeplab_tf import atomic
from deeplab_tf import classes
from deeplab_tf import config as config_lib
from deeplab_tf.train import checkpointing

CONFIG_FILE = "config.json"
ALLOW_FLAG = "--allow_config_change"
# Fields whose change cannot make the checkpoints mean something else: the run's length
# (train.steps also stretches the poly learning-rate schedule from the restored step on,
# which the log says), its save / log / summary cadence (the evaluator beside training
# evaluates each checkpoint), XLA compilation of the same step, the experiment's label.
BENIGN = frozenset({
    "name", "train.steps", "train.checkpoint_every", "train.max_checkpoints",
    "train.log_every", "train.summary_every", "train.image_summary_every", "train.xla",
})


class ConfigChangeError(ValueError):
    """A restart would change the model, the data or the class table of a run."""


SECTIONS = ("model", "data", "train", "eval")


def flatten(values):
    """{"name": ..., "model.depth": 101, ...} of config.json's dict of sections."""
    flat = {}
    for key, value in values.items():
        if key in SECTIONS and isinstance(value, dict):
            flat.update({f"{key}.{field}": v for field, v in value.items()})
        else:
            flat[key] = value
    return flat


def _as_json(config):
    """The config as config.json holds it (tuples as lists), flattened."""
    return flatten(json.loads(config_lib.to_json(config)))


def config_changes(recorded, config):
    """[(field, recorded value, new value)] where two ExperimentConfigs differ, by name."""
    old, new = _as_json(recorded), _as_json(config)
    return [(name, old.get(name), new.get(name)) for name in sorted(old.keys() | new.keys())
            if old.get(name) != new.get(name)]


def table_changes(recorded, table):
    """[(field, recorded, new)] where two class tables differ (names, colours, ignore)."""
    old, new = recorded.to_dict(), table.to_dict()
    return [(f"{classes.CLASSES_FILE} {key}", old[key], new[key]) for key in old
            if old[key] != new[key]]


def _read(path):
    with tf.io.gfile.GFile(path, "r") as f:
        return f.read()


def _recorded_config(workdir):
    """(the recorded ExperimentConfig or None where there is none, its text)."""
    path = os.path.join(workdir, CONFIG_FILE)
    if not tf.io.gfile.exists(path):
        return None, None
    text = _read(path)
    try:
        return config_lib.from_json(text), text
    except (ValueError, TypeError, AttributeError) as error:
        raise ConfigChangeError(
            f"{path} cannot be read ({error}), so this restart cannot be checked against "
            f"the run it resumes: repair it, or pass {ALLOW_FLAG} to replace it with this "
            f"command's config") from None


def _recorded_table(workdir):
    path = os.path.join(workdir, classes.CLASSES_FILE)
    if not tf.io.gfile.exists(path):
        return None, None
    text = _read(path)
    try:
        return classes.ClassTable.from_json(text), text
    except (ValueError, TypeError) as error:
        raise ConfigChangeError(
            f"{path} cannot be read ({error}): repair it, or pass {ALLOW_FLAG} to replace it "
            f"with the data set's class table") from None


def _describe(changes):
    return "; ".join(f"{name}: recorded {old!r}, now {new!r}" for name, old, new in changes)


def check_restart(workdir, config, table, allow_change=False):
    """Refuses a restart of `workdir` that changes what its checkpoints were trained on.

    `config` is the new ExperimentConfig (class counts filled in), `table` the data set's
    ClassTable. Returns the previous records to keep, as {file name: text}, for `write`
    (empty where nothing but BENIGN fields changed or there is no checkpoint). Raises
    ConfigChangeError naming every field that differs.
    """
    latest = tf.train.latest_checkpoint(checkpointing.checkpoint_dir(workdir))
    if not latest:
        return {}
    step = checkpointing.checkpoint_step(latest)
    try:
        recorded, config_text = _recorded_config(workdir)
        recorded_table, table_text = _recorded_table(workdir)
    except ConfigChangeError as error:
        if not allow_change:
            raise
        logging.warning("%s: replaced (%s)", error, ALLOW_FLAG)
        return {}
    changes = [] if recorded is None else config_changes(recorded, config)
    if recorded_table is not None:
        changes += table_changes(recorded_table, table)
    benign = [c for c in changes if c[0] in BENIGN]
    other = [c for c in changes if c[0] not in BENIGN]
    if benign:
        logging.info("restart of %s at step %d changes %s (allowed: these change no "
                     "weights, data or classes)", workdir, step, _describe(benign))
    if not other:
        return {}
    if not allow_change:
        fields = ", ".join(name for name, _, _ in other)
        raise ConfigChangeError(
            f"{workdir} holds a run at step {step} ({latest}) trained with other settings "
            f"than this command's: {fields} {'differs' if len(other) == 1 else 'differ'} "
            f"({_describe(other)}). Resuming would "
            f"train its weights under settings they were not trained with and rewrite its "
            f"records. Use the recorded settings, another --workdir, or pass {ALLOW_FLAG} "
            f"to accept the change deliberately (the old records are kept as "
            f"config.step_{step}.json and classes.step_{step}.json).")
    logging.warning("restart of %s at step %d changes %s (accepted by %s; the previous "
                    "records are kept as config.step_%d.json and classes.step_%d.json)",
                    workdir, step, _describe(other), ALLOW_FLAG, step, step)
    kept = {f"config.step_{step}.json": config_text, f"classes.step_{step}.json": table_text}
    return {name: text for name, text in kept.items() if text is not None}


def write(workdir, config, table, previous=None):
    """Writes WORKDIR/config.json and classes.json atomically, after the `previous`
    records ({file name: text}) that `check_restart` said to keep."""
    tf.io.gfile.makedirs(workdir)
    for name, text in (previous or {}).items():
        atomic.write_text(os.path.join(workdir, name), text)
    atomic.write_text(os.path.join(workdir, CONFIG_FILE), config_lib.to_json(config))
    classes.write(table, workdir)

