"""Training on any Keras backend (TensorFlow, JAX): in-memory batches in a seeded order per
epoch, augmentation inside the training model (so it runs on the training device), weighted
loss, optimizers and schedules, ``mixed_bfloat16``, ``tf.distribute`` strategies on the
TensorFlow backend, and runs that resume exactly where they were killed."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from fer_utils import CLASSES, DataError, OptionError
from fer_utils.augment import build_augmentation
from fer_utils.config import TrainConfig, contradictions, describe_contradictions
from fer_utils.models import DEFAULT_CHANNELS, build_model, check_model_options
from fer_utils.prepare import Prepared
from fer_utils.runs import (
    BACKUP,
    HISTORY,
    MANIFEST,
    MODEL,
    SPLIT,
    TEACHER_PARTS,
    TEACHER_TARGETS,
    TRAIN_CONFIG,
    TRAIN_STATE,
    TRAINING,
    RunFinishedError,
    RunLock,
    claim_run_dir,
    find_backup,
    model_dir,
    model_label,
    model_path,
    read_history,
    read_json,
    read_manifest,
    read_train_config,
    read_train_state,
    save_atomically,
    write_json,
    write_manifest,
)
from fer_utils.tta import augmented_copy, copy_seed

#: Final states (``train_state.json``); ``time_budget`` runs can be resumed, the others are done.
FINISHED = {"completed": "its planned epochs are done", "early_stopped": "early stopping ended it"}


def cpu_supports_bf16() -> bool:
    """Whether this CPU has native bfloat16 arithmetic (AVX512-BF16 or AMX-BF16)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def accelerator_present() -> bool:
    """Whether the Keras backend trains on a GPU (or TPU)."""
    backend = keras.config.backend()
    if backend == "jax":
        import jax  # noqa: PLC0415

        return jax.default_backend() in ("gpu", "tpu")
    if backend == "tensorflow":
        import tensorflow as tf  # noqa: PLC0415

        return bool(tf.config.list_physical_devices("GPU"))
    return False


def resolve_precision(precision: str) -> str:
    """The Keras dtype policy for ``precision`` (``auto`` picks bf16 on an accelerator or
    where the CPU has bf16 arithmetic)."""
    if precision == "auto":
        return "mixed_bfloat16" if accelerator_present() or cpu_supports_bf16() else "float32"
    return precision


def epoch_orders(n: int, seed: int, first: int, last: int) -> np.ndarray:
    """``(last - first, n)`` indices: the seeded permutation of each epoch ``first..last-1``,
    a function of ``(seed, epoch)`` only, so a resumed run sees what an uninterrupted one would."""
    return np.stack([np.random.default_rng([seed, epoch]).permutation(n) for epoch in range(first, last)])


