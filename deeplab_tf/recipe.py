"""Where a run leaves the paper's recipe, and what the paper measured that costs.

`report(config)` compares a config, alone (no data, no TensorFlow), with the paper's
protocol for its kind (`config.paper.protocol`: VOC stage 1 or 2, Cityscapes, COCO
pre-training, one's own data; PROTOCOLS), with the experiment's paper row laid over it
(`config.paper.settings`; the settings its table varies, `config.paper.varies`, are never
departures). Each departure names the setting, the paper's value (cited), the run's value
and the paper's measured effect of that change, or "not measured in the paper". The
paper's own numbers are the experiment's `config.paper.results`, the one place they live;
`result_lines` sets the matching one beside an evaluated mIoU.

Written at the start of every `tools.train` run (WORKDIR/recipe.json and recipe.txt, and
a TensorBoard text summary), printed by `tools.train --recipe_only` and by
`tools.evaluate`. The measured effects are the paper's text (sections 4.1-4.3, Appendix
A and C); figures that are only in the paper's table bodies are not in that text, and are
said to be missing rather than guessed.
"""
import dataclasses
import json
import os

from deeplab_tf import atomic
from deeplab_tf import config as config_lib

RECIPE_JSON, RECIPE_TXT = "recipe.json", "recipe.txt"
MULTI_SCALE = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)  # paper 4.2 "scales = {0.5, ..., 1.75}"
CITYSCAPES_SCALES = ((1.0,), (0.75, 1.0, 1.25), (0.75, 1.0, 1.25, 1.5, 1.75, 2.0))
IMAGENET, TRAINED_RUN, FROM_SCRATCH, UNSET = ("ImageNet ResNet", "a trained run",
                                              "from scratch", "not set")


class OneOf(tuple):
    """A paper value with alternatives, each measured (e.g. evaluation at OS 16 or 8)."""


def _norm(value):
    """JSON round trips turn tuples into lists: compare them as tuples, numbers as floats
    inside tuples (scales 1 == 1.0)."""
    if isinstance(value, (list, tuple)) and not isinstance(value, OneOf):
        return tuple(float(v) if isinstance(v, (int, float)) and not isinstance(v, bool)
                     else _norm(v) for v in value)
    return value


# ---------------------------------------------------------------- the run's values

def _init(config):
    path = (config.train.init_checkpoint or "").strip()
    if not path:
        return UNSET
    if path.lower() == config_lib.NO_INIT_CHECKPOINT:
        return FROM_SCRATCH
    name = os.path.basename(path.rstrip("/"))
    # TF-slim's files are resnet_v1_{50,101}.ckpt; anything else (a work dir, its
    # checkpoints/, a .weights.h5 of one) holds a trained run's weights.
    return IMAGENET if name.startswith("resnet_v1") else TRAINED_RUN


def _batch_norm(config):
    if not config.train.freeze_batch_norm:
        return "trained"
    return "frozen, gamma/beta too" if config.train.freeze_gamma_beta else "frozen"


def _padding(config):
    if config.eval.pad_to == "smallest":
        return "smallest OS*k+1"
    size = tuple(config.eval.crop_size or ())
    size = size * 2 if len(size) == 1 else size
    return "x".join(str(s) for s in size)


def _aspp(config):
    return config.model.head == "aspp"


@dataclasses.dataclass(frozen=True)
class Setting:
    key: str       # the name config.paper.settings/varies/results use
    label: str     # the table's
    short: str     # the one-line summary's ("crop 321")
    read: object   # config -> value
    applies: object = None  # (config, protocol values) -> bool; None: always


