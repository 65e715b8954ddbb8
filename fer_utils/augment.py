"""Training-time augmentation as Keras 3 preprocessing layers (``ImageDataGenerator`` is deprecated)."""

from __future__ import annotations

import keras

from fer_utils.config import SEED_AUGMENTATION



def build_augmentation(seed: int = 0, **options) -> keras.Sequential | None:
    """Augmentation layers for (batch, 48, 48, C) images with values 0-255.

    ``options`` override :data:`SEED_AUGMENTATION`: ``rotation`` (degrees), ``shift``,
    ``shear`` and ``zoom`` (fractions), ``flip`` (horizontal), ``erasing`` (probability
    of erasing a random patch; 0 disables it). None when every option is off.
    """
    unknown = set(options) - set(SEED_AUGMENTATION)
    if unknown:
        raise ValueError(f"unknown augmentation option(s): {', '.join(sorted(unknown))}")
    cfg = {**SEED_AUGMENTATION, **options}
    layers = []
    if cfg["flip"]:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed))
    if cfg["rotation"]:
        layers.append(keras.layers.RandomRotation(cfg["rotation"] / 360, fill_mode="nearest", seed=seed + 1))
    if cfg["shift"]:
        layers.append(keras.layers.RandomTranslation(cfg["shift"], cfg["shift"], fill_mode="nearest", seed=seed + 2))
    if cfg["shear"]:
        layers.append(keras.layers.RandomShear(cfg["shear"], cfg["shear"], fill_mode="nearest", seed=seed + 3))
    if cfg["zoom"]:
        layers.append(keras.layers.RandomZoom(cfg["zoom"], fill_mode="nearest", seed=seed + 4))
    if cfg["erasing"]:
        layers.append(keras.layers.RandomErasing(factor=cfg["erasing"], value_range=(0, 255), seed=seed + 5))
    return keras.Sequential(layers, name="augmentation") if layers else None
