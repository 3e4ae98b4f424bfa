"""The README's first command, whole, at a tiny size: tools.demo with the smoke experiment.

Make data, build it with TFDS, train, evaluate, export, predict, draw the pictures: every
step as the user runs it (subprocesses), with the console as the user sees it. The data
steps are checked here too: tools.make_synthetic writes the same bytes as
`synthetic.generate` for the same seed, and the set tools.build_dataset built reads back
with `tfds.load`.
"""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from deeplab_tf import data  # noqa: F401  (registers the TFDS builders for tfds.load)
from deeplab_tf import synthetic


@pytest.mark.slow
def test_demo_runs_end_to_end_and_writes_every_output(tmp_path):
    workdir = tmp_path / "demo"
    environment = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    process = subprocess.run(
        [sys.executable, "-m", "tools.demo", f"--workdir={workdir}", "--experiment=smoke",
         "--num_train=4", "--num_val=2", "--num_predict=2"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900,
        env=environment)
    output = process.stdout  # stdout and stderr in the order the user sees them
    assert process.returncode == 0, output[-4000:]

    train_dir = workdir / "train_run"
    result = json.loads((train_dir / "eval" / "results.json").read_text())
    assert result["step"] == 4 and result["num_images"] == 2  # smoke: 4 steps; 2 val images
    assert (train_dir / "eval" / "per_class_iou_4.png").is_file()
    export = train_dir / "export"
    assert (export / "saved_model.pb").is_file()
    assert (export / "assets.extra" / "tf_serving_warmup_requests").is_file()
    val_names = (workdir / "synthetic_src" / "ImageSets" / "Segmentation" /
                 "val.txt").read_text().split()
    assert len(val_names) == 2
    for name in val_names:
        labels = np.array(Image.open(workdir / "predictions" / "labels" / f"{name}.png"))
        image = Image.open(workdir / "synthetic_src" / "JPEGImages" / f"{name}.jpg")
        assert labels.shape == (image.height, image.width)
    # figsize (6, 2 * 2 rows + 0.6) and (10, 3) inches at 80 dots per inch.
    assert Image.open(workdir / "contact_sheet.png").size == (480, 368)
    assert Image.open(workdir / "training_curves.png").size == (800, 240)

    # The console: no TensorFlow loading noise, no redrawn progress bars, one line per step.
    steps = re.split(r"^\$ python -m (tools\.\w+)", output, flags=re.MULTILINE)
    sections = dict(zip(steps[1::2], steps[2::2]))
    assert list(sections) == ["tools.make_synthetic", "tools.build_dataset", "tools.train",
                              "tools.evaluate", "tools.export", "tools.predict"]
    for tool, text in sections.items():
        for noise in ("cuInit", "cudart_stub", "InitializeLog", "cpu_feature_guard"):
            assert noise not in text, (tool, noise)
        # No C++ error line either: on a CPU where TensorFlow turns oneDNN on (AVX-512
        # VNNI), an integer Transpose in the training input logged "E0000 ... oneDNN
        # supports DT_UINT8 only on platforms with AVX-512" (issue 28).
        assert not re.search(r"^E\d{4} |oneDNN", text, re.MULTILINE), (tool, text[-2000:])
    assert not re.search("[\r\b\x1b]", output)
    assert "step 4/4 (100%)" in sections["tools.train"]
    assert re.search(r"evaluated 2/2 images \(100%\) \| [0-9.]+ images/s",
                     sections["tools.evaluate"])
    assert "demo finished in" in output

    # The data steps: the same files as the library's generator (the demo's sizes and
    # seed 0), the build's counts, and the built set read back.
    source, again = workdir / "synthetic_src", tmp_path / "again"
    synthetic.generate(str(again), seed=0, num_train=4, num_val=2, min_size=56, max_size=96)
    files = sorted(p.relative_to(source) for p in source.rglob("*") if p.is_file())
    assert len(files) == 6 + 6 + 3
    assert all((source / f).read_bytes() == (again / f).read_bytes() for f in files)
    assert "train 4, trainval 6, val 2" in sections["tools.build_dataset"]
    assert len(tfds.load("synthetic_voc", split="val", data_dir=str(workdir / "tfds"))) == 2
