"""deeplab_tf.recipe from configs alone: every departure from the paper's protocol is
detected and cited, the shipped paper experiments depart from nothing but what their
table varies, the demo's departures are listed, and the paper's figure of a row is
matched by the evaluation settings (issue 31).

The paper's values and effects below are written from the paper's text (4.1, 4.3,
Appendix A and C), not read from recipe.py.
"""
import json
import os
import pkgutil
import re
import subprocess
import sys

import pytest

import experiments
from deeplab_tf import config as config_lib
from deeplab_tf import recipe

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGENET = "train.init_checkpoint=/ckpt/resnet_v1_101.ckpt"
MS = "eval.scales=(0.5,0.75,1.0,1.25,1.5,1.75)"
NAMES = sorted(m.name for m in pkgutil.iter_modules(experiments.__path__)
               if m.name != "common")
PAPER_RUNS = [n for n in NAMES if n.startswith(("voc_", "table"))]


def departures(name, *overrides):
    """{setting: departure} of experiment `name` with `overrides`; one shipped without a
    start (the user's ImageNet checkpoint) is given one first."""
    start = [IMAGENET] if not config_lib.load_experiment(name).train.init_checkpoint else []
    rep = recipe.report(config_lib.load_experiment(name, [*start, *overrides]))
    return {d["setting"]: d for d in rep.departures}


# (setting, the override that departs, the run's value as shown, text the effect must
# hold: the paper's figure where it measured the change, else "not measured").
VOC_STAGE1_CHANGES = [
    ("crop_size", "data.crop_size=321", "321", "67.22 instead of 77.21 (Table 8"),
    ("crop_size", "data.crop_size=385", "385", "not measured in the paper for 385"),
    ("batch_size", "train.batch_size=8", "8", "Table 9"),
    ("batch_norm", "train.freeze_batch_norm=true", "frozen", "75.95 instead of 77.21"),
    ("batch_norm_decay", "model.batch_norm_decay=0.99", "0.99", "not measured"),
    ("upsample_logits", "train.upsample_logits=false", "False", "76.01 instead of 77.21"),
    ("init", "train.init_checkpoint=none", "from scratch", "not measured in the paper"),
    ("init", "train.init_checkpoint=runs/some_run", "a trained run", "not measured"),
    ("output_stride", "model.output_stride=8", "8", "74.45 instead of 77.21"),
    ("output_stride", "model.output_stride=32", "32", "Table 10"),
    ("multi_grid", "model.multi_grid=(1,1,1)", "(1, 1, 1)", "Table 5"),
    ("aspp_rates", "model.aspp_rates=(6,12,18,24)", "(6, 12, 18, 24)", "-0.12 (Table 5"),
    ("image_pooling", "model.image_pooling=false", "False", "Table 5"),
    ("depth", "model.depth=50", "50", "Table 2"),
    ("head", "model.head=cascade", "cascade", "79.35 vs ASPP 79.77"),
    ("extra_blocks", "model.extra_blocks=1", "1", "not measured"),
    ("learning_rate", "train.base_learning_rate=0.01", "0.01", "not measured"),
    ("learning_rate_power", "train.learning_rate_power=1.0", "1.0", "not measured"),
    ("steps", "train.steps=10000", "10000", "not measured"),
    ("scale_range", "data.min_scale=0.75", "(0.75, 2)", "not measured"),
    ("scale_step", "data.scale_step=0", "0.0", "not measured"),
    ("flip", "data.flip=false", "False", "not measured"),
    ("dataset", "data.dataset=synthetic_voc", "synthetic_voc", "not measured"),
    ("train_split", "data.train_split=train", "train", "not measured"),
    ("eval_output_stride", "eval.output_stride=4", "4", "not measured in the paper on VOC"),
    ("eval_scales", "eval.scales=(1.0,1.5)", "(1, 1.5)", "not measured"),
    ("eval_flip", "eval.flip=true", "True", "not measured in the paper for one scale"),
    ("eval_padding", "eval.pad_to=smallest", "smallest OS*k+1", "not measured"),
    ("eval_padding", "eval.crop_size=(321,321)", "321x321", "not measured"),
]