class Batches(keras.utils.PyDataset):
    """Batches ``(x, one_hot)`` or, with per-class ``weights``, ``(x, one_hot, sample_weight)``
    of in-memory uint8 ``images``, for any Keras backend; ``x`` is float32
    ``(batch, 48, 48, 1)``, values 0-255; ``targets`` (``(n, 7)``, e.g. :func:`soft_targets`)
    replace the one-hot labels.

    Without ``seed``: one pass in order (validation). With ``seed``: an endless stream
    (train with ``steps_per_epoch=batches.steps``) in which batch ``i`` belongs to epoch
    ``first_epoch + i // steps`` and comes from that epoch's permutation
    (:func:`epoch_orders`): a pure function of ``i``, so read-ahead cannot mix epochs and
    a resumed run sees what an uninterrupted one would.

    Stored views (:func:`consistent_views`): ``images`` ``(views, n, 48, 48)`` and ``targets``
    ``(views, n, 7)``; each epoch draws one view of each image (seeded by the epoch too).
    """

    def __init__(self, images, labels, *, batch_size: int, weights=None, seed=None, first_epoch: int = 0,
                 targets=None):
        super().__init__()
        self.images, self.batch_size, self.seed, self.first_epoch = images, batch_size, seed, first_epoch
        self.targets = [one_hot(labels) if targets is None else targets]
        if weights is not None:
            self.targets.append(np.array([weights[i] for i in range(len(CLASSES))], np.float32)[labels])
        self.n = len(labels)
        self.steps = -(-self.n // batch_size)
        self._epoch, self._order, self._view = None, np.arange(self.n), np.zeros(self.n, int)

    @property
    def num_batches(self):
        return self.steps if self.seed is None else None

    def __getitem__(self, index):
        epoch, step = divmod(index, self.steps)
        if self.seed is not None and epoch + self.first_epoch != self._epoch:
            self._epoch = epoch + self.first_epoch
            self._order = epoch_orders(self.n, self.seed, self._epoch, self._epoch + 1)[0]
            if self.images.ndim == 4:
                self._view = np.random.default_rng([self.seed, self._epoch, 1]).integers(len(self.images), size=self.n)
        take = self._order[step * self.batch_size:(step + 1) * self.batch_size]
        pick = (self._view[take], take) if self.images.ndim == 4 else take
        # per-view targets (one axis more than labels) follow the view drawn; one-hot labels
        # and class weights are the image's, whatever its view
        return (self.images[pick][..., None].astype(np.float32),
                *(t[pick] if t.ndim == self.images.ndim - 1 else t[take] for t in self.targets))


def one_hot(labels: np.ndarray) -> np.ndarray:
    """``(n, 7)`` float32 one-hot rows of class indices."""
    return np.eye(len(CLASSES), dtype=np.float32)[labels]


def soft_targets(labels: np.ndarray, teacher_probabilities: list, distill: float) -> np.ndarray:
    """Targets for distillation: ``(1 - distill)`` of the one-hot labels plus ``distill`` of the
    teachers' mean class probabilities, float32 of the probabilities' shape (``(n, 7)``, or
    ``(views, n, 7)`` for stored views)."""
    return ((1 - distill) * one_hot(labels) + distill * np.mean(teacher_probabilities, axis=0)).astype(np.float32)


def teacher_probabilities(paths, images: np.ndarray) -> list[np.ndarray]:
    """Each saved teacher model's class probabilities for ``images``: ``(n, 7)`` for
    ``(n, 48, 48)`` images, ``(views, n, 7)`` for stored views ``(views, n, 48, 48)``."""
    from fer_utils.inference import predict_proba  # noqa: PLC0415
    from fer_utils.predict import load_model  # noqa: PLC0415 (named errors for unusable model files)

    views = images if images.ndim == 4 else images[None]
    probabilities = [np.stack([predict_proba(teacher, view) for view in views])
                     for teacher in map(load_model, paths)]
    return probabilities if images.ndim == 4 else [p[0] for p in probabilities]


def consistent_views(images: np.ndarray, config: TrainConfig) -> np.ndarray:
    """``(config.distill_views, n, 48, 48)`` uint8: copies of ``images`` under the run's
    augmentation, copy k seeded by ``(config.seed, k)``, for the teachers to label and the
    student to train on (an approximation of consistent distillation, Beyer et al. 2022, where
    teacher and student see the same view: here a fixed set of views, not a fresh one each step);
    the same on every call (float32 augmentation), so a resumed run trains on the same views."""
    views = np.empty((config.distill_views, *images.shape), np.uint8)
    for k, view in enumerate(views):
        view[:] = np.clip(np.rint(augmented_copy(images, copy_seed(config.seed, k), **config.augmentation)), 0, 255)
    return views


def distillation_targets(images: np.ndarray, labels: np.ndarray, config: TrainConfig, out: Path) -> np.ndarray:
    """:func:`soft_targets` of the teachers for ``images`` (stored views or clean images),
    computed once per run, one teacher at a time, and kept in ``out`` (a resume reads them
    back; its teachers are checked unchanged)."""
    path, parts = out / TEACHER_TARGETS, out / TEACHER_PARTS
    if path.exists():
        targets = _stored_targets(path, images)
        shutil.rmtree(parts, ignore_errors=True)  # left by a run killed just after it saved the targets
        return targets
    parts.mkdir(exist_ok=True)
    probabilities = []
    for k, teacher in enumerate(config.teachers):
        part = parts / f"{k}.npy"
        if part.exists():
            probabilities.append(_stored_targets(part, images))
        else:
            probabilities.append(teacher_probabilities([teacher], images)[0])
            save_atomically(part, lambda tmp, labelled=probabilities[-1]: np.save(tmp, labelled))
    targets = soft_targets(labels, probabilities, config.distill)
    save_atomically(path, lambda tmp: np.save(tmp, targets))
    shutil.rmtree(parts)
    return targets


def _stored_targets(path: Path, images: np.ndarray) -> np.ndarray:
    """Probabilities or targets stored for ``images``, checked to fit them."""
    targets = np.load(path)
    if targets.shape != images.shape[:-2] + (len(CLASSES),):
        raise DataError(f"{path}: targets of shape {targets.shape} do not fit the run's {images.shape[:-2]} "
                        f"training images; delete the file to compute them again")
    return targets


def training_model(model: keras.Model, augmentation=None, channels: int = 1) -> keras.Model:
    """``model`` behind its training-time input steps: ``augmentation`` (active only when
    training) and the repetition of the grey channel to ``channels``."""
    inputs = keras.Input(model.input_shape[1:-1] + (1,))
    x = augmentation(inputs) if augmentation is not None else inputs
    if channels > 1:
        x = keras.layers.Concatenate()([x] * channels)
    return keras.Model(inputs, model(x), name=f"training_{model.name}")


def distribution_strategy(name: str):
    """``default``, ``mirrored`` (all local GPUs, or CPUs) or ``multiworker`` (``TF_CONFIG``):
    ``tf.distribute`` strategies, for the TensorFlow backend only."""
    if name == "default":
        return None
    if keras.config.backend() != "tensorflow":
        raise OptionError(f"strategy {name!r} needs the TensorFlow backend (KERAS_BACKEND is "
                          f"{keras.config.backend()!r})")
    import tensorflow as tf  # noqa: PLC0415

    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus or tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=devices)
    return tf.distribute.MultiWorkerMirroredStrategy()


