"""Scoring saved models: the ``evaluate`` and ``predict`` commands' library side."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from fer_utils import CLASSES, IMAGE_SIZE, DataError
from fer_utils.data import Dataset
from fer_utils.evaluate import accuracy_gain, point_scores, score
from fer_utils.faces import annotate, crop_faces, detect_faces, read_gray
from fer_utils.inference import predict_proba
from fer_utils.quality import blank_mask
from fer_utils.tta import tta_predict, tta_score

#: The project's shipped model, used when no ``--model`` is given.
DEFAULT_MODEL = Path(__file__).resolve().parent / "default_model" / "model.keras"


def load_model(path=None):
    """A saved Keras model (default: the shipped one), with a named error when unusable."""
    import keras  # noqa: PLC0415 (TensorFlow loads only when a model is needed)

    path = Path(path) if path else DEFAULT_MODEL
    if not path.exists():
        hint = " (no default model is shipped yet: pass --model)" if path == DEFAULT_MODEL else ""
        raise DataError(f"{path}: model file not found{hint}")
    if path.suffix != ".keras" or not zipfile.is_zipfile(path):
        raise DataError(f"{path}: not a Keras model file (expected a .keras archive saved by Keras 3)")
    try:
        model = keras.models.load_model(path)
    except (ValueError, OSError, KeyError, TypeError) as error:
        raise DataError(f"{path}: not a loadable Keras model ({error})") from None
    shape = tuple(model.input_shape[1:])
    if shape[:2] != (IMAGE_SIZE, IMAGE_SIZE) or shape[-1] not in (1, 3):
        raise DataError(f"{path}: the model takes input of shape {shape}, not {IMAGE_SIZE}x{IMAGE_SIZE} images "
                        f"with 1 or 3 channels")
    if model.output_shape[-1] != len(CLASSES):
        raise DataError(f"{path}: the model has {model.output_shape[-1]} outputs, not one per class "
                        f"({len(CLASSES)})")
    return model


def default_usage(dataset: Dataset) -> str:
    """PublicTest when present, else the first test usage, else Training."""
    tests = [u for u in dataset.present_usages() if u != "Training"]
    return "PublicTest" if "PublicTest" in tests else (tests or ["Training"])[0]


def evaluate_model(model, dataset: Dataset, usage: str, *, tta: int = 0, tta_mode: str = "random",
                   keep_blank: bool = False, seed: int = 0) -> dict:
    """Score ``model`` on one usage: every metric of :func:`fer_utils.evaluate.score`, the
    blank images left out (reported), and the TTA scores when ``tta`` > 0.

    ``model`` may be a list of models: they are scored as an ensemble (the mean of their
    probabilities, plain and with TTA), with each member's scores under ``members`` and the
    ensemble's paired accuracy gain over the best member (``gain_over_best_member``).
    """
    models = list(model) if isinstance(model, (list, tuple)) else [model]
    part = dataset.usage(usage)
    blank = np.zeros(len(part), bool) if keep_blank else blank_mask(part.images)
    part = part.subset(~blank)
    plain = [predict_proba(m, part.images) for m in models]
    proba = np.mean(plain, axis=0)
    result = score(part.labels, proba, usage=usage, seed=seed)
    result.update(data=Path(dataset.source).name, synthetic=dataset.synthetic, blank_removed=int(blank.sum()),
                  tta=None)
    if tta:
        copies = [tta_predict(m, part.images, tta, mode=tta_mode, seed=seed) for m in models]
        tta_proba = np.mean(copies, axis=0)
        tta_result = tta_score(part.labels, proba, tta_proba, usage=usage, seed=seed)
        result["tta"] = {"n": tta, "mode": tta_mode, **{k: tta_result[k] for k in (
            "accuracy", "accuracy_ci", "macro_f1", "macro_f1_ci", "gain", "gain_ci")}}
    if len(models) > 1:
        members = [point_scores(part.labels, p) for p in plain]
        result["gain_over_best_member"] = _gain_over_best(part.labels, plain, members, proba, seed)
        if tta:
            with_tta = [point_scores(part.labels, c) for c in copies]
            result["tta"]["gain_over_best_member"] = _gain_over_best(part.labels, copies, with_tta, tta_proba, seed)
            for member, scores in zip(members, with_tta):
                member.update({f"tta_{k}": v for k, v in scores.items()})
        result["members"] = members
    return result


def _gain_over_best(labels, member_probas, member_scores, ensemble_proba, seed) -> dict:
    """The ensemble's paired accuracy gain (and 95% interval) over its most accurate member."""
    best = int(np.argmax([s["accuracy"] for s in member_scores]))
    return accuracy_gain(labels, member_probas[best], ensemble_proba, seed=seed)


def predict_images(model, paths, *, annotate_dir=None):
    """Faces and class probabilities for each image; unreadable files are reported, not fatal.

    Returns ``(results, errors)``: one ``{"image", "faces": [{"box", "label",
    "probabilities"}]}`` per readable image (with ``"annotated"``, the annotated copy's
    path, when ``annotate_dir`` is given and faces were found; never two inputs on one
    name), one ``{"image", "error"}`` per failure.
    """
    results, errors, taken = [], [], set()
    for path in paths:
        try:
            gray = read_gray(path)
        except DataError as error:
            errors.append({"image": str(path), "error": str(error)})
            continue
        boxes = detect_faces(gray)
        proba = predict_proba(model, crop_faces(gray, boxes)) if boxes else np.zeros((0, len(CLASSES)))
        faces = [{"box": list(box), "label": CLASSES[int(p.argmax())],
                  "probabilities": {c: round(float(v), 6) for c, v in zip(CLASSES, p)}}
                 for box, p in zip(boxes, proba)]
        results.append({"image": str(path), "faces": faces})
        if annotate_dir and faces:
            captions = [f"{f['label']} {max(f['probabilities'].values()):.0%}" for f in faces]
            target = _unique_path(Path(annotate_dir), f"{Path(path).stem}_annotated", ".png", taken)
            annotate(path, boxes, captions, target)
            results[-1]["annotated"] = str(target)
    return results, errors


def _unique_path(folder: Path, stem: str, suffix: str, taken: set) -> Path:
    """``folder/stem.suffix``, or ``stem-2``, ``stem-3``... when this call (``taken``) or an
    earlier one already wrote that name: two inputs never share an output."""
    number, path = 1, folder / f"{stem}{suffix}"
    while path in taken or path.exists():
        number += 1
        path = folder / f"{stem}-{number}{suffix}"
    taken.add(path)
    return path
