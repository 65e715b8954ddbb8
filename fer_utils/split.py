"""Validation split of the Training usage and class weights for the loss."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.utils.class_weight import compute_class_weight

from fer_utils import CLASSES, DataError


def train_val_split(labels: np.ndarray, val_fraction: float = 0.2, seed: int = 0):
    """Stratified, seeded split: ``(train_index, val_index)`` into ``labels``.

    The seed report held out 20% of Training for validation.
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    counts = np.bincount(labels, minlength=len(CLASSES))
    if (counts[counts > 0] < 2).any():
        rare = [CLASSES[i] for i in np.flatnonzero((counts > 0) & (counts < 2))]
        raise DataError(f"cannot stratify: class(es) {', '.join(rare)} have a single image")
    train_index, val_index = train_test_split(np.arange(len(labels)), test_size=val_fraction,
                                              stratify=labels, random_state=seed)
    return np.sort(train_index), np.sort(val_index)


def class_weights(labels: np.ndarray) -> dict[int, float]:
    """``compute_class_weight("balanced")`` for every class; a clear error if one is absent."""
    present = np.unique(labels)
    missing = [CLASSES[i] for i in range(len(CLASSES)) if i not in present]
    if missing:
        raise DataError(f"no training images of class(es) {', '.join(missing)}: cannot weight the loss")
    weights = compute_class_weight("balanced", classes=np.arange(len(CLASSES)), y=labels)
    return {i: float(w) for i, w in enumerate(weights)}
