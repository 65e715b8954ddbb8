"""Predictions kept between runs of a study: the probabilities a model gives one test usage
(plain, random TTA copies, deterministic TTA), stored under a key of everything they depend
on, so that regenerating a study predicts again only the models or data that changed.

The key hashes the model file, the images, the TTA options, the Keras version and the
source of the modules that compute the predictions (:mod:`fer_utils.tta`,
:mod:`fer_utils.augment`, :mod:`fer_utils.inference`): a change to any of them is a miss.
The machine is not in the key: a study reuses the predictions of the machine that made
them (bfloat16 and float32 kernels can differ by an image in a few thousand).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np

from fer_utils import DataError, augment, inference, tta

#: The arrays of one entry.
ARRAYS = ("plain", "random", "deterministic")


def prediction_key(model_path, images: np.ndarray, **options) -> str:
    """The hex sha256 of everything the predictions of ``model_path`` on ``images`` depend on."""
    digest = hashlib.sha256(Path(model_path).read_bytes())
    images = np.ascontiguousarray(images)
    digest.update(f"{images.dtype}{images.shape}".encode())
    digest.update(images.tobytes())
    digest.update(json.dumps({**options, "keras": keras.__version__}, sort_keys=True).encode())
    for module in (tta, augment, inference):
        digest.update(inspect.getsource(module).encode())
    return digest.hexdigest()


def cached_predictions(cache_dir, key: str, compute: Callable[[], dict]) -> dict:
    """The arrays stored under ``key`` in ``cache_dir``, or ``compute()``'s, stored there first
    (written whole, then renamed: an interrupted run leaves no partial entry)."""
    path = Path(cache_dir) / f"{key[:32]}.npz"
    if path.exists():
        try:
            with np.load(path) as stored:
                return {name: stored[name] for name in ARRAYS}
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
            raise DataError(f"{path}: stored predictions unreadable ({err}); delete the file to predict again") from err
    arrays = compute()
    missing = set(ARRAYS) - set(arrays)
    if missing:
        raise ValueError(f"predictions to store lack {', '.join(sorted(missing))}")
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.stem + ".part.npz")
    np.savez_compressed(part, **{name: arrays[name] for name in ARRAYS})
    part.replace(path)
    return arrays