SETTINGS = (
    Setting("dataset", "data set", "data", lambda c: c.data.dataset),
    Setting("train_split", "train split", "split", lambda c: c.data.train_split),
    Setting("init", "start (init checkpoint)", "start", _init),
    Setting("depth", "ResNet depth", "ResNet", lambda c: c.model.depth),
    Setting("head", "head", "head", lambda c: c.model.head),
    Setting("extra_blocks", "cascaded blocks after block4", "extra blocks",
            lambda c: c.model.extra_blocks),
    Setting("output_stride", "train output stride", "OS", lambda c: c.model.output_stride),
    Setting("multi_grid", "multi-grid", "MG", lambda c: _norm(c.model.multi_grid)),
    Setting("aspp_rates", "ASPP rates (at OS 16)", "ASPP",
            lambda c: _norm(c.model.aspp_rates or (6, 12, 18)),
            lambda c, p: _aspp(c) and p.get("head") == "aspp"),
    Setting("image_pooling", "image pooling", "image pooling",
            lambda c: c.model.image_pooling, lambda c, p: _aspp(c) and p.get("head") == "aspp"),
    Setting("crop_size", "crop size", "crop", lambda c: c.data.crop_size),
    # Batch size matters where batch norm trains (4.1, Table 9): compared only then.
    Setting("batch_size", "batch size (batch norm trains)", "batch",
            lambda c: c.train.batch_size,
            lambda c, p: not c.train.freeze_batch_norm and p.get("batch_norm") == "trained"),
    Setting("batch_norm", "batch norm", "BN", _batch_norm),
    Setting("batch_norm_decay", "batch-norm decay", "BN decay",
            lambda c: c.model.batch_norm_decay),
    Setting("upsample_logits", "upsample logits (not labels)", "upsample logits",
            lambda c: c.train.upsample_logits),
    Setting("learning_rate", "base learning rate", "lr", lambda c: c.train.base_learning_rate),
    Setting("learning_rate_power", "poly power", "power",
            lambda c: c.train.learning_rate_power),
    Setting("steps", "training steps", "steps", lambda c: c.train.steps),
    Setting("scale_range", "random scales", "scales",
            lambda c: _norm((c.data.min_scale, c.data.max_scale))),
    Setting("scale_step", "random scale step", "scale step", lambda c: c.data.scale_step),
    Setting("flip", "random left-right flip", "train flip", lambda c: c.data.flip),
    Setting("eval_output_stride", "eval output stride", "eval OS",
            lambda c: c.eval.output_stride),
    Setting("eval_scales", "eval scales", "eval scales", lambda c: _norm(c.eval.scales)),
    Setting("eval_flip", "eval flip", "eval flip", lambda c: c.eval.flip),
    Setting("eval_padding", "eval padding", "eval pad", _padding),
    # No protocol compares it (VOC test has no public labels): it tells a test-server
    # figure (Table 7, 13) from a val one when results are matched.
    Setting("eval_split", "eval split", "eval split", lambda c: c.eval.split),
)
BY_KEY = {s.key: s for s in SETTINGS}

# ---------------------------------------------------------------- the paper's protocols

# (value, citation) per setting. Paper 4.1 for VOC stage 1; section 4.3 and Table 5 for
# the model (the "best ASPP model"); the authors' code only where the paper is silent.
VOC_STAGE1 = {
    "dataset": ("pascal_voc_seg", "4"), "train_split": ("train_aug", "4.1"),
    "init": (IMAGENET, "4"), "depth": (101, "4.3"), "head": ("aspp", "4.3"),
    "extra_blocks": (0, "4.3"),
    "output_stride": (16, "4.1"), "multi_grid": ((1.0, 2.0, 4.0), "Table 5"),
    "aspp_rates": ((6.0, 12.0, 18.0), "3.3, Table 5"), "image_pooling": (True, "Table 5"),
    "crop_size": (513, "4.1"), "batch_size": (16, "4.1"), "batch_norm": ("trained", "4.1"),
    "batch_norm_decay": (0.9997, "4.1"), "upsample_logits": (True, "4.1"),
    "learning_rate": (0.007, "4.1"), "learning_rate_power": (0.9, "4.1"),
    "steps": (30000, "4.1"), "scale_range": ((0.5, 2.0), "4.1"),
    "scale_step": (0.25, "the authors' code; the paper: 'from 0.5 to 2.0'"),
    "flip": (True, "4.1"), "eval_output_stride": (OneOf((16, 8)), "Table 6"),
    "eval_scales": (OneOf(((1.0,), MULTI_SCALE)), "4.2, Table 6"),
    "eval_flip": ("with multi-scale inputs", "Table 6"),
    "eval_padding": ("513x513", "4.1"),
}
PROTOCOLS = {
    "voc_stage1": ("VOC stage 1", "paper 4.1", VOC_STAGE1),
    "voc_stage2": ("VOC stage 2", "paper 4.1", dict(
        VOC_STAGE1, train_split=("trainval", "4.1"), init=(TRAINED_RUN, "4.1: stage 1's"),
        output_stride=(8, "4.1"), batch_norm=("frozen", "4.1"),
        learning_rate=(0.001, "4.1"))),
    "cityscapes": ("Cityscapes", "paper Appendix C", dict(
        VOC_STAGE1, dataset=("cityscapes_seg", "App. C"), train_split=("train", "App. C"),
        crop_size=(769, "App. C"), steps=(90000, "App. C"),
        eval_output_stride=(OneOf((16, 8, 4)), "Tables 12-13"),
        eval_scales=(OneOf(CITYSCAPES_SCALES), "App. C"),
        eval_padding=("1025x2049", "App. C: whole image"))),
    # 4.3 names the data and the model only: the rest is 4.1's, which it does not restate.
    "coco_pretrain": ("COCO pre-training", "paper 4.3", dict(
        {k: (v, f"{c} (4.3 does not restate it)") for k, (v, c) in VOC_STAGE1.items()},
        dataset=("coco_voc_seg", "4.3"), train_split=("train", "4.3"))),
    "own_data": ("VOC stage 1 recipe, for one's own data", "paper 4.1", {
        k: v for k, v in VOC_STAGE1.items() if k not in ("dataset", "train_split")}),
}


