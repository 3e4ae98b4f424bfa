"""One training step on the TensorFlow and JAX Keras backends: every weight moves, no NaN.

Each backend runs in its own process: Keras picks its backend once, at import.
"""
import json
import os
import subprocess
import sys

import pytest

STEP_SCRIPT = r"""
import json, sys
import numpy as np
import keras
from deeplab_tf import modeling

print(json.dumps({"tensorflow_imported": "tensorflow" in sys.modules}), flush=True)
keras.utils.set_random_seed(0)
model = modeling.deeplabv3(num_classes=5, depth=50, output_stride=16,
                           aspp_rates=(6, 12, 18, 24), batch_norm_decay=0.9)
full = modeling.with_upsampled_logits(model)
rng = np.random.default_rng(0)
images = rng.uniform(0, 255, (2, 65, 65, 3)).astype("float32")
labels = rng.integers(0, 5, (2, 65, 65)).astype("int32")
labels[:, :5] = 255  # ignored pixels
loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=255)
full.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), loss=loss)
before = [np.array(w) for w in model.trainable_weights]
history = full.fit(images, labels, epochs=1, batch_size=2, verbose=0)
after = [np.array(w) for w in model.trainable_weights]
unchanged = [w.path for w, a, b in zip(model.trainable_weights, before, after)
             if np.array_equal(a, b)]
finite = all(np.isfinite(a).all() for a in after)
print(json.dumps({"backend": keras.backend.backend(), "loss": history.history["loss"][0],
                  "num_trainable": len(after), "unchanged": unchanged, "finite": finite}))
"""


def _run(backend):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    if backend == "jax":
        # Prove the model needs no TensorFlow: make it unimportable in that process.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.path.dirname(__file__) +
                                                          "/no_tensorflow",
                                                          env.get("PYTHONPATH")]))
    out = subprocess.run([sys.executable, "-c", STEP_SCRIPT], env=env, capture_output=True,
                         text=True, timeout=600, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [json.loads(l) for l in out.stdout.splitlines() if l.startswith("{")]
    return lines[0], lines[1]


@pytest.mark.parametrize("backend", ["tensorflow", pytest.param("jax", marks=pytest.mark.jax)])
def test_one_training_step_moves_every_weight(backend):
    if backend == "jax":
        import jax  # noqa: F401  (a test extra: a broken install fails here, never skips)
    imports, result = _run(backend)
    assert result["backend"] == backend
    assert result["finite"] and result["loss"] == pytest.approx(result["loss"])  # not NaN
    # ResNet-50: 53 convs, each with BN (3 weights); ASPP with four rates + image pooling
    # + projection: 7 more; logits kernel and bias.
    assert result["num_trainable"] == 3 * 53 + 3 * 7 + 2
    assert result["unchanged"] == []
    if backend == "jax":
        assert imports["tensorflow_imported"] is False
