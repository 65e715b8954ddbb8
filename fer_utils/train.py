"""Training: tf.data input pipeline, weighted loss, optimizers and schedules, callbacks,
``mixed_bfloat16``, ``tf.distribute`` strategies and resumable runs."""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import asdict
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from fer_utils import CLASSES
from fer_utils.augment import build_augmentation
from fer_utils.config import TrainConfig
from fer_utils.inference import predict_proba
from fer_utils.models import DEFAULT_CHANNELS, build_model
from fer_utils.prepare import Prepared

BEST_MODEL, HISTORY, CONFIG, BACKUP = "model.keras", "history.csv", "train_config.json", "backup"


def cpu_supports_bf16() -> bool:
    """Whether this CPU has native bfloat16 arithmetic (AVX512-BF16 or AMX-BF16)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str) -> str:
    """The Keras dtype policy for ``precision`` (``auto`` picks bf16 where the CPU has it)."""
    if precision == "auto":
        return "mixed_bfloat16" if tf.config.list_physical_devices("GPU") or cpu_supports_bf16() else "float32"
    return precision


def make_dataset(images, labels, *, batch_size: int, channels: int, weights=None,
                 augmentation=None, shuffle_seed=None) -> tf.data.Dataset:
    """``cache -> shuffle -> batch -> augment -> prefetch`` over in-memory uint8 images.

    Yields ``(x, one_hot)`` or, with per-class ``weights``, ``(x, one_hot, sample_weight)``.
    """
    tensors = [images[..., None], np.eye(len(CLASSES), dtype=np.float32)[labels]]
    if weights is not None:
        tensors.append(np.array([weights[i] for i in range(len(CLASSES))], np.float32)[labels])
    ds = tf.data.Dataset.from_tensor_slices(tuple(tensors)).cache()
    if shuffle_seed is not None:
        ds = ds.shuffle(len(images), seed=shuffle_seed, reshuffle_each_iteration=True)

    def to_input(x, *rest):
        x = tf.cast(x, tf.float32)
        if augmentation is not None:
            x = augmentation(x, training=True)
        if channels > 1:
            x = tf.repeat(x, channels, axis=-1)
        return (x, *rest)

    return ds.batch(batch_size).map(to_input, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def distribution_strategy(name: str) -> tf.distribute.Strategy:
    """``default``, ``mirrored`` (all local GPUs, or CPUs) or ``multiworker`` (``TF_CONFIG``)."""
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus or tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=devices)
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def build_optimizer(config: TrainConfig, steps_per_epoch: int):
    """The optimizer with its learning-rate schedule."""
    lr = config.learning_rate
    if config.schedule == "cosine":
        warmup = config.warmup_epochs * steps_per_epoch
        lr = keras.optimizers.schedules.CosineDecay(
            0.0 if warmup else config.learning_rate, max(1, config.epochs * steps_per_epoch - warmup),
            warmup_target=config.learning_rate if warmup else None, warmup_steps=warmup)
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(lr, momentum=0.9, nesterov=True)
    if config.optimizer == "adamw":
        return keras.optimizers.AdamW(lr, weight_decay=config.weight_decay)
    return keras.optimizers.Adam(lr)


class EpochTimer(keras.callbacks.Callback):
    """Adds cumulative training ``seconds`` to each epoch's logs (continuing over resumes)
    and, with ``budget_s`` > 0, stops before an epoch that would end past the budget
    (predicted from this session's mean epoch time), so training stays within it."""

    def __init__(self, offset_s: float = 0.0, budget_s: float = 0.0):
        super().__init__()
        self.offset_s, self.budget_s = offset_s, budget_s

    def on_train_begin(self, logs=None):
        self.session_start, self.session_epochs = time.perf_counter(), 0

    def on_epoch_end(self, epoch, logs=None):
        session_s = time.perf_counter() - self.session_start
        self.session_epochs += 1
        logs["seconds"] = round(self.offset_s + session_s, 1)
        next_end = self.offset_s + session_s * (self.session_epochs + 1) / self.session_epochs
        if self.budget_s and next_end > self.budget_s:
            self.model.stop_training = True


def _history_value(history_file: Path, column: str, best) -> float | None:
    """``best`` (max, or the last value) of a column of a history CSV, if any."""
    if not history_file.exists() or history_file.stat().st_size == 0:
        return None
    values = pd.read_csv(history_file)[column]
    return float(best(values)) if len(values) else None


def train(prepared: Prepared, config: TrainConfig, out_dir, *, resume: bool = False) -> keras.Model:
    """Train ``config.model`` on ``prepared`` (its ``train`` and ``val`` splits) into ``out_dir``.

    Writes ``train_config.json``, ``history.csv``, the best model (by validation accuracy)
    as ``model.keras`` and ``val_predictions.npz``; returns the best model. A run that was
    killed continues from its last epoch with ``resume=True``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if (out / BACKUP).exists() and not resume:
        raise FileExistsError(f"{out}: holds an interrupted run; pass resume=True (--resume) to continue it")
    (out / CONFIG).write_text(json.dumps(asdict(config), indent=2) + "\n")
    keras.utils.set_random_seed(config.seed)
    previous_policy = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(resolve_precision(config.precision))
    try:
        model = _fit(prepared, config, out)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
    x_val, y_val = prepared.arrays("val")
    np.savez(out / "val_predictions.npz", proba=predict_proba(model, x_val), labels=y_val)
    return model


def _fit(prepared: Prepared, config: TrainConfig, out: Path) -> keras.Model:
    x_train, y_train = prepared.arrays("train")
    x_val, y_val = prepared.arrays("val")
    channels = DEFAULT_CHANNELS[config.model]
    strategy = distribution_strategy(config.strategy)
    train_ds = make_dataset(x_train, y_train, batch_size=config.batch_size, channels=channels,
                            weights=prepared.class_weights if config.class_weighted else None,
                            augmentation=build_augmentation(config.seed, **config.augmentation),
                            shuffle_seed=config.seed)
    val_ds = make_dataset(x_val, y_val, batch_size=256, channels=channels)
    steps = int(np.ceil(len(x_train) / config.batch_size))
    scope = strategy.scope() if config.strategy != "default" else contextlib.nullcontext()
    with scope:
        model = build_model(config.model)
        model.compile(optimizer=build_optimizer(config, steps),
                      loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
                      metrics=["accuracy"])
    callbacks = [
        keras.callbacks.BackupAndRestore(str(out / BACKUP)),
        keras.callbacks.ModelCheckpoint(str(out / BEST_MODEL), monitor="val_accuracy", mode="max",
                                        save_best_only=True,
                                        initial_value_threshold=_history_value(out / HISTORY, "val_accuracy", max)),
        EpochTimer(_history_value(out / HISTORY, "seconds", lambda v: v.iloc[-1]) or 0.0, config.time_budget * 60),
        keras.callbacks.CSVLogger(str(out / HISTORY), append=True),
    ]
    if config.schedule == "plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau(factor=0.5, patience=3, min_lr=1e-6))
    if config.early_stopping:
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max",
                                                       patience=config.early_stopping))
    model.fit(train_ds, validation_data=val_ds, epochs=config.epochs, callbacks=callbacks, shuffle=False,
              verbose=config.verbose)
    return keras.models.load_model(out / BEST_MODEL)


def load_history(out_dir) -> pd.DataFrame:
    """The per-epoch history a training run wrote (epoch, loss, accuracy, val_*...)."""
    return pd.read_csv(Path(out_dir) / HISTORY)