def protocol_values(paper):
    """{setting: (value, citation)} of `paper` (a config's PaperConfig): its protocol's,
    with its row's own settings (cited by its table) in their place."""
    if paper.protocol not in PROTOCOLS:
        raise ValueError(f"paper.protocol must be one of {', '.join(PROTOCOLS)}, "
                         f"got {paper.protocol!r}")
    values = dict(PROTOCOLS[paper.protocol][2])
    for key, value in (paper.settings or {}).items():
        if key not in BY_KEY:
            raise ValueError(f"paper.settings: unknown setting {key!r} (known: "
                             f"{', '.join(BY_KEY)})")
        values[key] = (_norm(value), paper.table or "its row")
    for key in paper.varies:
        if key not in BY_KEY:
            raise ValueError(f"paper.varies: unknown setting {key!r}")
    return values


def _differs(key, paper_value, run_value, config):
    if key == "eval_flip":
        if isinstance(paper_value, bool):  # a row evaluated one way
            return bool(run_value) != paper_value
        # Measured with multi-scale inputs only (Tables 4, 6, 12): flips of one scale not.
        return bool(run_value) and _norm(config.eval.scales) == (1.0,)
    if isinstance(paper_value, OneOf):
        return _norm(run_value) not in [_norm(v) for v in paper_value]
    return _norm(run_value) != _norm(paper_value)


# ---------------------------------------------------------------- measured effects

def effect(key, run_value, paper_value, protocol, config):
    """The paper's measured effect of `run_value` in place of `paper_value` (cited), or
    "not measured in the paper"."""
    from deeplab_tf import recipe_effects  # the paper's sentences, kept apart
    return recipe_effects.effect(key, run_value, paper_value, protocol, config)


def _show(value):
    if isinstance(value, OneOf):
        return " or ".join(_show(v) for v in value)
    if isinstance(value, tuple):
        return "(" + ", ".join(f"{v:g}" if isinstance(v, float) else str(v)
                               for v in value) + ")"
    if value is None:
        return "none (no atrous)"
    return str(value)


@dataclasses.dataclass
class Report:
    experiment: str
    protocol: str
    title: str
    table: str
    row: str
    departures: list  # of dicts: setting, label, short, paper, cite, run, effect
    varied: list      # of dicts: setting, label, run (settings the row varies)
    notes: list

    @property
    def faithful(self):
        return not self.departures

    def to_dict(self):
        return dict(dataclasses.asdict(self), faithful=self.faithful)


def report(config):
    """The `Report` of `config` against the paper's protocol for its kind and its row."""
    paper = config.paper
    title, cite, _ = PROTOCOLS.get(paper.protocol, (None, None, None))
    values = protocol_values(paper)
    departures, varied, notes = [], [], []
    for setting in SETTINGS:
        if setting.key not in values:
            continue
        if setting.applies and not setting.applies(config, {k: v for k, (v, _) in
                                                            values.items()}):
            continue
        run_value = setting.read(config)
        if setting.key in paper.varies:
            varied.append(dict(setting=setting.key, label=setting.label,
                               run=_show(run_value)))
            continue
        paper_value, where = values[setting.key]
        if setting.key == "init" and run_value == UNSET:
            notes.append(f"train.init_checkpoint is not set: the paper starts from "
                         f"{_show(paper_value)} ({where}); training refuses until it is set")
            continue
        if _differs(setting.key, paper_value, run_value, config):
            departures.append(dict(
                setting=setting.key, label=setting.label, short=setting.short,
                paper=_show(paper_value), cite=where, run=_show(run_value),
                effect=effect(setting.key, run_value, paper_value, paper.protocol, config)))
    return Report(config.name, paper.protocol, f"{title} protocol ({cite})", paper.table,
                  paper.row,
                  departures, varied, notes)


# ---------------------------------------------------------------- printing and files

def summary(rep):
    """"departures: crop 321, batch 8" or "faithful": the one-line form."""
    if rep.faithful:
        return "no departures"
    return "departures: " + ", ".join(f"{d['short']} {d['run']}" for d in rep.departures)


def _heading(rep):
    row = f", {rep.table}" + (f" ({rep.row})" if rep.row else "") if rep.table else ""
    return f"recipe of {rep.experiment or '(unnamed)'} against the paper's {rep.title}{row}"


