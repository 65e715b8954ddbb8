"""The seed report's learning-rate x batch-size tuning, as a grid of short training runs."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pandas as pd

from fer_utils.prepare import Prepared
from fer_utils.runs import read_history
from fer_utils.train import TrainConfig, train

SWEEP_FILE = "sweep.json"


def lr_batch_sweep(prepared: Prepared, base: TrainConfig, learning_rates, batch_sizes, out_dir) -> pd.DataFrame:
    """Train ``base`` once per (learning rate, batch size) into ``out_dir/lr<lr>-bs<bs>``.

    Returns one row per run: learning_rate, batch_size, best val_accuracy, seconds.
    """
    rows = []
    for lr in learning_rates:
        for batch_size in batch_sizes:
            run = Path(out_dir) / f"lr{lr:g}-bs{batch_size}"
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
    path = Path(run_dir) / SWEEP_FILE
    path.write_text(json.dumps({"model": model, "chosen": choice, "grid": table.to_dict("records")}, indent=2) + "\n")
    return path


def chosen_for(run_dir, model: str) -> dict:
    """The sweep's chosen values for ``model``, or ``{}`` when no sweep ran for it."""
    path = Path(run_dir) / SWEEP_FILE
    if not path.exists():
        return {}
    sweep = json.loads(path.read_text())
    return sweep["chosen"] if sweep["model"] == model else {}