def build_optimizer(config: TrainConfig, steps_per_epoch: int):
    """The optimizer with its learning-rate schedule and (decoupled) weight decay."""
    lr = config.learning_rate
    if config.schedule == "cosine":
        warmup = config.warmup_epochs * steps_per_epoch
        lr = keras.optimizers.schedules.CosineDecay(
            0.0 if warmup else config.learning_rate, max(1, config.epochs * steps_per_epoch - warmup),
            warmup_target=config.learning_rate if warmup else None, warmup_steps=warmup)
    decay = config.decay or None
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(lr, momentum=config.momentum, nesterov=config.nesterov, weight_decay=decay)
    if config.optimizer == "adamw":
        return keras.optimizers.AdamW(lr, weight_decay=config.decay)
    return keras.optimizers.Adam(lr, weight_decay=decay)


class EpochTimer(keras.callbacks.Callback):
    """Adds cumulative training ``seconds`` and the epoch's ``learning_rate`` to each epoch's
    logs (so the history records both; seconds continue over resumes) and, with ``budget_s``
    > 0, stops before an epoch that would end past the budget (predicted from this session's
    mean epoch time), so training stays within it."""

    def __init__(self, offset_s: float = 0.0, budget_s: float = 0.0):
        super().__init__()
        self.offset_s, self.budget_s, self.seconds = offset_s, budget_s, offset_s

    def on_train_begin(self, logs=None):
        self.session_start, self.session_epochs = time.perf_counter(), 0

    def on_epoch_end(self, epoch, logs=None):
        if not self.session_epochs:  # ``seconds`` may have been restored from a backup since
            self.offset_s = self.seconds
        session_s = time.perf_counter() - self.session_start
        self.session_epochs += 1
        self.seconds = logs["seconds"] = round(self.offset_s + session_s, 1)
        logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        next_end = self.offset_s + session_s * (self.session_epochs + 1) / self.session_epochs
        if self.budget_s and next_end > self.budget_s:
            self.model.stop_training = True


class BestModel(keras.callbacks.Callback):
    """Saves the bare ``model`` (not the training wrapper) whenever ``val_accuracy`` beats
    the best so far (every epoch when there is no validation), atomically."""

    def __init__(self, model: keras.Model, path: Path):
        super().__init__()
        self.bare, self.path, self.best = model, path, -np.inf

    def on_epoch_end(self, epoch, logs=None):
        if "val_accuracy" not in logs:  # no validation: the last epoch's model is kept
            save_atomically(self.path, self.bare.save)
        elif logs["val_accuracy"] > self.best:
            self.best = float(logs["val_accuracy"])
            save_atomically(self.path, self.bare.save)


