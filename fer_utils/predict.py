"""Loading saved models and labelling the faces of photos: the ``predict`` command's library side."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from fer_utils import CLASSES, IMAGE_SIZE, DataError
from fer_utils.faces import annotate, crop_faces, detect_faces, read_gray
from fer_utils.inference import predict_proba

#: The project's shipped model, used when no ``--model`` is given.
DEFAULT_MODEL = Path(__file__).resolve().parent / "default_model" / "model.keras"


def load_model(path=None):
    """A saved Keras model (default: the shipped one), with a named error when unusable. A
    model that computes in bfloat16 (an export for inference, or saved under mixed_bfloat16)
    computes in float32 where there is neither an accelerator nor a CPU with bf16 arithmetic:
    emulated bf16 is about half as fast there (AVX2, ``benchmarks/bf16_inference.py``)."""
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
    return fast_on_this_machine(model)


def fast_on_this_machine(model):
    """``model``, or a float32 copy of it (:func:`fer_utils.models.export_for_inference`) when
    it computes in bfloat16 and this machine has no bf16 arithmetic."""
    from fer_utils.models import compute_dtype, export_for_inference  # noqa: PLC0415
    from fer_utils.train import resolve_precision  # noqa: PLC0415

    slow = compute_dtype(model) == "bfloat16" and resolve_precision("auto") == "float32"
    return export_for_inference(model) if slow else model


def face_probabilities(models, faces: np.ndarray, *, tta: int = 0, tta_mode: str = "random") -> np.ndarray:
    """Class probabilities (N, 7) of (N, 48, 48) face crops: the mean over ``models`` (an
    ensemble when there are several), each model's averaged over ``tta`` augmented copies of
    every face when ``tta`` > 0 (seeded: the same crops in the same order give the same
    probabilities; the random views depend on a face's place in the batch)."""
    if not tta:
        return np.mean([predict_proba(model, faces) for model in models], axis=0)
    from fer_utils.tta import tta_predict  # noqa: PLC0415 (the augmentation layers load only here)

    return np.mean([tta_predict(model, faces, tta, mode=tta_mode) for model in models], axis=0)


def predict_images(model, paths, *, annotate_dir=None, tta: int = 0, tta_mode: str = "random"):
    """Faces and class probabilities for each image; unreadable files are reported, not fatal.

    ``model`` may be a list of models, averaged as an ensemble; ``tta`` and ``tta_mode`` as in
    :func:`face_probabilities`. Returns ``(results, errors)``: one ``{"image", "faces":
    [{"box", "label", "probabilities"}]}`` per readable image (with ``"annotated"``, the
    annotated copy's path, when ``annotate_dir`` is given and faces were found; never two
    inputs on one name), one ``{"image", "error"}`` per failure.
    """
    models = list(model) if isinstance(model, (list, tuple)) else [model]
    results, errors, taken = [], [], set()
    for path in paths:
        try:
            gray = read_gray(path)
        except DataError as error:
            errors.append({"image": str(path), "error": str(error)})
            continue
        boxes = detect_faces(gray)
        proba = (face_probabilities(models, crop_faces(gray, boxes), tta=tta, tta_mode=tta_mode) if boxes
                 else np.zeros((0, len(CLASSES))))
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
