"""Turning uint8 face arrays into model input and class probabilities."""

from __future__ import annotations

import numpy as np


def model_input(images: np.ndarray, channels: int) -> np.ndarray:
    """(N, 48, 48) uint8 -> (N, 48, 48, channels) float32 pixel values 0-255."""
    x = np.asarray(images, dtype=np.float32)[..., None]
    return np.repeat(x, channels, axis=-1) if channels > 1 else x


def predict_proba(model, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Class probabilities (N, 7) of ``model`` for (N, 48, 48) images, as float32."""
    x = model_input(images, model.input_shape[-1])
    return np.asarray(model.predict(x, batch_size=batch_size, verbose=0), dtype=np.float32)