#: The counters each stateful callback needs back after a resume.
COUNTERS = {"EarlyStopping": ("wait", "best", "best_epoch", "stopped_epoch"),
            "ReduceLROnPlateau": ("wait", "best", "cooldown_counter"),
            "EpochTimer": ("seconds",), "BestModel": ("best",)}


class RunCheckpoint(keras.callbacks.Callback):
    """After each epoch, saves into ``backup/`` every variable of the training model (seed
    generator states included, so dropout and augmentation continue their random streams),
    the optimizer's (learning rate included) and the callbacks' counters.

    The new backup is written beside the old one and swapped in by renames, so a kill at
    any moment leaves one complete backup. Place it last: it saves what the others updated.
    """

    def __init__(self, folder: Path, callbacks: list):
        super().__init__()
        self.folder, self.callbacks, self.restored = folder, callbacks, {}

    def on_train_begin(self, logs=None):
        """Put back the restored counters, after the callbacks' own ``on_train_begin`` reset them."""
        for callback in self.callbacks:
            for key, value in self.restored.get(type(callback).__name__, {}).items():
                setattr(callback, key, value)

    def on_epoch_end(self, epoch, logs=None):
        new, old = self.folder.with_name(BACKUP + ".new"), self.folder.with_name(BACKUP + ".old")
        shutil.rmtree(new, ignore_errors=True)
        new.mkdir()
        variables = self.model.variables + self.model.optimizer.variables
        np.savez(new / "variables.npz", *[keras.ops.convert_to_numpy(v) for v in variables])
        counters = {type(c).__name__: {k: _number(getattr(c, k)) for k in COUNTERS[type(c).__name__]}
                    for c in self.callbacks if type(c).__name__ in COUNTERS}
        (new / "state.json").write_text(json.dumps({"epoch": epoch + 1, "counters": counters}))
        if self.folder.exists():  # complete: an older backup.old (a kill before its removal) can go
            shutil.rmtree(old, ignore_errors=True)
            os.replace(self.folder, old)
        os.replace(new, self.folder)
        shutil.rmtree(old, ignore_errors=True)


def _number(value):
    """A counter as JSON: int, float or None."""
    if value is None:
        return None
    value = float(value)
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


def restore_backup(backup: Path, model: keras.Model, checkpoint: RunCheckpoint) -> int:
    """Load what :class:`RunCheckpoint` saved into ``model`` (built and compiled) and hand
    the counters to ``checkpoint``, which puts them back when training begins; returns the
    number of epochs done."""
    state = json.loads((backup / "state.json").read_text())
    model.optimizer.build(model.trainable_variables)
    variables = model.variables + model.optimizer.variables
    with np.load(backup / "variables.npz") as saved:
        values = [saved[f"arr_{i}"] for i in range(len(saved.files))]
    if len(values) != len(variables) or any(v.shape != tuple(x.shape) for v, x in zip(values, variables)):
        raise DataError(f"{backup}: the backup does not fit this model and optimizer")
    for variable, value in zip(variables, values):
        variable.assign(value)
    checkpoint.restored = state["counters"]
    return state["epoch"]


