import dataclasses
import hashlib
import json
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from fer_utils import DataError, OptionError
from fer_utils import train as ftrain
from fer_utils.augment import build_augmentation
from fer_utils.data import load_dataset
from fer_utils.models import build_model
from fer_utils.prepare import prepare
from fer_utils.runs import lock_holder, model_dir, read_history
from fer_utils.train import (
    Batches,
    BestModel,
    EpochTimer,
    TrainConfig,
    build_optimizer,
    config_table,
    consistent_views,
    distribution_strategy,
    epoch_orders,
    resolve_precision,
    saved_options,
    soft_targets,
    summarize_history,
    summarize_runs,
    train,
    train_run,
    training_model,
)

NO_AUGMENTATION = dict(rotation=0, shift=0, shear=0, zoom=0, flip=False)


@pytest.fixture(scope="module")
def prepared(synthetic_zip):
    return prepare(load_dataset(synthetic_zip))


def test_batches_shapes_weights_and_epoch_order():
    images = np.arange(10 * 48 * 48, dtype=np.uint32).reshape(10, 48, 48).astype(np.uint8)
    labels = np.array([0, 1, 2, 3, 4, 5, 6, 0, 1, 2])
    weights = {k: float(k + 1) for k in range(7)}
    ordered = Batches(images, labels, batch_size=4, weights=weights)
    x, y, w = ordered[0]
    assert ordered.num_batches == 3 and x.shape == (4, 48, 48, 1) and x.dtype == "float32" and x[0, 0, 1, 0] == 1.0
    np.testing.assert_array_equal(np.argmax(y, axis=1), labels[:4])
    np.testing.assert_array_equal(w, [1.0, 2.0, 3.0, 4.0])
    assert len(ordered[2][0]) == 2
    stream = Batches(images, labels, batch_size=4, seed=0, first_epoch=5)  # endless: epoch 5, then 6
    assert stream.num_batches is None and stream.steps == 3
    seen = [np.argmax(stream[i][1], axis=1) for i in range(6)]
    assert [len(b) for b in seen] == [4, 4, 2, 4, 4, 2]  # no batch mixes two epochs
    np.testing.assert_array_equal(np.concatenate(seen), labels[epoch_orders(10, 0, 5, 7).ravel()])
    np.testing.assert_array_equal(stream[4][1], Batches(images, labels, batch_size=4, seed=0, first_epoch=6)[1][1])


def test_epoch_order_depends_on_seed_and_epoch_only():
    both = epoch_orders(50, seed=1, first=0, last=3)
    np.testing.assert_array_equal(both[2], epoch_orders(50, seed=1, first=2, last=3)[0])
    assert sorted(both[0]) == list(range(50)) and not np.array_equal(both[0], both[1])
    assert not np.array_equal(both[0], epoch_orders(50, seed=2, first=0, last=1)[0])


def test_training_model_augments_only_when_training_and_repeats_channels():
    model = build_model("seed_cnn")
    wrapper = training_model(model, build_augmentation(0, rotation=30), channels=3)
    images = np.random.default_rng(0).uniform(0, 255, (4, 48, 48, 1)).astype("float32")
    np.testing.assert_allclose(wrapper(images, training=False), model(np.repeat(images, 3, -1), training=False),
                               atol=1e-6)
    assert wrapper.input_shape == (None, 48, 48, 1) and wrapper.output_shape == (None, 7)
    dense = keras.Sequential([keras.Input((48, 48, 1)), keras.layers.Flatten(), keras.layers.Dense(7)])
    wrapper = training_model(dense, build_augmentation(0, rotation=30), channels=1)  # no dropout, no batch norm
    np.testing.assert_allclose(wrapper(images, training=False), dense(images), atol=1e-5)
    assert np.abs(np.asarray(wrapper(images, training=True)) - np.asarray(dense(images))).max() > 1e-2


@pytest.mark.parametrize(("options", "kind", "decay"), [
    ({"optimizer": "adamw"}, keras.optimizers.AdamW, 1e-4), ({"optimizer": "adam"}, keras.optimizers.Adam, None),
    ({"optimizer": "adam", "weight_decay": 5e-4}, keras.optimizers.Adam, 5e-4),
    ({"optimizer": "sgd", "weight_decay": 5e-4, "nesterov": False, "momentum": 0.8}, keras.optimizers.SGD, 5e-4)])
def test_build_optimizer_decay_and_sgd_options(options, kind, decay):
    optimizer = build_optimizer(TrainConfig(schedule="constant", learning_rate=0.01, **options), 10)
    assert type(optimizer) is kind and optimizer.weight_decay == (pytest.approx(decay) if decay else None)
    assert float(optimizer.learning_rate) == pytest.approx(0.01)
    if kind is keras.optimizers.SGD:
        assert (optimizer.nesterov, optimizer.momentum) == (False, 0.8)


