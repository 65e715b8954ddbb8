"""Predictions kept between runs of a study: the probabilities a model gives one test usage
(:func:`fer_utils.tta.tta_predictions`), stored under a key, so that regenerating a study
predicts again only the models or data that changed.

The key hashes the model file, the images, the options (number of random copies, seed), the
seed augmentation, the Keras version, its backend and the backend's version, and the source
of the modules that compute the predictions (:mod:`fer_utils.tta`, :mod:`fer_utils.augment`,
:mod:`fer_utils.inference`). Not in the key: the machine, so the precision ``load_model``
picks for it (bfloat16 and float32 kernels can differ by an image in a few thousand); a
study reuses the predictions of the machine that made them. Entries no longer used stay
until their folder is deleted.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import os
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np

from fer_utils import DataError, augment, inference, tta
from fer_utils.config import SEED_AUGMENTATION

#: The arrays of one entry.
ARRAYS = ("plain", "random", "deterministic")
#: What a damaged entry raises when read.
UNREADABLE = (OSError, ValueError, KeyError, EOFError, TypeError, zipfile.BadZipFile, zlib.error)


def prediction_key(model_path, images: np.ndarray, **options) -> str:
    """The hex sha256 of what the predictions of ``model_path`` on ``images`` depend on."""
    model_path = Path(model_path)
    if not model_path.is_file():
        raise DataError(f"{model_path}: model file not found")
    backend = keras.backend.backend()
    digest = hashlib.sha256(model_path.read_bytes())
    images = np.ascontiguousarray(images)
    digest.update(f"{images.dtype}{images.shape}".encode())
    digest.update(images.tobytes())
    versions = {"keras": keras.__version__, backend: getattr(importlib.import_module(backend), "__version__", "")}
    digest.update(json.dumps({**options, **versions, "augmentation": SEED_AUGMENTATION}, sort_keys=True,
                             default=str).encode())
    for module in (tta, augment, inference):
        digest.update(inspect.getsource(module).encode())
    return digest.hexdigest()


def cached_predictions(cache_dir, key: str, compute: Callable[[], dict]) -> dict:
    """The arrays stored under ``key`` in ``cache_dir``, or ``compute()``'s, stored there first
    (written whole to a ``.part`` file, then renamed: an interrupted run leaves no entry)."""
    path = Path(cache_dir) / f"{key[:32]}.npz"
    if path.exists():
        try:
            with np.load(path) as stored:
                arrays, stored_key = {name: stored[name] for name in ARRAYS}, str(stored["key"])
        except UNREADABLE as err:
            raise DataError(f"{path}: stored predictions unreadable ({err!r}); "
                            "delete the file to predict again") from err
        if stored_key != key:
            raise DataError(f"{path}: stored under another key ({stored_key[:12]}..., not {key[:12]}...); "
                            "delete the file to predict again")
        return arrays
    arrays = compute()
    missing = set(ARRAYS) - set(arrays)
    if missing:
        raise ValueError(f"predictions to store lack {', '.join(sorted(missing))}")
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    with open(part, "wb") as file:
        np.savez_compressed(file, key=key, **{name: arrays[name] for name in ARRAYS})
        file.flush()
        os.fsync(file.fileno())
    part.replace(path)
    return arrays
