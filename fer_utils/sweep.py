"""The seed report's learning-rate x batch-size tuning, as a grid of short training runs, and
the training options each model of a pipeline run gets from it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd

from fer_utils.prepare import Prepared
from fer_utils.runs import SWEEP, SWEEP_DIR, read_history, read_json, write_json
from fer_utils.train import TrainConfig, train


def sweep_config(model: str, train_runs: dict, epochs: int, seed: int = 0) -> TrainConfig:
    """The sweep's base run: ``model``'s recipe from ``train_runs``, ``epochs`` long, without
    early stopping or a time budget (every cell trains alike)."""
    recipe = {**train_runs.get(model, {}), "time_budget": 0, "early_stopping": 0}
    return TrainConfig(**{**recipe, "model": model, "epochs": epochs, "seed": seed, "verbose": 0})


def lr_batch_sweep(prepared: Prepared, base: TrainConfig, learning_rates, batch_sizes, run_dir) -> pd.DataFrame:
    """Train ``base`` once per (learning rate, batch size) into ``run_dir/sweep/lr<lr>-bs<bs>``.

    Returns one row per run: learning_rate, batch_size, best val_accuracy, seconds.
    """
    rows = []
    for lr in learning_rates:
        for batch_size in batch_sizes:
            run = Path(run_dir) / SWEEP_DIR / f"lr{lr:g}-bs{batch_size}"
            train(prepared, replace(base, learning_rate=lr, batch_size=batch_size), run)
            history = read_history(run)
            rows.append({"learning_rate": lr, "batch_size": batch_size,
                         "val_accuracy": float(history["val_accuracy"].max()),
                         "seconds": float(history["seconds"].iloc[-1])})
    return pd.DataFrame(rows)


def best_setting(table: pd.DataFrame) -> dict:
    """The (learning rate, batch size) with the best validation accuracy (ties: faster run)."""
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