def test_the_cosine_schedule_warms_up_then_decays_to_zero():
    optimizer = build_optimizer(TrainConfig(optimizer="sgd", learning_rate=0.1, epochs=5, warmup_epochs=1), 10)
    rate = []
    for step in (0, 5, 10, 30, 50):
        optimizer.iterations.assign(step)
        rate.append(float(optimizer.learning_rate))
    assert rate[0] == 0 and rate[1] == pytest.approx(0.05) and rate[2] == pytest.approx(0.1)
    assert rate[3] == pytest.approx(0.05) and rate[4] == pytest.approx(0, abs=1e-9)


def test_best_model_saves_on_each_new_best_validation_accuracy_or_every_epoch_without_one(tmp_path):
    saved = []

    class Bare:
        def save(self, path):
            Path(path).write_text(str(len(saved)))
            saved.append(epoch)

    callback = BestModel(Bare(), tmp_path / "model.keras")
    for epoch, accuracy in enumerate([0.3, 0.5, 0.4, 0.5, 0.6]):
        callback.on_epoch_end(epoch, {"val_accuracy": accuracy, "loss": 1.0})
    assert saved == [0, 1, 4] and callback.best == 0.6 and not list(tmp_path.glob(".tmp-*"))
    saved.clear()
    for epoch in range(2):
        BestModel(Bare(), tmp_path / "last.keras").on_epoch_end(epoch, {"loss": 1.0})
    assert saved == [0, 1]


def test_a_tf_distribute_strategy_is_refused_on_another_backend(monkeypatch):
    assert distribution_strategy("default") is None
    monkeypatch.setattr(keras.config, "backend", lambda: "jax")
    with pytest.raises(OptionError, match="strategy 'mirrored' needs the TensorFlow backend .KERAS_BACKEND is 'jax'"):
        distribution_strategy("mirrored")


def test_config_takes_values_of_each_option_s_kind_only():
    config = TrainConfig(learning_rate="1e-3", weight_decay=0, epochs=np.int64(3), nesterov=np.bool_(False),
                         teachers=("t.keras",), distill=np.float32(0.5))  # YAML's text 1e-3; NumPy values
    assert config.learning_rate == 0.001 and isinstance(config.weight_decay, float) and config.teachers == ["t.keras"]
    assert type(config.epochs) is int and config.nesterov is False and json.dumps(dataclasses.asdict(config))
    for options, message in [({"learning_rate": "fast"}, "learning_rate must be a finite number, got 'fast'"),
                             ({"weight_decay": float("nan")}, "weight_decay must be a finite number, got nan"),
                             ({"epochs": 2.5}, "epochs must be a whole number, got 2.5"),
                             ({"epochs": True}, "epochs must be a whole number, got True"),
                             ({"nesterov": "yes"}, "nesterov must be true or false, got 'yes'"),
                             ({"init_from": None}, "init_from must be text, got None"),
                             ({"teachers": "a.keras", "distill": 0.5},
                              "teachers must be a list of texts, got 'a.keras'"),
                             ({"augmentation": ["flip"]}, r"augmentation must be a mapping, got \['flip'\]"),
                             ({"distill_views": -1}, "distill_views must be 0 or more, got -1")]:
        with pytest.raises(ValueError, match=message):
            TrainConfig(**options)


