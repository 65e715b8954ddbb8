"""The seed report's learning-rate x batch-size tuning, as a grid of short training runs, and
the training options each model of a pipeline run gets from it."""

from __future__ import annotations

import glob
import os
from dataclasses import replace
from pathlib import Path

import pandas as pd

from fer_utils import OptionError
from fer_utils.prepare import Prepared
from fer_utils.runs import (
    HISTORY,
    SWEEP,
    SWEEP_DIR,
    TRAIN_CONFIG,
    read_history,
    read_json,
    read_train_state,
    write_json,
)
from fer_utils.train import TrainConfig, train


def sweep_config(model: str, train_runs: dict, epochs: int, seed: int = 0) -> TrainConfig:
    """The sweep's base run: ``model``'s recipe from ``train_runs``, ``epochs`` long, without
    early stopping or a time budget (every cell trains alike)."""
    recipe = {**train_runs.get(model, {}), "time_budget": 0, "early_stopping": 0}
    return TrainConfig(**{**recipe, "model": model, "epochs": epochs, "seed": seed, "verbose": 0})


def lr_batch_sweep(prepared: Prepared, base: TrainConfig, learning_rates, batch_sizes, run_dir,
                   trained: str | None = None) -> pd.DataFrame:
    """Train ``base`` once per (learning rate, batch size) into ``run_dir/sweep/lr<lr>-bs<bs>``;
    or, given ``trained`` (a glob relative to ``run_dir``, such as ``../long-runs/sweep-*``),
    read the runs it matches instead of training (one still training or interrupted, whose
    ``train_state.json`` says ``running``, is left out).

    Returns one row per run, largest learning rate first, then smallest batch: learning_rate,
    batch_size, best val_accuracy, seconds, epochs.
    """
    if trained:
        folders = sorted(Path(p) for p in glob.glob(os.path.normpath(Path(run_dir) / trained)))
        folders = [f for f in folders if (f / TRAIN_CONFIG).exists() and (f / HISTORY).exists()
                   and read_train_state(f).get("state") != "running"]
        if not folders:
            raise FileNotFoundError(f"{os.path.normpath(Path(run_dir) / trained)}: no finished sweep run matches")
    else:
        if not (learning_rates and batch_sizes):
            raise OptionError("learning_rates, batch_sizes: empty sweep grid; give at least one of each "
                              "(or sweep_runs to read finished runs)")
        folders = []
        for lr in learning_rates:
            for batch_size in batch_sizes:
                folders.append(Path(run_dir) / SWEEP_DIR / f"lr{lr:g}-bs{batch_size}")
                train(prepared, replace(base, learning_rate=lr, batch_size=batch_size), folders[-1])
    grid = pd.DataFrame([_cell(folder) for folder in folders])
    return grid.sort_values(["learning_rate", "batch_size"], ascending=[False, True], ignore_index=True)


def _cell(run: Path) -> dict:
    """One sweep cell: its learning rate and batch size, best validation accuracy, time, epochs."""
    config, history = read_json(run / TRAIN_CONFIG), read_history(run)
    return {"learning_rate": config["learning_rate"], "batch_size": config["batch_size"],
            "val_accuracy": float(history["val_accuracy"].max()),
            "seconds": float(history["seconds"].iloc[-1]), "epochs": len(history)}


def best_setting(table: pd.DataFrame) -> dict:
    """The (learning rate, batch size) with the best validation accuracy (ties: faster run)."""
    if table.empty:
        raise ValueError("empty sweep grid: no finished cell to choose from")
    best = table.sort_values(["val_accuracy", "seconds"], ascending=[False, True]).iloc[0]
    return {"learning_rate": float(best["learning_rate"]), "batch_size": int(best["batch_size"])}


def save_choice(run_dir, model: str, choice: dict, table: pd.DataFrame) -> Path:
    """Write the chosen values (and the whole grid) as ``sweep.json`` for the training notebook."""
    return write_json(Path(run_dir) / SWEEP, {"model": model, "chosen": choice, "grid": table.to_dict("records")})


def chosen_for(run_dir, model: str) -> dict:
    """The sweep's chosen values for ``model``, or ``{}`` when no sweep ran for it."""
    sweep = read_json(Path(run_dir) / SWEEP)
    return sweep["chosen"] if sweep and sweep["model"] == model else {}


def run_configs(run_dir, train_runs: dict, seed: int = 0) -> dict[str, TrainConfig]:
    """The training options of each model of ``train_runs`` (model name -> options): the
    sweep's chosen learning rate and batch size for its model, overridden by the options."""
    return {name: TrainConfig(**{**chosen_for(run_dir, name), **options, "model": name, "seed": seed})
            for name, options in train_runs.items()}
