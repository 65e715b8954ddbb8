"""Training options as plain data, importable without TensorFlow (the CLI builds its flags from
them), and the YAML files that hold options (profiles, plans)."""

from __future__ import annotations

import contextlib
import math
import numbers
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import yaml

from fer_utils import OptionError
from fer_utils.runs import model_label

#: The seed report's augmentation: rotation 10 degrees, 10% width/height shift, shear,
#: 10% zoom, horizontal flip, ``nearest`` fill.
SEED_AUGMENTATION = {"rotation": 10.0, "shift": 0.1, "shear": 0.1, "zoom": 0.1,
                     "flip": True, "erasing": 0.0}

#: Options a resumed run may change; every other one must match the run's saved config.
RESUMABLE_CHANGES = ("epochs", "time_budget", "verbose")


@dataclass
class TrainConfig:
    """Every training option; the defaults are the project's recipe for ``vgg_gap``."""

    model: str = "vgg_gap"
    model_options: dict = field(default_factory=dict)  # builder keywords: widths, dropout, ...
    init_from: str = ""               # a saved model (same model and options) to start from; "": random
    teachers: list = field(default_factory=list)  # saved models whose mean probabilities soften the targets
    distill: float = 0.0              # weight of the teachers' probabilities in the targets, 0-1
    distill_views: int = 0            # >0: that many stored augmented copies of each image, teachers and
                                      # student on the same copy; 0: teachers on the clean image
    epochs: int = 20
    batch_size: int = 64
    optimizer: str = "adamw"          # adam | adamw | sgd
    learning_rate: float = 1e-3
    weight_decay: float = -1.0        # decoupled, any optimizer; -1: 1e-4 for adamw, 0 otherwise
    momentum: float = 0.9             # sgd only
    nesterov: bool = True             # sgd only
    schedule: str = "cosine"          # cosine | plateau | constant
    warmup_epochs: int = 1            # cosine only
    plateau_monitor: str = "val_loss"  # plateau only: the metric whose stall cuts the rate
    plateau_factor: float = 0.5
    plateau_patience: int = 3
    plateau_min_lr: float = 1e-6
    label_smoothing: float = 0.0
    class_weighted: bool = True       # the seed's weighted categorical cross-entropy
    augmentation: dict = field(default_factory=lambda: dict(SEED_AUGMENTATION))
    early_stopping: int = 0           # patience in epochs; 0 disables
    early_stopping_monitor: str = "val_accuracy"
    time_budget: float = 0.0          # minutes of training not to exceed; 0: no limit
    precision: str = "auto"           # auto | mixed_bfloat16 | float32
    strategy: str = "default"         # default | mirrored | multiworker
    seed: int = 0
    verbose: int = 2                  # Keras progress: 1 bar, 2 one line per epoch

    def __post_init__(self):
        for option in fields(self):
            setattr(self, option.name, typed(option.name, getattr(self, option.name), option.type))
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.distill <= 1:
            raise ValueError(f"distill must be in [0, 1], got {self.distill}")
        if self.distill and not self.teachers:
            raise ValueError(f"distill {self.distill} needs teachers (saved models) to learn from")
        if self.teachers and not self.distill:
            raise ValueError("teachers need a distill weight above 0 (the share of their probabilities in the targets)")
        if self.distill_views < 0:
            raise ValueError(f"distill_views must be 0 or more, got {self.distill_views}")
        if self.distill_views and not self.teachers:
            raise ValueError(f"distill_views {self.distill_views} needs teachers to label the views")
        unknown = set(self.augmentation) - set(SEED_AUGMENTATION)
        if unknown:
            raise ValueError(f"unknown augmentation option(s): {', '.join(sorted(unknown))}")
        self.augmentation = {**SEED_AUGMENTATION, **self.augmentation}  # options given override the seed's

    @property
    def source_models(self) -> list[tuple[str, str]]:
        """``(path, option)`` of each saved model the run learns from (``init_from``, ``teachers``)."""
        return [(self.init_from, "init_from")] * bool(self.init_from) + [(t, "teachers") for t in self.teachers]

    @property
    def decay(self) -> float:
        """The weight decay actually applied (resolves the ``-1`` default)."""
        if self.weight_decay >= 0:
            return self.weight_decay
        return 1e-4 if self.optimizer == "adamw" else 0.0


#: The types each kind of option takes (numbers may come as text: YAML reads ``1e-3`` as text;
#: NumPy numbers too), and how errors describe them.
KINDS = {"float": ((numbers.Real, str), "a finite number"), "int": (numbers.Integral, "a whole number"),
         "bool": ((bool, np.bool_), "true or false"), "str": (str, "text"),
         "list": ((list, tuple), "a list of texts"), "dict": (dict, "a mapping")}


def typed(name: str, value, kind: str):
    """``value`` as option ``name`` of ``kind`` (a key of :data:`KINDS`) takes it, as a plain
    Python value (numbers as floats where a float is meant, lists as lists); a value of another
    kind is a ValueError naming the option."""
    types, words = KINDS[kind]
    fits = isinstance(value, types) and (kind == "bool" or not isinstance(value, (bool, np.bool_)))
    if fits and kind == "float":
        with contextlib.suppress(ValueError):
            if math.isfinite(number := float(value)):
                return number
    elif fits and kind == "list" and all(isinstance(item, str) for item in value):
        return list(value)
    elif fits and kind != "list":
        return {"int": int, "bool": bool}.get(kind, lambda v: v)(value)
    raise ValueError(f"{name} must be {words}, got {value!r}")


MONITORS = ("val_loss", "val_accuracy")
#: The values each option with a fixed set of them may take.
CHOICES = {"optimizer": ("adam", "adamw", "sgd"), "schedule": ("cosine", "plateau", "constant"),
           "precision": ("auto", "mixed_bfloat16", "float32"), "strategy": ("default", "mirrored", "multiworker"),
           "plateau_monitor": MONITORS, "early_stopping_monitor": MONITORS}


def contradictions(saved: dict, given: dict) -> dict:
    """``{option: (given, saved)}`` for each option of ``given`` that a resumed run cannot
    change: recorded in ``saved`` with another value, and not in :data:`RESUMABLE_CHANGES`.
    The models a run learns from compare by run (:func:`~fer_utils.runs.model_label`), so a
    moved checkout resumes its runs (their files are checked by hash where it matters)."""
    return {k: (given[k], saved[k]) for k in sorted(given)
            if k in saved and k not in RESUMABLE_CHANGES and _comparable(k, given[k]) != _comparable(k, saved[k])}


def _comparable(option: str, value):
    """``value`` of ``option`` as :func:`contradictions` compares it."""
    if option == "init_from" and value:
        return model_label(value)
    if option == "teachers" and value:
        return [model_label(teacher) for teacher in value]
    return value


def describe_contradictions(found: dict) -> str:
    """``found`` (from :func:`contradictions`) as the refusal of a resume."""
    return "--resume continues the run with its saved options; " + ", ".join(
        f"{k} {given!r} != saved {saved!r}" for k, (given, saved) in found.items())


def read_yaml(path) -> dict:
    """A YAML file of options (``{}`` when empty); a named error when it is not valid YAML or
    not a mapping."""
    path = Path(path)
    try:
        value = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise OptionError(f"{path}: not valid YAML ({' '.join(str(error).split())})") from None
    if not isinstance(value, (dict, type(None))):
        kind = {list: "a list", str: "a string"}.get(type(value), type(value).__name__)
        raise OptionError(f"{path}: expected a mapping of options, got {kind}")
    return value or {}