def test_voc_stage1_with_an_imagenet_start_departs_from_nothing():
    rep = recipe.report(config_lib.load_experiment("voc_stage1", [IMAGENET]))
    assert rep.departures == [] and rep.notes == [] and rep.varied == []
    assert recipe.format_table(rep).count("\n") == 0  # one line says so
    assert "faithful" in recipe.format_table(rep)


@pytest.mark.parametrize("setting, override, shown, effect", VOC_STAGE1_CHANGES,
                         ids=[f"{c[0]}-{c[1]}" for c in VOC_STAGE1_CHANGES])
def test_each_departure_is_detected_alone_with_its_measured_effect(setting, override,
                                                                    shown, effect):
    found = departures("voc_stage1", override)
    assert list(found) == [setting]  # that one, and nothing else
    assert found[setting]["run"] == shown
    assert effect in found[setting]["effect"]
    text = recipe.format_table(recipe.report(config_lib.load_experiment(
        "voc_stage1", [IMAGENET, override])))
    assert found[setting]["label"] in text and found[setting]["effect"] in text


def test_the_paper_values_shown_are_the_papers():
    shown = {d["setting"]: (d["paper"], d["cite"]) for override in (
        "data.crop_size=321", "train.batch_size=8", "model.batch_norm_decay=0.99",
        "train.base_learning_rate=0.01", "model.output_stride=8", "train.steps=1",
        "model.multi_grid=(1,1,1)", "model.aspp_rates=(1,2,3)", "eval.output_stride=4")
        for d in departures("voc_stage1", override).values()}
    assert shown == {
        "crop_size": ("513", "4.1"), "batch_size": ("16", "4.1"),
        "batch_norm_decay": ("0.9997", "4.1"), "learning_rate": ("0.007", "4.1"),
        "output_stride": ("16", "4.1"), "steps": ("30000", "4.1"),
        "multi_grid": ("(1, 2, 4)", "Table 5"), "aspp_rates": ("(6, 12, 18)", "3.3, Table 5"),
        "eval_output_stride": ("16 or 8", "Table 6")}


def test_batch_size_counts_only_where_batch_norm_trains():
    # Frozen batch norm (4.1's stage 2) does not care for the batch: one departure, BN's.
    assert list(departures("voc_stage1", "train.freeze_batch_norm=true",
                           "train.batch_size=4")) == ["batch_norm"]
    assert departures("voc_stage2", "train.batch_size=4") == {}


@pytest.mark.parametrize("override, setting, effect", [
    ("train.freeze_batch_norm=false", "batch_norm", "not measured"),
    ("model.output_stride=16", "output_stride", "not measured"),
    ("train.base_learning_rate=0.007", "learning_rate", "not measured"),
    ("data.train_split=train_aug", "train_split", "not measured"),
    ("train.init_checkpoint=none", "init", "not measured"),
    ("train.freeze_gamma_beta=true", "batch_norm", "not measured"),
])
def test_stage2_departures(override, setting, effect):
    assert departures("voc_stage2") == {}  # from stage 1's run, as shipped
    found = departures("voc_stage2", "train.init_checkpoint=runs/voc_stage1", override)
    assert list(found) == [setting] and effect in found[setting]["effect"]


@pytest.mark.parametrize("override, setting, paper", [
    ("data.crop_size=513", "crop_size", "769"), ("train.steps=30000", "steps", "90000"),
    ("eval.crop_size=(513,513)", "eval_padding", "1025x2049"),
    ("eval.scales=(0.5,1.0)", "eval_scales", "(1) or (0.75, 1, 1.25) or "
                                             "(0.75, 1, 1.25, 1.5, 1.75, 2)")])
def test_cityscapes_departures(override, setting, paper):
    assert departures("cityscapes_fine") == {}
    found = departures("cityscapes_fine", override)
    assert list(found) == [setting] and found[setting]["paper"] == paper


def test_own_data_keeps_the_recipe_but_not_the_data_set():
    found = departures("custom", "data.dataset=custom_seg/other")
    # custom's own choices for a small data set are listed as what they are.
    assert set(found) == {"depth", "batch_norm", "steps"}
    assert found["batch_norm"]["effect"].startswith("75.95 instead of 77.21")