def _write_state(out: Path, **state) -> None:
    state["updated"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    write_json(out / TRAIN_STATE, state)


def check_resume(out, config: TrainConfig) -> None:
    """Refuse to resume a finished run (:class:`RunFinishedError`) or one whose saved config
    contradicts ``config`` (:func:`fer_utils.config.contradictions`, named)."""
    out = Path(out)
    state = read_json(out / TRAIN_STATE, {}).get("state")
    if state in FINISHED:
        raise RunFinishedError(f"{out}: nothing to resume, {FINISHED[state]}; the run is left as it was")
    found = contradictions(read_json(out / TRAIN_CONFIG, {}), asdict(config))
    if found:
        raise FileExistsError(f"{out}: {describe_contradictions(found)}")


def _check_unvalidated(config: TrainConfig) -> None:
    """Refuse the rules that monitor a validation metric for a run without validation split."""
    rules = {"schedule plateau": (config.schedule == "plateau", config.plateau_monitor),
             "early stopping": (bool(config.early_stopping), config.early_stopping_monitor)}
    for rule, (used, monitor) in rules.items():
        if used:
            raise OptionError(f"{rule} would monitor {monitor}, and this run has no validation split "
                              f"(--val-fraction 0); use a fixed schedule and number of epochs")


def _check_split(out: Path, prepared: Prepared) -> None:
    """Save the train/validation split, or refuse a resume whose data gives another one."""
    split = {s: np.flatnonzero(prepared.split == s) for s in ("train", "val")}
    if not (out / SPLIT).exists():
        save_atomically(out / SPLIT, lambda tmp: np.savez(tmp, **split))
        return
    with np.load(out / SPLIT) as saved:
        if any(not np.array_equal(saved[s], split[s]) for s in split):
            raise DataError(f"{out / SPLIT}: this data gives another train/validation split than the "
                            f"run started with; resume with the same data, --val-fraction and seed")


def existing_model(path, option: str) -> Path:
    """A saved model given as ``option`` (``init_from``, ``teachers``) as a path, or a named
    error when there is no such file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such model ({option})")
    return path


def check_sources(prepared: Prepared, config: TrainConfig, out, data_hash: str | None = None) -> None:
    """Refuse a model this run learns from (``init_from``, ``teachers``) that is missing, or
    whose run folder (``split.npz`` and ``manifest.json`` beside the model) shows it trained
    on images of this run's validation split or on other data; a model without its run
    folder is taken on trust. A resumed run that has a backup no longer needs ``init_from``."""
    ours = np.flatnonzero(prepared.split == "val")
    training = int(np.isin(prepared.split, ("train", "val")).sum())
    for path, option in config.source_models:
        if option == "init_from" and find_backup(Path(out)):
            continue
        model = existing_model(path, option)
        recorded = read_json(model.parent / MANIFEST, {}).get("data", {}).get("sha256")
        if data_hash and recorded and recorded != data_hash:
            raise DataError(f"{model}: trained on other data (sha256 {recorded[:12]}..., this run's "
                            f"{data_hash[:12]}...); learn from a model of the same data")
        if not (model.parent / SPLIT).exists():
            continue
        with np.load(model.parent / SPLIT) as theirs:
            seen, size = np.intersect1d(theirs["train"], ours).size, theirs["train"].size + theirs["val"].size
        if size != training:
            raise DataError(f"{model}: trained on a Training set of {size:,} images, this run's has {training:,}; "
                            f"learn from a model of the same data and filtering")
        if seen:
            raise DataError(f"{model}: trained on another train/validation split: {seen:,} of its training images "
                            f"are in this run's validation split; learn from a run of the same --val-fraction "
                            f"and seed, or train on all of Training (--val-fraction 0)")


def start_from(model: keras.Model, start) -> None:
    """Set the weights of ``model`` to those of the saved model ``start`` (same model and options)."""
    from fer_utils.predict import load_model  # noqa: PLC0415 (named errors for unusable model files)

    weights = load_model(start).get_weights()
    if [w.shape for w in weights] != [tuple(v.shape) for v in model.weights]:
        raise DataError(f"{start}: its weights do not fit model {model.name!r} with these model options")
    model.set_weights(weights)


def train(prepared: Prepared, config: TrainConfig, out_dir, *, resume: bool = False) -> keras.Model:
    """Train ``config.model`` on ``prepared`` (its ``train`` and ``val`` splits) into ``out_dir``.

    Writes ``train_config.json``, ``split.npz``, ``history.csv``, ``train_state.json``
    (state, why the run stopped, which epoch's model it kept), the best model by validation
    accuracy (the last one without validation split) as ``runs.MODEL``; returns it. Training
    starts from the weights of ``config.init_from`` when given (same model and options), and
    learns from the probabilities of ``config.teachers`` (:func:`soft_targets`); both are
    checked by :func:`check_sources`. A run that was killed or stopped by its time budget
    continues from its last epoch with ``resume=True``.
    """
    out = Path(out_dir)
    check_model_options(config.model, config.model_options)
    if not (prepared.split == "val").any():
        _check_unvalidated(config)
    check_sources(prepared, config, out)
    out.mkdir(parents=True, exist_ok=True)
    if find_backup(out) and not resume:
        raise FileExistsError(f"{out}: holds an interrupted run; pass resume=True (--resume) to continue it")
    if resume:
        check_resume(out, config)
    else:  # a finished run replaced in place: its teachers' targets are not this run's
        (out / TEACHER_TARGETS).unlink(missing_ok=True)
        shutil.rmtree(out / TEACHER_PARTS, ignore_errors=True)
    _check_split(out, prepared)
    write_json(out / TRAIN_CONFIG, asdict(config))
    keras.utils.set_random_seed(config.seed)
    augmentation = build_augmentation(config.seed, **config.augmentation)  # float32, whatever the policy
    previous_policy = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(resolve_precision(config.precision))
    try:
        model = _fit(prepared, config, out, augmentation)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
    return model


def _callbacks(config: TrainConfig, out: Path, model: keras.Model) -> list:
    """Timer, best-model saver, CSV log, plateau and early-stopping rules, backup (last)."""
    callbacks = [EpochTimer(budget_s=config.time_budget * 60), BestModel(model, out / MODEL),
                 keras.callbacks.CSVLogger(str(out / HISTORY), append=True)]
    if config.schedule == "plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau(
            monitor=config.plateau_monitor, mode="max" if "accuracy" in config.plateau_monitor else "min",
            factor=config.plateau_factor, patience=config.plateau_patience, min_lr=config.plateau_min_lr))
    if config.early_stopping:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor=config.early_stopping_monitor, patience=config.early_stopping,
            mode="max" if "accuracy" in config.early_stopping_monitor else "min"))
    return [*callbacks, RunCheckpoint(out / BACKUP, callbacks)]


def _fit(prepared: Prepared, config: TrainConfig, out: Path, augmentation) -> keras.Model:
    x_train, y_train = prepared.arrays("train")
    validation = Batches(*prepared.arrays("val"), batch_size=256) if "val" in prepared.splits() else None
    strategy = distribution_strategy(config.strategy)
    steps = -(-len(x_train) // config.batch_size)
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    with scope:
        model = build_model(config.model, **config.model_options)
        trainer = training_model(model, None if config.distill_views else augmentation,  # views: augmented
                                 DEFAULT_CHANNELS[config.model])
        trainer.compile(optimizer=build_optimizer(config, steps),
                        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
                        metrics=["accuracy"])
        callbacks = _callbacks(config, out, model)
        checkpoint, backup = callbacks[-1], find_backup(out)
        if config.init_from and not backup:
            start_from(model, config.init_from)
        done = restore_backup(backup, trainer, checkpoint) if backup else 0
    _trim_history(out, done)
    _write_state(out, state="running", epochs_done=done, epochs_planned=config.epochs, pid=os.getpid())
    stopped_early = checkpoint.restored.get("EarlyStopping", {}).get("stopped_epoch", 0) > 0
    spent = checkpoint.restored.get("EpochTimer", {}).get("seconds", 0.0)
    out_of_time = bool(config.time_budget and done and spent * (done + 1) / done > config.time_budget * 60)
    if done < config.epochs and not stopped_early and not out_of_time:
        if config.distill_views:
            x_train = consistent_views(x_train, config)
        targets = distillation_targets(x_train, y_train, config, out) if config.teachers else None
        train_batches = Batches(x_train, y_train, batch_size=config.batch_size, seed=config.seed, first_epoch=done,
                                weights=prepared.class_weights if config.class_weighted else None, targets=targets)
        trainer.fit(train_batches, validation_data=validation, epochs=config.epochs,
                    initial_epoch=done, steps_per_epoch=train_batches.steps, shuffle=False, callbacks=callbacks,
                    verbose=config.verbose)
    else:
        checkpoint.on_train_begin()  # the restored counters, for _finish
    _finish(out, config, callbacks, out_of_time)
    return keras.models.load_model(out / MODEL)


def _trim_history(out: Path, done: int) -> None:
    """Drop the rows of ``history.csv`` past the ``done`` epochs of the backup (a kill between
    the log and the backup), as written: Keras appends rows of the file's own columns."""
    path = out / HISTORY
    lines = path.read_text().splitlines(keepends=True) if path.exists() else []
    if len(lines) > done + 1:
        if done:
            save_atomically(path, lambda tmp: Path(tmp).write_text("".join(lines[:done + 1])))
        else:
            path.unlink()


def _finish(out: Path, config: TrainConfig, callbacks: list, out_of_time: bool = False) -> None:
    """Record why the run stopped and which epoch's model it kept; a finished run drops its
    backup, a time-budget stop keeps it."""
    history = read_history(out)
    done = len(history)
    stopper = next((c for c in callbacks if isinstance(c, keras.callbacks.EarlyStopping)), None)
    if stopper is not None and stopper.stopped_epoch > 0:
        state, reason = "early_stopped", f"no better {config.early_stopping_monitor} in {config.early_stopping} epochs"
    elif done >= config.epochs:
        state, reason = "completed", f"the {config.epochs} planned epochs are done"
    else:
        state, reason = "time_budget", f"the time budget of {config.time_budget:g} minutes" + (
            " was spent before this session; resume with a larger --time-budget" if out_of_time else "")
    kept = ("the epoch of the best val_accuracy" if "val_accuracy" in history
            else "the last epoch (no validation split)")
    _write_state(out, state=state, stop_reason=reason, epochs_done=done, epochs_planned=config.epochs, model=kept)
    if state in FINISHED:
        for name in (BACKUP, BACKUP + ".old"):
            shutil.rmtree(out / name, ignore_errors=True)


def summarize_history(history: pd.DataFrame) -> dict:
    """A training history in four numbers: the best validation accuracy, its epoch
    (counting from 1), the epochs run and the training minutes; a run without validation
    split has None and its last epoch, whose model it kept."""
    if not len(history):
        raise DataError("the history is empty: no epoch has ended yet")
    minutes = round(float(history["seconds"].iloc[-1]) / 60, 1)
    if "val_accuracy" not in history:
        return {"best val_accuracy": None, "best epoch": len(history), "epochs": len(history), "minutes": minutes}
    best = history["val_accuracy"].idxmax()
    return {"best val_accuracy": round(float(history["val_accuracy"][best]), 4),
            "best epoch": int(history["epoch"][best]) + 1, "epochs": len(history), "minutes": minutes}


def summarize_runs(run_dir, names) -> pd.DataFrame:
    """:func:`summarize_history` of each named model of a pipeline run, one row each, also
    written as the run's ``training.json`` (which the later notebooks read)."""
    rows = [{"model": name, **summarize_history(read_history(model_dir(run_dir, name)))} for name in names]
    write_json(Path(run_dir) / TRAINING, rows)
    return pd.DataFrame(rows).set_index("model")


def config_table(run_dir, names) -> pd.DataFrame:
    """The options each named model of a pipeline run was trained with, here or in an adopted
    run (its ``train_config.json``): one column per model (the augmentation, a dict, left out;
    the models it learns from by :func:`~fer_utils.runs.model_label`)."""
    configs = {name: read_train_config(model_dir(run_dir, name)) for name in names}
    for config in configs.values():
        config["init_from"] = model_label(config["init_from"]) if config.get("init_from") else ""
        config["teachers"] = ", ".join(model_label(teacher) for teacher in config.get("teachers", []))
    return pd.DataFrame(configs).drop(["augmentation"], errors="ignore")


def saved_options(out) -> dict:
    """The options a train run folder was started with (its manifest's parameters): what
    ``--resume`` continues with; named errors when there is no train run to resume."""
    try:
        manifest = read_manifest(out)
    except FileNotFoundError:
        raise FileNotFoundError(f"{out}: no run to resume (no {MANIFEST})") from None
    except ValueError as error:
        raise DataError(f"{out}: unreadable {MANIFEST} ({error})") from None
    if manifest.get("kind") != "train" or "parameters" not in manifest:
        raise DataError(f"{out}: holds a {manifest.get('kind')!r} run, not a train run; nothing to resume")
    return manifest["parameters"]


def _source_hashes(config: TrainConfig, out, resume: bool) -> dict:
    """The SHA-256 of the models the run learns from, for its manifest: ``init_from``'s as
    recorded when the run started; the teachers', needed again on a resume until their
    targets are whole, must not have changed since (their targets would)."""
    from fer_utils.data import source_hash  # noqa: PLC0415

    earlier = read_json(Path(out) / MANIFEST, {}) if resume else {}
    hashes = {}
    if config.init_from:
        hashes["init_from_sha256"] = earlier.get("init_from_sha256") or source_hash(config.init_from)
    if config.teachers:
        hashes["teachers_sha256"] = [source_hash(path) for path in config.teachers]
        changed = [path for path, before, now in zip(config.teachers, earlier.get("teachers_sha256", []),
                                                     hashes["teachers_sha256"]) if before != now]
        if changed and not (Path(out) / TEACHER_TARGETS).exists():
            raise DataError(f"{out}: teacher model(s) changed since the run started: {', '.join(changed)}; "
                            f"resume with the teachers it started with")
    return hashes


def _dtype_policies(config: TrainConfig, out, resume: bool, notify) -> dict:
    """The manifest's ``dtype_policy`` (this process's) and, once a resume changed it (``auto``
    on a machine with other arithmetic: bf16 against float32 CPUs), ``dtype_policies``: each
    policy with the epoch from which it trained, said by ``notify``."""
    policy = resolve_precision(config.precision)
    earlier = read_json(Path(out) / MANIFEST, {}) if resume else {}
    before = earlier.get("dtype_policies") or [{"from_epoch": 0, "policy": earlier.get("dtype_policy", policy)}]
    if before[-1]["policy"] == policy:
        return {"dtype_policy": policy, **({"dtype_policies": before} if len(before) > 1 else {})}
    backup = find_backup(Path(out))
    epoch = read_json(backup / "state.json", {}).get("epoch", 0) if backup else 0
    notify(f"{out}: resumes under {policy} from epoch {epoch}; it trained under {before[-1]['policy']} until then "
           f"(precision {config.precision}: this machine's arithmetic)")
    return {"dtype_policy": policy, "dtype_policies": [*before, {"from_epoch": epoch, "policy": policy}]}


def train_run(data, out, config: TrainConfig, *, val_fraction: float = 0.2, drop_test_duplicates: bool = False,
              resume: bool = False, force: bool = False, skip_bad: bool = False, resize: bool = False,
              notify=lambda message: None) -> dict:
    """One training run as the ``train`` command makes it: check a resume, load and prepare
    ``data``, claim and lock the run folder ``out``, record its manifest, train, draw the
    learning curves into ``figures/``. Returns :func:`summarize_history` and the model path."""
    from fer_utils.data import load_dataset  # noqa: PLC0415 (the data and figure stacks load only here)
    from fer_utils.plots import learning_curves, save_fig  # noqa: PLC0415
    from fer_utils.prepare import prepare  # noqa: PLC0415

    if resume:
        check_resume(out, config)
    if val_fraction == 0:
        _check_unvalidated(config)
    dataset = load_dataset(data, skip_bad=skip_bad, resize=resize)
    prepared = prepare(dataset, val_fraction=val_fraction, seed=config.seed, drop_test_duplicates=drop_test_duplicates)
    check_sources(prepared, config, out, dataset.source_hash)
    hashes = _source_hashes(config, out, resume)
    policies = _dtype_policies(config, out, resume, notify)
    run_dir = claim_run_dir(out, dataset.source_hash, force=force, resume=resume, resumable=True)
    with RunLock(run_dir):
        write_manifest(run_dir, kind="train", parameters={**asdict(config), "val_fraction": val_fraction,
                                                          "drop_test_duplicates": drop_test_duplicates},
                       data_source=dataset.source, data_hash=dataset.source_hash, synthetic=dataset.synthetic,
                       extra={**hashes, **policies})
        if dataset.synthetic:
            notify("NOTE: training on SYNTHETIC data, not FER2013")
        train(prepared, config, run_dir, resume=resume)
        history = read_history(run_dir)
        figure = learning_curves(history, asdict(config), f"Learning curves: {config.model}", read_train_state(run_dir))
        save_fig(figure, "learning_curves", run_dir, synthetic=dataset.synthetic)
    return {**summarize_history(history), "model": str(model_path(run_dir))}
