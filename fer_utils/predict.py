"""Scoring saved models: the ``evaluate`` and ``predict`` commands' library side."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fer_utils import CLASSES, DataError
from fer_utils.data import Dataset
from fer_utils.evaluate import score
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
    try:
        return keras.models.load_model(path)
    except (ValueError, OSError) as error:
        raise DataError(f"{path}: not a loadable Keras model ({error})") from None


def default_usage(dataset: Dataset) -> str:
    """PublicTest when present, else the first test usage, else Training."""
    tests = [u for u in dataset.present_usages() if u != "Training"]
    return "PublicTest" if "PublicTest" in tests else (tests or ["Training"])[0]


def evaluate_model(model, dataset: Dataset, usage: str, *, tta: int = 0, tta_mode: str = "random",
                   keep_blank: bool = False, seed: int = 0) -> dict:
    """Score ``model`` on one usage: every metric of :func:`fer_utils.evaluate.score`, the
    blank images left out (reported), and the TTA scores when ``tta`` > 0."""
    part = dataset.usage(usage)
    blank = np.zeros(len(part), bool) if keep_blank else blank_mask(part.images)
    part = part.subset(~blank)
    proba = predict_proba(model, part.images)
    result = score(part.labels, proba, usage=usage, seed=seed)
    result.update(data=Path(dataset.source).name, synthetic=dataset.synthetic, blank_removed=int(blank.sum()),
                  tta=None)
    if tta:
        tta_proba = tta_predict(model, part.images, tta, mode=tta_mode, seed=seed)
        tta_result = tta_score(part.labels, proba, tta_proba, usage=usage, seed=seed)
        result["tta"] = {"n": tta, "mode": tta_mode, **{k: tta_result[k] for k in (
            "accuracy", "accuracy_ci", "macro_f1", "macro_f1_ci", "gain", "gain_ci")}}
    return result


def predict_images(model, paths, *, annotate_dir=None):
    """Faces and class probabilities for each image; unreadable files are reported, not fatal.

    Returns ``(results, errors)``: one ``{"image", "faces": [{"box", "label",
    "probabilities"}]}`` per readable image, one ``{"image", "error"}`` per failure.
    """
    results, errors = [], []
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
            annotate(path, boxes, captions, Path(annotate_dir) / f"{Path(path).stem}_annotated.png")
    return results, errors