@pytest.mark.parametrize("name", PAPER_RUNS)
def test_paper_experiments_depart_only_in_what_their_row_varies(name):
    config = config_lib.load_experiment(name)
    rep = recipe.report(config)
    assert rep.departures == [], recipe.format_table(rep)
    assert {v["setting"] for v in rep.varied} == set(config.paper.varies)
    # A varied setting changed on the row's experiment is still no departure ...
    for varied in config.paper.varies:
        assert varied not in departures(name, *_change(varied))


def _change(setting):
    return {"output_stride": ["model.output_stride=16"], "eval_output_stride":
            ["eval.output_stride=8"], "depth": ["model.depth=101"],
            "extra_blocks": ["model.extra_blocks=0"], "multi_grid": ["model.multi_grid=(1,1,1)"],
            "aspp_rates": ["model.aspp_rates=(6,12,18,24)"],
            "image_pooling": ["model.image_pooling=false"], "crop_size": ["data.crop_size=321"],
            "batch_norm": ["train.freeze_batch_norm=true"],
            "upsample_logits": ["train.upsample_logits=false"],
            "batch_size": ["train.batch_size=4"]}[setting]


def test_a_rows_varied_setting_departs_on_another_experiment():
    # ... but on voc_stage1, which varies nothing, each of those is a departure.
    assert "output_stride" in departures("voc_stage1", "model.output_stride=32")
    assert "output_stride" not in departures("table1", "model.output_stride=32",
                                             "eval.output_stride=32")
    # table1 fixes its model: ASPP there is a departure from the row.
    assert list(departures("table1", "model.head=aspp")) == ["head"]


