import json
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest

from fer_utils.data import load_dataset
from fer_utils.prepare import prepare
from fer_utils.train import EpochTimer, TrainConfig, make_dataset, resolve_precision, train

NO_AUGMENTATION = dict(rotation=0, shift=0, shear=0, zoom=0, flip=False)


@pytest.fixture(scope="module")
def prepared(synthetic_zip):
    return prepare(load_dataset(synthetic_zip))


def test_input_pipeline_shapes_weights_and_channels():
    images = np.arange(10 * 48 * 48, dtype=np.uint32).reshape(10, 48, 48).astype(np.uint8)
    labels = np.array([0, 1, 2, 3, 4, 5, 6, 0, 1, 2])
    weights = {k: float(k + 1) for k in range(7)}
    x, y, w = next(iter(make_dataset(images, labels, batch_size=4, channels=3, weights=weights)))
    assert x.shape == (4, 48, 48, 3) and x.dtype == "float32"
    np.testing.assert_array_equal(x[..., 0], x[..., 2])
    np.testing.assert_array_equal(np.argmax(y, axis=1), labels[:4])
    np.testing.assert_array_equal(w, [1.0, 2.0, 3.0, 4.0])
    x, y = next(iter(make_dataset(images, labels, batch_size=16, channels=1)))
    assert x.shape == (10, 48, 48, 1) and float(x[0, 0, 1, 0]) == 1.0


def test_config_rejects_unknown_choices():
    with pytest.raises(ValueError, match="optimizer must be one of adam, adamw, sgd, got 'rmsprop'"):
        TrainConfig(optimizer="rmsprop")


@pytest.mark.parametrize("offset, budget, stops_after", [(0, 0, None), (0, 35, 3), (0, 29, 2), (25, 40, 1)])
def test_time_budget_stops_before_an_epoch_that_would_overrun(monkeypatch, offset, budget, stops_after):
    clock = iter(range(0, 1000, 10))  # every epoch takes 10 s
    monkeypatch.setattr(time, "perf_counter", lambda: next(clock))
    timer = EpochTimer(offset_s=offset, budget_s=budget)
    timer.set_model(type("FakeModel", (), {"stop_training": False})())
    timer.on_train_begin()
    seconds = []
    for epoch in range(5):
        logs = {}
        timer.on_epoch_end(epoch, logs)
        seconds.append(logs["seconds"])
        if timer.model.stop_training:
            break
    assert seconds == [offset + 10 * (i + 1) for i in range(len(seconds))]
    assert len(seconds) == (stops_after or 5)


def test_precision_resolution():
    assert resolve_precision("float32") == "float32"
    assert resolve_precision("auto") in ("mixed_bfloat16", "float32")


def test_training_writes_model_history_config_and_predictions(prepared, tmp_path):
    config = TrainConfig(model="vgg_gap", epochs=2, batch_size=32, verbose=0, augmentation=NO_AUGMENTATION)
    model = train(prepared, config, tmp_path)
    history = pd.read_csv(tmp_path / "history.csv")
    assert list(history["epoch"]) == [0, 1] and np.isfinite(history["loss"]).all()
    assert {"accuracy", "val_accuracy", "seconds"} <= set(history.columns)
    assert json.loads((tmp_path / "train_config.json").read_text())["epochs"] == 2
    saved = np.load(tmp_path / "val_predictions.npz")
    assert saved["proba"].shape == (28, 7) and len(saved["labels"]) == 28
    assert model.output_shape == (None, 7) and not (tmp_path / "backup").exists()


def run_cli(*args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "fer_utils", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kwargs)


def test_killed_run_resumes_from_its_checkpoint_and_ends_at_the_same_epoch(synthetic_zip, tmp_path):
    out = tmp_path / "run"
    args = ["train", "--data", str(synthetic_zip), "--model", "vgg_gap", "--epochs", "5",
            "--batch-size", "32", "--out", str(out)]
    process = run_cli(*args)
    history = out / "history.csv"
    deadline = time.time() + 300
    while time.time() < deadline and (not history.exists() or len(history.read_text().splitlines()) < 3):
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_before = len(pd.read_csv(history))
    assert 2 <= done_before < 5 and (out / "backup").exists()
    again = run_cli(*args)
    assert again.wait(timeout=300) == 2 and "--resume to continue it" in again.stdout.read()
    resumed = run_cli(*args, "--resume")
    output = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, output
    epochs = pd.read_csv(history)["epoch"].tolist()
    assert epochs[-1] == 4 and sorted(set(epochs)) == [0, 1, 2, 3, 4]
    assert f"Epoch {done_before + 1}/5" in output and "Epoch 1/5" not in output
    assert not (out / "backup").exists() and (out / "model.keras").exists()
    assert (out / "figures" / "learning_curves.png").stat().st_size > 10_000


def test_mirrored_strategy_on_two_logical_cpus(synthetic_zip, tmp_path):
    script = textwrap.dedent(f"""
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from fer_utils.data import load_dataset
        from fer_utils.prepare import prepare
        from fer_utils.train import TrainConfig, train
        config = TrainConfig(model="vgg_gap", epochs=4, batch_size=32, strategy="mirrored", verbose=0,
                             schedule="constant", learning_rate=1e-3, augmentation={NO_AUGMENTATION!r})
        train(prepare(load_dataset({str(synthetic_zip)!r})), config, {str(tmp_path)!r})
        print("replicas", tf.distribute.MirroredStrategy(
            devices=[d.name for d in tf.config.list_logical_devices("CPU")]).num_replicas_in_sync)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "replicas 2" in result.stdout
    loss = pd.read_csv(tmp_path / "history.csv")["loss"]
    assert np.isfinite(loss).all() and loss.iloc[-1] < loss.iloc[0]