def test_config_rejects_unknown_choices():
    with pytest.raises(ValueError, match="optimizer must be one of adam, adamw, sgd, got 'rmsprop'"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(ValueError, match=r"distill must be in \[0, 1\], got 1.5"):
        TrainConfig(teachers=["t.keras"], distill=1.5)
    with pytest.raises(ValueError, match="distill 0.5 needs teachers"):
        TrainConfig(distill=0.5)
    with pytest.raises(ValueError, match="teachers need a distill weight above 0"):
        TrainConfig(teachers=["t.keras"])


def test_soft_targets_mix_the_labels_with_the_teachers_mean():
    labels = np.array([0, 2])
    teachers = [np.array([[0.5, 0.5, 0, 0, 0, 0, 0], [0, 0, 1.0, 0, 0, 0, 0]]),
                np.array([[0.1, 0.9, 0, 0, 0, 0, 0], [0, 0.5, 0.5, 0, 0, 0, 0]])]
    targets = soft_targets(labels, teachers, distill=0.5)
    np.testing.assert_allclose(targets[0, :2], [0.65, 0.35])
    np.testing.assert_allclose(targets[1, 1:3], [0.125, 0.875])
    assert targets.dtype == np.float32 and np.allclose(targets.sum(axis=1), 1)
    images = np.zeros((2, 48, 48), np.uint8)
    np.testing.assert_array_equal(Batches(images, labels, batch_size=2, targets=targets)[0][1], targets)


@pytest.mark.parametrize("offset, budget, stops_after", [(0, 0, None), (0, 35, 3), (0, 29, 2), (25, 40, 1)])
def test_time_budget_stops_before_an_epoch_that_would_overrun(monkeypatch, offset, budget, stops_after):
    clock = iter(range(0, 1000, 10))  # every epoch takes 10 s
    monkeypatch.setattr(time, "perf_counter", lambda: next(clock))
    timer = EpochTimer(offset_s=offset, budget_s=budget)
    optimizer = type("FakeOptimizer", (), {"learning_rate": 0.5})()
    timer.set_model(type("FakeModel", (), {"stop_training": False, "optimizer": optimizer})())
    timer.on_train_begin()
    seconds = []
    for epoch in range(5):
        logs = {}
        timer.on_epoch_end(epoch, logs)
        seconds.append(logs["seconds"])
        assert logs["learning_rate"] == 0.5
        if timer.model.stop_training:
            break
    assert seconds == [offset + 10 * (i + 1) for i in range(len(seconds))]
    assert len(seconds) == (stops_after or 5)


def test_precision_resolution(monkeypatch):
    from fer_utils import train as train_module

    assert resolve_precision("float32") == "float32" and resolve_precision("mixed_bfloat16") == "mixed_bfloat16"
    monkeypatch.setattr(train_module, "accelerator_present", lambda: False)
    for bf16_cpu, policy in ((True, "mixed_bfloat16"), (False, "float32")):
        monkeypatch.setattr(train_module, "cpu_supports_bf16", lambda bf16_cpu=bf16_cpu: bf16_cpu)
        assert resolve_precision("auto") == policy
    monkeypatch.setattr(train_module, "accelerator_present", lambda: True)
    assert resolve_precision("auto") == "mixed_bfloat16"


def test_training_writes_model_history_config_and_predictions(prepared, tmp_path):
    config = TrainConfig(model="vgg_gap", epochs=2, batch_size=32, verbose=0, augmentation=NO_AUGMENTATION)
    model = train(prepared, config, tmp_path)
    history = pd.read_csv(tmp_path / "history.csv")
    assert list(history["epoch"]) == [0, 1] and np.isfinite(history["loss"]).all()
    assert {"accuracy", "val_accuracy", "seconds"} <= set(history.columns)
    assert json.loads((tmp_path / "train_config.json").read_text())["epochs"] == 2
    assert model.output_shape == (None, 7) and not (tmp_path / "backup").exists()


def run_cli(*args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "fer_utils", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kwargs)


def wait_for_epochs(history, count, process, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None and (
            not history.exists() or len(history.read_text().splitlines()) < count + 1):
        time.sleep(0.1)


def checksums(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def comparable(history):
    return history.drop(columns=["seconds"]).to_numpy()


def test_killed_run_resumes_as_if_never_killed(synthetic_zip, tmp_path):
    """Killed mid-run (and caught between the two renames of a backup swap), refused
    contradicting options, then resumed with its saved options: it ends at the same
    epoch, with the same history, as the same run uninterrupted; a finished run is left alone."""
    args = ["train", "--data", str(synthetic_zip), "--epochs", "8", "--batch-size", "16", "--precision", "float32",
            "--schedule", "plateau", "--plateau-patience", "1", "--early-stopping", "3"]
    reference = run_cli(*args, "--out", str(tmp_path / "reference"))
    assert reference.wait(timeout=300) == 0, reference.stdout.read()
    out = tmp_path / "run"
    process = run_cli(*args, "--out", str(out))
    wait_for_epochs(out / "history.csv", 2, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_before = len(pd.read_csv(out / "history.csv"))
    assert done_before >= 2 and json.loads((out / "train_state.json").read_text())["state"] == "running"
    if (out / "backup").exists():  # as if killed between the renames of a backup swap:
        (out / "backup").rename(out / "backup.old")  # the old backup moved aside, the new one torn
    (out / "backup.new").mkdir(exist_ok=True)
    (out / "backup.new" / "variables.npz").write_bytes(b"torn")
    again = run_cli(*args, "--out", str(out))
    assert again.wait(timeout=120) == 2 and "--resume to continue it" in again.stdout.read()
    for option, message in ((["--model", "seed_cnn"], "model 'seed_cnn' != saved 'vgg_gap'"),
                            (["--val-fraction", "0.3"], "val_fraction 0.3 != saved 0.2")):
        refused = run_cli("train", "--data", str(synthetic_zip), "--out", str(out), "--resume", *option)
        assert refused.wait(timeout=120) == 2 and message in refused.stdout.read()
    resumed = run_cli("train", "--data", str(synthetic_zip), "--out", str(out), "--resume")
    output = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, output
    assert f"Epoch {done_before + 1}/8" in output and "Epoch 1/8" not in output
    expected, history = pd.read_csv(tmp_path / "reference" / "history.csv"), pd.read_csv(out / "history.csv")
    assert list(history["epoch"]) == list(expected["epoch"])
    np.testing.assert_allclose(comparable(history), comparable(expected), rtol=1e-4, atol=1e-6)
    state = json.loads((out / "train_state.json").read_text())
    assert state["state"] == json.loads((tmp_path / "reference" / "train_state.json").read_text())["state"]
    assert not any((out / name).exists() for name in ("backup", "backup.old", "backup.new"))
    assert lock_holder(out) is None
    assert (out / "figures" / "learning_curves.png").stat().st_size > 10_000
    before = checksums(out)
    finished = run_cli(*args, "--out", str(out), "--resume", "--epochs", "20")
    assert finished.wait(timeout=120) == 0 and "nothing to resume" in finished.stdout.read()
    assert checksums(out) == before


def test_a_second_writer_is_refused_while_the_first_runs(synthetic_zip, tmp_path):
    out = tmp_path / "run"
    args = ["train", "--data", str(synthetic_zip), "--epochs", "500", "--precision", "float32", "--out", str(out)]
    first = run_cli(*args)
    try:
        wait_for_epochs(out / "history.csv", 1, first)
        for extra in (["--force"], ["--resume"]):
            second = run_cli(*args, *extra)
            assert second.wait(timeout=120) == 2 and f"in use by process {first.pid}" in second.stdout.read()
        assert first.poll() is None
    finally:
        first.kill()
        first.wait()


def test_resume_refuses_data_that_gives_another_split(prepared, synthetic_zip, tmp_path):
    config = TrainConfig(epochs=3, batch_size=32, verbose=0, precision="float32", augmentation=NO_AUGMENTATION,
                         model_options={"widths": [8], "convs": [1]}, time_budget=1e-6)
    train(prepared, config, tmp_path)
    assert json.loads((tmp_path / "train_state.json").read_text())["state"] == "time_budget"
    other = prepare(load_dataset(synthetic_zip), seed=1)
    with pytest.raises(DataError, match="split.npz: this data gives another train/validation split"):
        train(other, config, tmp_path, resume=True)


TINY = dict(batch_size=32, verbose=0, precision="float32", augmentation=NO_AUGMENTATION,
            model_options={"widths": [8], "convs": [1]})


def trainable(model):
    return [np.asarray(w) for w in model.trainable_weights]


def test_training_starts_from_a_saved_model_of_the_same_split(prepared, synthetic_zip, tmp_path, monkeypatch):
    first = train(prepared, TrainConfig(epochs=1, **TINY), tmp_path / "first")
    start = tmp_path / "first" / "model.keras"
    still = TrainConfig(epochs=1, optimizer="sgd", learning_rate=0.0, schedule="constant", init_from=str(start), **TINY)
    monkeypatch.setattr("fer_utils.train.cpu_supports_bf16", lambda: False)  # "auto" resolves to float32 here
    train_run(synthetic_zip, tmp_path / "kept", replace(still, precision="auto"))
    kept = keras.models.load_model(tmp_path / "kept" / "model.keras")
    assert all(np.array_equal(a, b) for a, b in zip(trainable(first), trainable(kept)))
    fresh = train(prepared, replace(still, init_from=""), tmp_path / "fresh")
    assert not all(np.array_equal(a, b) for a, b in zip(trainable(first), trainable(fresh)))
    manifest = json.loads((tmp_path / "kept" / "manifest.json").read_text())
    assert manifest["parameters"]["init_from"] == str(start)
    assert manifest["init_from_sha256"] == hashlib.sha256(start.read_bytes()).hexdigest()
    assert (manifest["parameters"]["precision"], manifest["dtype_policy"]) == ("auto", "float32")  # as it trained


def test_a_resume_under_other_arithmetic_records_the_policy_of_each_part(tmp_path, monkeypatch):
    (tmp_path / "backup").mkdir()
    (tmp_path / "backup" / "state.json").write_text(json.dumps({"epoch": 3}))
    (tmp_path / "manifest.json").write_text(json.dumps({"dtype_policy": "mixed_bfloat16"}))  # started on AMX
    monkeypatch.setattr(ftrain, "cpu_supports_bf16", lambda: False)
    monkeypatch.setattr(ftrain, "accelerator_present", lambda: False)
    said = []
    policies = ftrain._dtype_policies(TrainConfig(precision="auto"), tmp_path, True, said.append)
    assert policies == {"dtype_policy": "float32", "dtype_policies": [{"from_epoch": 0, "policy": "mixed_bfloat16"},
                                                                      {"from_epoch": 3, "policy": "float32"}]}
    assert said == [f"{tmp_path}: resumes under float32 from epoch 3; it trained under mixed_bfloat16 until then "
                    f"(precision auto: this machine's arithmetic)"]
    (tmp_path / "manifest.json").write_text(json.dumps(policies))
    assert ftrain._dtype_policies(TrainConfig(precision="auto"), tmp_path, True, said.append) == policies
    assert ftrain._dtype_policies(TrainConfig(precision="float32"), tmp_path, False, said.append) == {
        "dtype_policy": "float32"} and len(said) == 1


def test_a_start_model_of_another_split_data_or_shape_is_refused_by_name(prepared, synthetic_zip, tmp_path):
    train(prepared, TrainConfig(epochs=1, **TINY), tmp_path / "first")
    start = tmp_path / "first" / "model.keras"
    other = prepare(load_dataset(synthetic_zip), seed=1)
    with pytest.raises(DataError, match=r"first/model.keras: trained on another train/validation split: \d+ of"):
        train(other, TrainConfig(epochs=1, init_from=str(start), seed=1, **TINY), tmp_path / "leak")
    assert not (tmp_path / "leak").exists()  # refused before anything is written
    everything = prepare(load_dataset(synthetic_zip), val_fraction=0.0)
    train(everything, TrainConfig(epochs=1, init_from=str(start), **TINY), tmp_path / "all")
    one_less = np.arange(len(prepared.split)) == np.flatnonzero(prepared.split == "train")[0]
    fewer = replace(prepared, split=np.where(one_less, "test", prepared.split))
    with pytest.raises(DataError, match="first/model.keras: trained on a Training set of [0-9,]+ images, this run's"):
        train(fewer, TrainConfig(epochs=1, init_from=str(start), **TINY), tmp_path / "fewer")
    (tmp_path / "first" / "manifest.json").write_text(json.dumps({"data": {"sha256": "f" * 64}}))
    with pytest.raises(DataError, match=r"first/model.keras: trained on other data \(sha256 ffffffffffff"):
        train_run(synthetic_zip, tmp_path / "other-data", TrainConfig(epochs=1, init_from=str(start), **TINY))
    assert not (tmp_path / "other-data").exists()
    wider = {**TINY, "model_options": {"widths": [16], "convs": [1]}}
    with pytest.raises(DataError, match="first/model.keras: its weights do not fit"):
        train(prepared, TrainConfig(epochs=1, init_from=str(start), **wider), tmp_path / "wider")
    with pytest.raises(FileNotFoundError, match=r"none.keras: no such model \(init_from\)"):
        train(prepared, TrainConfig(epochs=1, init_from=str(tmp_path / "none.keras"), **TINY), tmp_path / "none")


def test_a_resumed_run_keeps_its_start_and_refuses_changed_teachers(prepared, synthetic_zip, tmp_path):
    train(prepared, TrainConfig(epochs=1, **TINY), tmp_path / "first")
    teacher, start = tmp_path / "first" / "model.keras", tmp_path / "start.keras"
    shutil.copy(teacher, start)
    config = TrainConfig(epochs=2, teachers=[str(teacher)], distill=0.5, time_budget=1e-6, **TINY)
    train_run(synthetic_zip, tmp_path / "student", config)  # the budget stops it after one epoch; the backup stays
    train(prepared, TrainConfig(epochs=1, seed=3, **TINY), tmp_path / "second")
    shutil.copy(tmp_path / "second" / "model.keras", teacher)
    targets = tmp_path / "student" / "teacher_targets.npy"
    targets.rename(tmp_path / "targets.npy")  # as if stopped while its teachers labelled
    with pytest.raises(DataError, match=r"student: teacher model.s. changed since the run started: .*first/model"):
        train_run(synthetic_zip, tmp_path / "student", replace(config, time_budget=0.0), resume=True)
    (tmp_path / "targets.npy").rename(targets)  # whole: the teachers are not read again (a restored export)
    train_run(synthetic_zip, tmp_path / "student", replace(config, time_budget=0.0), resume=True)
    assert json.loads((tmp_path / "student" / "train_state.json").read_text())["state"] == "completed"
    config = TrainConfig(epochs=2, init_from=str(start), time_budget=1e-6, **TINY)
    train_run(synthetic_zip, tmp_path / "resumed", config)
    started = hashlib.sha256(start.read_bytes()).hexdigest()
    wider = {**TINY, "model_options": {"widths": [16], "convs": [1]}}
    train(prepared, TrainConfig(epochs=1, **wider), tmp_path / "wide")
    shutil.copy(tmp_path / "wide" / "model.keras", start)  # would not fit: the resume must not load it again
    train_run(synthetic_zip, tmp_path / "resumed", replace(config, time_budget=0.0), resume=True)
    manifest = json.loads((tmp_path / "resumed" / "manifest.json").read_text())
    assert len(read_history(tmp_path / "resumed")) == 2 and manifest["init_from_sha256"] == started


def test_a_run_without_validation_keeps_its_last_model_and_refuses_validation_rules(synthetic_zip, tmp_path):
    everything = prepare(load_dataset(synthetic_zip), val_fraction=0.0)
    config = TrainConfig(epochs=2, time_budget=1e-6, **TINY)
    train(everything, config, tmp_path / "all")  # one epoch, then killed between its log row and its backup:
    log = tmp_path / "all" / "history.csv"
    log.write_text(log.read_text() + log.read_text().splitlines()[1] + "\n")
    model = train(everything, replace(config, time_budget=0.0), tmp_path / "all", resume=True)
    raw = pd.read_csv(tmp_path / "all" / "history.csv")
    assert list(raw["epoch"]) == [0, 1] and raw["val_accuracy"].isna().all()  # Keras logs empty val_ columns
    assert not any(c.startswith("val_") for c in read_history(tmp_path / "all").columns)
    assert model.output_shape == (None, 7)
    state = json.loads((tmp_path / "all" / "train_state.json").read_text())
    assert state["state"] == "completed" and "no validation split" in state["model"]
    for rule in ({"schedule": "plateau"}, {"early_stopping": 2}):
        with pytest.raises(OptionError, match="monitor val_.*no validation split .--val-fraction 0."):
            train_run(synthetic_zip, tmp_path / "rule", TrainConfig(epochs=2, **TINY, **rule), val_fraction=0.0)
        assert not (tmp_path / "rule").exists()


def test_a_student_learns_from_its_teachers_probabilities(prepared, synthetic_zip, tmp_path):
    train(prepared, TrainConfig(epochs=1, **TINY), tmp_path / "teacher")
    teacher = tmp_path / "teacher" / "model.keras"
    train(prepared, TrainConfig(epochs=1, **TINY), tmp_path / "alone")
    train_run(synthetic_zip, tmp_path / "student", TrainConfig(epochs=1, teachers=[str(teacher)], distill=1.0, **TINY))
    alone, student = (read_history(tmp_path / name)["loss"][0] for name in ("alone", "student"))
    assert alone != pytest.approx(student, rel=1e-3)  # the same run but for its targets
    manifest = json.loads((tmp_path / "student" / "manifest.json").read_text())
    assert manifest["teachers_sha256"] == [hashlib.sha256(teacher.read_bytes()).hexdigest()]
    other = prepare(load_dataset(synthetic_zip), seed=1)
    with pytest.raises(DataError, match="teacher/model.keras: trained on another train/validation split"):
        train(other, TrainConfig(epochs=1, teachers=[str(teacher)], distill=0.5, seed=1, **TINY), tmp_path / "leak")


def test_consistent_views_are_stored_augmented_copies_the_same_on_every_call():
    images = np.random.default_rng(0).integers(0, 256, (6, 48, 48)).astype(np.uint8)
    config = TrainConfig(teachers=["t.keras"], distill=0.5, distill_views=3, augmentation={"flip": True, "shift": 0.1})
    views = consistent_views(images, config)
    assert views.shape == (3, 6, 48, 48) and views.dtype == np.uint8
    np.testing.assert_array_equal(views, consistent_views(images, config))  # seeded: a resume sees the same
    assert not np.array_equal(views[0], views[1]) and not np.array_equal(views[0], images)
    plain = replace(config, augmentation={**NO_AUGMENTATION, "erasing": 0.0})
    np.testing.assert_array_equal(consistent_views(images, plain), np.stack([images] * 3))
    with pytest.raises(ValueError, match="distill_views 3 needs teachers"):
        TrainConfig(distill_views=3)
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy("mixed_bfloat16")  # as training sets it: the views stay the same
    try:
        np.testing.assert_array_equal(consistent_views(images, config), views)
    finally:
        keras.mixed_precision.set_global_policy(previous)


def test_batches_of_stored_views_give_each_image_one_view_per_epoch_with_its_targets():
    views = np.arange(2 * 20, dtype=np.uint8)[:, None, None].repeat(48 * 48, 1).reshape(2, 20, 48, 48)
    targets = np.zeros((2, 20, 7), np.float32)
    targets[..., 0] = np.arange(2 * 20).reshape(2, 20)  # view k of image i: pixels and target 20 k + i
    labels = np.arange(20) % 7
    batches = Batches(views, labels, batch_size=8, seed=0, targets=targets, weights={k: k + 1.0 for k in range(7)})
    assert batches.steps == 3
    for epoch in range(2):
        drawn = []
        for step in range(3):
            x, y, weight = batches[3 * epoch + step]
            assert x.shape[1:] == (48, 48, 1) and np.array_equal(x[:, 0, 0, 0], y[:, 0])  # the view's own target
            image = (y[:, 0] % 20).astype(int)
            assert np.array_equal(weight, labels[image] + 1.0)  # the image's class weight, whatever its view
            drawn += list(y[:, 0] // 20)
        assert sorted(set(drawn)) == [0, 1] and len(drawn) == 20  # each image once, both views within the epoch
    np.testing.assert_array_equal(Batches(views, labels, batch_size=8, seed=0, targets=targets)[4][1], batches[4][1])


def test_a_consistent_student_stores_its_teachers_targets_once(prepared, synthetic_zip, tmp_path, monkeypatch):
    train(prepared, TrainConfig(epochs=1, **TINY), tmp_path / "teacher")
    options = {**TINY, "augmentation": {**NO_AUGMENTATION, "flip": True}}
    config = TrainConfig(epochs=2, teachers=[str(tmp_path / "teacher" / "model.keras")], distill=0.5,
                         distill_views=2, time_budget=1e-6, **options)
    train_run(synthetic_zip, tmp_path / "student", config)  # stopped by its budget after one epoch
    stored = np.load(tmp_path / "student" / "teacher_targets.npy")
    assert stored.shape == (2, int((prepared.split == "train").sum()), 7)
    np.testing.assert_allclose(stored.sum(axis=2), 1.0, rtol=1e-5)
    views = consistent_views(prepared.arrays("train")[0], config)
    on_views = ftrain.soft_targets(prepared.arrays("train")[1],
                                   ftrain.teacher_probabilities(config.teachers, views), 0.5)
    np.testing.assert_allclose(stored, on_views, atol=1e-5)  # the teachers labelled the views, not clean images
    monkeypatch.setattr(ftrain, "teacher_probabilities", lambda *args: 1 / 0)  # a resume reads them back
    train_run(synthetic_zip, tmp_path / "student", replace(config, time_budget=0.0), resume=True)
    assert len(read_history(tmp_path / "student")) == 2
    np.save(tmp_path / "student" / "teacher_targets.npy", stored[:, :5])
    with pytest.raises(DataError, match=r"teacher_targets\.npy: targets of shape \(2, 5, 7\) do not fit"):
        ftrain.distillation_targets(views, None, config, tmp_path / "student")


def test_teacher_targets_interrupted_keep_the_teachers_already_done(tmp_path, monkeypatch):
    images, labels = np.zeros((3, 4, 48, 48), np.uint8), np.array([0, 1, 2, 3])
    config = TrainConfig(teachers=["a.keras", "b.keras"], distill=0.5, distill_views=3)
    labelled = []

    def probabilities(paths, views):
        labelled.extend(paths)
        if paths == ["b.keras"] and labelled.count("b.keras") == 1:
            raise KeyboardInterrupt  # the run is killed while teacher b labels
        return [np.full((3, 4, 7), 1 / 7 if paths == ["a.keras"] else 0.0, np.float32)]

    monkeypatch.setattr(ftrain, "teacher_probabilities", probabilities)
    with pytest.raises(KeyboardInterrupt):
        ftrain.distillation_targets(images, labels, config, tmp_path)
    assert sorted(p.name for p in (tmp_path / "teacher_targets.parts").iterdir()) == ["0.npy"]
    targets = ftrain.distillation_targets(images, labels, config, tmp_path)
    assert labelled == ["a.keras", "b.keras", "b.keras"]  # a is not labelled again
    np.testing.assert_allclose(targets[1], 0.5 * np.eye(7)[labels] + 0.5 * 0.5 / 7, rtol=1e-6)  # view 1
    assert not (tmp_path / "teacher_targets.parts").exists()
    np.testing.assert_array_equal(np.load(tmp_path / "teacher_targets.npy"), targets)
    (tmp_path / "teacher_targets.npy").unlink()
    (tmp_path / "teacher_targets.parts").mkdir()
    np.save(tmp_path / "teacher_targets.parts" / "0.npy", np.zeros((3, 2, 7)))
    with pytest.raises(DataError, match=r"parts/0\.npy: targets of shape \(3, 2, 7\) do not fit the run's \(3, 4\)"):
        ftrain.distillation_targets(images, labels, config, tmp_path)


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


def test_resume_survives_every_kill_window_and_respects_the_time_budget(prepared, tmp_path):
    tiny = dict(batch_size=32, verbose=0, precision="float32", augmentation=NO_AUGMENTATION,
                model_options={"widths": [8], "convs": [1]})
    state = lambda: json.loads((tmp_path / "train_state.json").read_text())  # noqa: E731
    config = TrainConfig(epochs=3, time_budget=1e-6, **tiny)
    train(prepared, config, tmp_path)  # the budget stops it after one epoch; the backup stays
    assert state()["state"] == "time_budget" and len(pd.read_csv(tmp_path / "history.csv")) == 1
    with pytest.raises(FileExistsError, match="holds an interrupted run; pass resume=True"):
        train(prepared, config, tmp_path)  # re-running a notebook must not start the run over
    train(prepared, config, tmp_path, resume=True)  # the same budget: already spent, no epoch more
    assert "spent before this session" in state()["stop_reason"] and len(pd.read_csv(tmp_path / "history.csv")) == 1
    shutil.copytree(tmp_path / "backup", tmp_path / "backup.old")  # killed after a swap, before the cleanup
    train(prepared, replace(config, time_budget=0.0), tmp_path, resume=True)
    assert state()["state"] == "completed" and list(pd.read_csv(tmp_path / "history.csv")["epoch"]) == [0, 1, 2]
    assert not (tmp_path / "backup").exists() and not (tmp_path / "backup.old").exists()
    fresh = tmp_path / "killed-before-epoch-1"  # what a kill during the first epoch leaves
    train(prepared, replace(config, time_budget=0.0, epochs=1), fresh)
    (fresh / "history.csv").write_text("")
    (fresh / "train_state.json").write_text(json.dumps({"state": "running"}))
    train(prepared, replace(config, time_budget=0.0, epochs=2), fresh, resume=True)
    assert list(pd.read_csv(fresh / "history.csv")["epoch"]) == [0, 1]


def test_a_backup_that_does_not_fit_the_model_is_a_named_error(prepared, tmp_path):
    config = TrainConfig(epochs=3, time_budget=1e-6, batch_size=32, verbose=0, precision="float32",
                         augmentation=NO_AUGMENTATION, model_options={"widths": [8], "convs": [1]})
    train(prepared, config, tmp_path)
    with np.load(tmp_path / "backup" / "variables.npz") as saved:
        arrays = [saved[f"arr_{i}"] for i in range(len(saved.files))]
    np.savez(tmp_path / "backup" / "variables.npz", *arrays[:-1])
    with pytest.raises(DataError, match=r"backup: the backup does not fit this model and optimizer"):
        train(prepared, replace(config, time_budget=0.0), tmp_path, resume=True)


def test_history_summary_names_the_best_epoch_counting_from_one():
    history = pd.DataFrame({"epoch": [0, 1, 2], "val_accuracy": [0.3, 0.61234, 0.5], "seconds": [60, 125, 190]})
    assert summarize_history(history) == {"best val_accuracy": 0.6123, "best epoch": 2, "epochs": 3, "minutes": 3.2}
    with pytest.raises(DataError, match="no epoch has ended yet"):
        summarize_history(history.iloc[:0])
    unvalidated = history.drop(columns="val_accuracy")
    assert summarize_history(unvalidated) == {"best val_accuracy": None, "best epoch": 3, "epochs": 3, "minutes": 3.2}


def test_summarize_runs_writes_training_json_and_config_table_has_a_column_per_model(tmp_path):
    for name, accuracies in (("a", [0.2, 0.4]), ("b", [0.5, 0.3])):
        folder = model_dir(tmp_path, name)
        folder.mkdir(parents=True)
        pd.DataFrame({"epoch": [0, 1], "val_accuracy": accuracies, "seconds": [60, 120]}).to_csv(
            folder / "history.csv", index=False)
    summary = summarize_runs(tmp_path, ["a", "b"])
    assert summary.loc["b", "best epoch"] == 1 and summary.loc["a", "best val_accuracy"] == 0.4
    assert json.loads((tmp_path / "training.json").read_text())[1] == {
        "model": "b", "best val_accuracy": 0.5, "best epoch": 1, "epochs": 2, "minutes": 2.0}
    for name, config in (("a", TrainConfig(epochs=3, init_from="/x/runs/base/model.keras")),
                         ("b", TrainConfig(model="seed_cnn", teachers=["/x/runs/t1/model.keras", "/y/t2.keras"],
                                           distill=0.5))):
        (model_dir(tmp_path, name) / "train_config.json").write_text(json.dumps(dataclasses.asdict(config)))
    table = config_table(tmp_path, ["a", "b"])
    assert list(table.columns) == ["a", "b"] and table.loc["epochs", "a"] == 3 and "augmentation" not in table.index
    assert table.loc["init_from", "a"] == "base" and table.loc["init_from", "b"] == ""  # runs by name, not path
    assert table.loc["teachers", "b"] == "t1, t2.keras" and table.loc["teachers", "a"] == ""
    assert table.loc["model", "b"] == "seed_cnn" and config_table(tmp_path, []).empty


def test_saved_options_name_what_cannot_be_resumed(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no run to resume \(no manifest\.json\)"):
        saved_options(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(DataError, match=r"unreadable manifest\.json"):
        saved_options(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"kind": "pipeline", "parameters": {}}))
    with pytest.raises(DataError, match="holds a 'pipeline' run, not a train run; nothing to resume"):
        saved_options(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"kind": "train", "parameters": {"epochs": 3}}))
    assert saved_options(tmp_path) == {"epochs": 3}
