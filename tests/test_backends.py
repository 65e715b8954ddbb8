"""The trainer on both Keras backends: JAX without TensorFlow, models that move between them."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("jax")

#: Run ``python -m fer_utils`` with every ``tensorflow`` import refused.
WITHOUT_TENSORFLOW = textwrap.dedent("""
    import runpy, sys
    class NoTensorFlow:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "tensorflow":
                raise ImportError(f"tensorflow is blocked in this test ({name})")
    sys.meta_path.insert(0, NoTensorFlow())
    sys.argv[0] = "fer_utils"
    runpy.run_module("fer_utils", run_name="__main__", alter_sys=True)
""")
TINY = ["--model-options", '{"widths": [8, 16], "convs": [1, 1], "block_dropout": 0.1}', "--batch-size", "16",
        "--precision", "float32", "--augmentation", '{"erasing": 0.3}', "--schedule", "plateau",
        "--plateau-patience", "1"]


def train(backend, synthetic_zip, out, *extra):
    command = [sys.executable, "-m", "fer_utils"] if backend == "tensorflow" else [
        sys.executable, "-c", WITHOUT_TENSORFLOW]
    return subprocess.Popen([*command, "train", "--data", str(synthetic_zip), "--out", str(out), *TINY, *extra],
                            env={**os.environ, "KERAS_BACKEND": backend}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def finish(process):
    output = process.communicate(timeout=300)[0]
    assert process.returncode == 0, output
    return output


def probabilities(backend, models, images):
    """Each model's probabilities for ``images``, computed in a fresh process of ``backend``."""
    script = textwrap.dedent(f"""
        import json, sys, numpy as np, keras
        from fer_utils.inference import predict_proba
        images = np.load({str(images)!r})
        print(json.dumps([predict_proba(keras.models.load_model(m), images).tolist() for m in {models!r}]))
    """)
    result = subprocess.run([sys.executable, "-c", script], env={**os.environ, "KERAS_BACKEND": backend},
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return np.array(json.loads(result.stdout.splitlines()[-1]))


def test_jax_trains_without_tensorflow_resumes_exactly_and_models_move_between_backends(synthetic_zip, tmp_path):
    jax_reference = train("jax", synthetic_zip, tmp_path / "jax-reference", "--epochs", "12")
    tf_run = train("tensorflow", synthetic_zip, tmp_path / "tf", "--epochs", "3")
    assert "SYNTHETIC" in finish(jax_reference) and "SYNTHETIC" in finish(tf_run)
    out = tmp_path / "jax"
    killed = train("jax", synthetic_zip, out, "--epochs", "12")
    deadline = time.time() + 300
    while time.time() < deadline and killed.poll() is None and (
            not (out / "history.csv").exists() or len((out / "history.csv").read_text().splitlines()) < 3):
        time.sleep(0.1)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert 2 <= len(pd.read_csv(out / "history.csv")) < 12
    finish(train("jax", synthetic_zip, out, "--resume"))
    expected, history = (pd.read_csv(run / "history.csv") for run in (tmp_path / "jax-reference", out))
    pd.testing.assert_frame_equal(history.drop(columns="seconds"), expected.drop(columns="seconds"),
                                  rtol=1e-4, atol=1e-6)
    images = tmp_path / "images.npy"
    np.save(images, np.random.default_rng(0).integers(0, 256, (16, 48, 48), dtype=np.uint8))
    models = [str(out / "model.keras"), str(tmp_path / "tf" / "model.keras")]
    under_jax, under_tf = probabilities("jax", models, images), probabilities("tensorflow", models, images)
    assert under_jax.shape == (2, 16, 7)
    np.testing.assert_allclose(under_jax, under_tf, atol=1e-4)