def test_the_demo_lists_its_departures():
    found = departures("demo", "train.init_checkpoint=none")
    assert found["init"]["run"] == "from scratch"
    assert found["crop_size"]["run"] == "65" and found["crop_size"]["paper"] == "513"
    assert {"dataset", "depth", "multi_grid", "aspp_rates", "batch_size",
            "batch_norm_decay", "learning_rate", "steps", "eval_padding"} <= set(found)
    process = subprocess.run(
        [sys.executable, "-m", "tools.train", "--experiment=demo", "--recipe_only",
         f"--workdir={REPO}/nonexistent_recipe_only_workdir"],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert process.returncode == 0, process.stderr[-2000:]
    assert "12 departures" in process.stdout
    for text in ("from scratch", "crop size", "513 (4.1)", "65", "batch-norm decay"):
        assert text in process.stdout
    assert not os.path.exists(f"{REPO}/nonexistent_recipe_only_workdir")  # nothing written


# ---------------------------------------------------------------- the paper's figures

def test_result_lines_match_the_evaluated_settings():
    config = config_lib.load_experiment("voc_stage1", [
        "data.crop_size=385", "train.batch_size=8", "eval.output_stride=8", MS,
        "eval.flip=true"])
    lines = recipe.result_lines(config, 0.789)
    assert lines[0] == ("Table 6, OS 8 + MS + flip: paper 79.77, this run 78.90, -0.87; "
                        "departures: crop 385, batch 8")
    at16 = recipe.result_lines(config_lib.load_experiment("voc_stage1", [IMAGENET]), 0.7)
    assert at16[0] == "Table 6, OS 16: paper 77.21, this run 70.00, -7.21; no departures"
    at8 = recipe.result_lines(config_lib.load_experiment("voc_stage1", [
        IMAGENET, "eval.output_stride=8"]), None)
    assert at8[0] == "Table 6, OS 8: paper 78.51 (77.21 + 1.3, text), this run n/a; " \
                     "no departures"
    # Table 1's row at OS 256 (no atrous at all), and a setting the row has no figure for.
    no_atrous = config_lib.load_experiment("table1", ["model.output_stride=None",
                                                      "eval.output_stride=None"])
    assert recipe.result_lines(no_atrous, 0.2)[0].startswith(
        "Table 1, OS 256 (no atrous): paper 20.29, this run 20.00, -0.29")
    other = recipe.result_lines(config_lib.load_experiment("table1", [
        "model.output_stride=16", "eval.output_stride=16"]), 0.7)[0]
    assert other.startswith("table1: no paper figure for these settings (the row's "
                            "figures: Table 1 OS 8 75.18; Table 1 OS 256 (no atrous) 20.29)")


def test_the_paper_section_survives_config_json():
    config = config_lib.load_experiment("table8", ["train.upsample_logits=false"])
    again = config_lib.from_json(config_lib.to_json(config))
    assert again == config  # the figures' settings come back as tuples
    assert recipe.report(again) == recipe.report(config)
    assert recipe.result_lines(again, 0.76)[0].startswith(
        "Table 8, labels downsampled (no UL): paper 76.01, this run 76.00, -0.01")


def test_bad_paper_sections_are_refused_by_name():
    with pytest.raises(ValueError, match="paper.protocol must be one of .*'voc_stage3'"):
        recipe.report(config_lib.load_experiment("voc_stage1", ["paper.protocol=voc_stage3"]))
    with pytest.raises(ValueError, match="paper.settings: unknown setting 'cropsize'"):
        recipe.report(config_lib.load_experiment("voc_stage1", ["paper.settings={'cropsize': 1}"]))
    with pytest.raises(ValueError, match="unknown setting 'oops'"):
        recipe.paper_result("Table 1", "x", "1.0", oops=1)


def test_written_atomically_and_readable(tmp_path):
    rep = recipe.report(config_lib.load_experiment("demo"))
    json_path, txt_path = recipe.write(rep, str(tmp_path / "run"))
    assert sorted(os.listdir(tmp_path / "run")) == ["recipe.json", "recipe.txt"]  # no temp
    record = json.loads(open(json_path).read())
    assert record["faithful"] is False and record["experiment"] == "demo"
    assert [d["setting"] for d in record["departures"]] == [d["setting"] for d in
                                                           rep.departures]
    assert open(txt_path).read() == recipe.format_table(rep) + "\n"
    assert "| start (init checkpoint) | ImageNet ResNet (4) | from scratch |" in \
        recipe.markdown(rep)


# ---------------------------------------------------------------- docstrings

FIGURE = re.compile(r"(?<!\d)(?<!\d\.)\d{2}\.\d{1,2}(?!\.?\d)")  # an mIoU as the paper prints it


@pytest.mark.parametrize("name", NAMES)
def test_docstring_figures_are_the_configs(name):
    """Every mIoU a paper experiment's docstring quotes is one of its config's
    paper.results, and every one of those is quoted: the two cannot disagree."""
    import importlib
    module = importlib.import_module(f"experiments.{name}")
    config = config_lib.load_experiment(name)
    if name in ("demo", "smoke", "custom"):  # their figures are this project's own runs
        assert not config.paper.results
        return
    quoted = set(FIGURE.findall(module.__doc__))
    assert quoted == {r["miou"] for r in config.paper.results}


def test_an_older_run_gets_its_experiments_paper_section(tmp_path):
    config = config_lib.load_experiment("cityscapes_fine")
    record = json.loads(config_lib.to_json(config))
    del record["paper"]  # as config.json was written before issue 31
    path = tmp_path / "config.json"
    path.write_text(json.dumps(record))
    older = config_lib.from_json(path.read_text())
    assert older.paper.protocol == "voc_stage1"  # the default, before the look-up
    assert recipe.paper_from_experiment(older, str(path)).paper == config.paper


def test_train_refuses_a_bad_paper_section_in_one_line(tmp_path):
    process = subprocess.run(
        [sys.executable, "-m", "tools.train", "--experiment=smoke", f"--workdir={tmp_path}/w",
         "--set=paper.protocol=voc_stage3"], cwd=REPO, capture_output=True, text=True,
        timeout=120)
    assert process.returncode != 0 and "Traceback" not in process.stderr
    assert "paper.protocol must be one of" in process.stderr and "'voc_stage3'" in process.stderr
    assert not os.path.exists(f"{tmp_path}/w")
