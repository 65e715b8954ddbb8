"""Score the weight average (soup) of runs trained on one train/validation split on that split's
validation images, with the batch-norm statistics averaged and re-estimated on train images.

    python benchmarks/soup_check.py runs/vgg-wide-sgd runs/vgg-wide-sgd-anneal [--data PATH]

The runs must share the split (the same seed and validation fraction, checked against each
run's split.npz). Prints each run's validation accuracy and each soup's, with its paired
difference from the last run (bootstrap 95% interval).
"""

import argparse
from pathlib import Path

import keras
import numpy as np

from fer_utils.data import load_dataset
from fer_utils.inference import predict_proba
from fer_utils.models import average_weights
from fer_utils.predict import load_model
from fer_utils.prepare import prepare
from fer_utils.runs import read_json
from fer_utils.scoring import accuracy_gain


def reestimate_batch_norm(model: keras.Model, images: np.ndarray, batch_size: int = 256) -> None:
    """Replace the batch-norm moving statistics by their mean over ``images`` (SWA's recipe;
    dropout runs in training mode too, seeded by :func:`main`)."""
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    if not norms:
        raise SystemExit("the models have no batch normalization to re-estimate")
    for k, batch in enumerate(np.array_split(images, max(1, len(images) // batch_size)), 1):
        for layer in norms:
            layer.momentum = (k - 1) / k  # a running mean over the batches so far
        model(batch.astype("float32"), training=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--data", default=Path(__file__).resolve().parents[2] / "shared/data/fer2013.zip")
    args = parser.parse_args()
    keras.utils.set_random_seed(0)  # before the models load: their dropout layers draw their seeds then
    parameters = read_json(args.runs[0] / "manifest.json", {}).get("parameters", {})
    if not parameters.get("val_fraction"):
        raise SystemExit(f"{args.runs[0]}: no validation split recorded (trained on all of Training?)")
    prepared = prepare(load_dataset(args.data), val_fraction=parameters["val_fraction"], seed=parameters["seed"])
    for run in args.runs:
        with np.load(run / "split.npz") as saved:
            if not np.array_equal(saved["val"], np.flatnonzero(prepared.split == "val")):
                raise SystemExit(f"{run}: trained on another split than {args.runs[0]}")
    x_val, y_val = prepared.arrays("val")
    models = [load_model(run / "model.keras") for run in args.runs]
    probabilities = [predict_proba(model, x_val) for model in models]
    for run, proba in zip(args.runs, probabilities):
        print(f"{run.name}: validation accuracy {np.mean(proba.argmax(1) == y_val):.4f}")
    soup = average_weights(models, [str(run) for run in args.runs])

    def print_soup(label):
        proba = predict_proba(soup, x_val)
        gain = accuracy_gain(y_val, probabilities[-1], proba)
        print(f"soup, batch-norm statistics {label}: {np.mean(proba.argmax(1) == y_val):.4f}, "
              f"{100 * gain['gain']:+.2f} points over {args.runs[-1].name} "
              f"(paired 95% CI {100 * gain['gain_ci'][0]:+.2f} to {100 * gain['gain_ci'][1]:+.2f})")

    print_soup("averaged")
    train = prepared.arrays("train")[0]
    reestimate_batch_norm(soup, train[np.random.default_rng(0).permutation(len(train))[:8192]])
    print_soup("re-estimated")


if __name__ == "__main__":
    main()