def format_table(rep):
    """The console/recipe.txt form: one line when faithful, else a table."""
    lines = []
    if rep.faithful:
        lines.append(f"{_heading(rep)}: faithful, no departures.")
    else:
        lines.append(f"{_heading(rep)}: {len(rep.departures)} departure"
                     f"{'' if len(rep.departures) == 1 else 's'}")
        rows = [("setting", "paper", "this run", "paper's measured effect")] + [
            (d["label"], f"{d['paper']} ({d['cite']})", d["run"], d["effect"])
            for d in rep.departures]
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        for r in rows:
            lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[3])
    if rep.varied:
        lines.append("  varied by " + (rep.table or "its table") + " (not departures): " +
                     ", ".join(f"{v['label']} {v['run']}" for v in rep.varied))
    lines.extend(f"  note: {n}" for n in rep.notes)
    return "\n".join(lines)


def markdown(rep):
    """The TensorBoard text summary's form (Markdown)."""
    lines = [f"**{_heading(rep)}**", ""]
    if rep.faithful:
        lines.append("Faithful: no departures from the paper's protocol.")
    else:
        lines += ["| setting | paper | this run | paper's measured effect |",
                  "|---|---|---|---|"]
        lines += [f"| {d['label']} | {d['paper']} ({d['cite']}) | {d['run']} | "
                  f"{d['effect']} |" for d in rep.departures]
    if rep.varied:
        lines += ["", "Varied by the table: " + ", ".join(
            f"{v['label']} {v['run']}" for v in rep.varied)]
    lines += [""] + [f"Note: {n}" for n in rep.notes]
    return "\n".join(lines)


def write(rep, workdir):
    """WORKDIR/recipe.json and recipe.txt, each written atomically; returns the paths."""
    os.makedirs(workdir, exist_ok=True)
    paths = os.path.join(workdir, RECIPE_JSON), os.path.join(workdir, RECIPE_TXT)
    atomic.write_text(paths[0], json.dumps(rep.to_dict(), indent=2) + "\n")
    atomic.write_text(paths[1], format_table(rep) + "\n")
    return paths


def paper_from_experiment(config, config_json):
    """A run trained before config.json carried a paper section: its experiment's (by
    name), when experiments/ still has it. Returns `config`."""
    with open(config_json) as f:
        if "paper" in json.load(f):
            return config
    try:
        config.paper = config_lib.load_experiment(config.name).paper
    except (ValueError, ImportError):
        pass  # another experiment's name: the default, VOC stage 1, is compared
    return config


def announce(config):
    """At the start of a training run: prints the table; returns the `Report`. The trainer's
    chief writes WORKDIR/recipe.json and recipe.txt (`write`) once the restart is accepted
    (a refused restart rewrites nothing), and the TensorBoard text (summaries.write_recipe)."""
    rep = report(config)
    print(format_table(rep), flush=True)
    return rep


# ---------------------------------------------------------------- the paper's figures

def paper_result(table, label, miou, source="text", **when):
    """One figure of a paper row for `config.paper.results`: `miou` as the paper prints it
    (a string, keeping its digits), `when` the settings it was measured with."""
    float(miou)  # a number, or refused here
    for key in when:
        if key not in BY_KEY:
            raise ValueError(f"paper_result: unknown setting {key!r}")
    return dict(table=table, label=label, miou=str(miou), source=source, when=when)


def matching_results(config):
    """The paper's figures of `config.paper.results` whose settings are the run's."""
    return [r for r in config.paper.results
            if all(_norm(BY_KEY[k].read(config)) == _norm(v) for k, v in r["when"].items())]


def result_lines(config, miou):
    """The evaluation's lines: the paper's figure for these settings beside `miou` (a
    fraction, as ConfusionMatrix.result gives it), the departures, and the table."""
    rep = report(config)
    run = None if miou is None else 100.0 * miou
    lines = []
    matches = matching_results(config)
    for r in matches:
        difference = "" if run is None else f", {run - float(r['miou']):+.2f}"
        # A figure the text does not state but gives the terms of says how it follows.
        derived = "" if r["source"] == "text" else f" ({r['source']})"
        lines.append(f"{r['table']}, {r['label']}: paper {r['miou']}{derived}, this run "
                     f"{'n/a' if run is None else f'{run:.2f}'}{difference}; {summary(rep)}")
    if not matches:
        known = "; ".join(f"{r['table']} {r['label']} {r['miou']}"
                          for r in config.paper.results)
        lines.append(f"{config.name or '(unnamed)'}: no paper figure for these settings"
                     + (f" (the row's figures: {known})" if known else "")
                     + f"; {summary(rep)}")
    return lines + [format_table(rep)]
