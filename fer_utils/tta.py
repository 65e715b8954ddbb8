"""Test-time augmentation (TTA): average a model's predictions over altered copies of each image.

* ``random``: the seed report's method, N randomly augmented copies (seed augmentation);
* ``deterministic``: fixed views (the image, its mirror, and both shifted by 2 pixels up,
  down, left and right), so every run gives the same answer.

N copies cost N plain predictions; copy k is the same for any N (seeded per copy).
"""

from __future__ import annotations

import numpy as np

from fer_utils.augment import build_augmentation
from fer_utils.inference import model_input, predict_proba

#: (mirror, dx, dy) of the deterministic views, in the order they are used.
DETERMINISTIC_VIEWS = [(False, 0, 0), (True, 0, 0)] + [
    (mirror, dx, dy) for dx, dy in ((2, 0), (-2, 0), (0, 2), (0, -2)) for mirror in (False, True)]
SHIFT_PAD = 2


def deterministic_view(images: np.ndarray, mirror: bool, dx: int, dy: int) -> np.ndarray:
    """Images mirrored (optionally) and shifted by (dx, dy) pixels, edges repeated."""
    views = images[:, :, ::-1] if mirror else images
    padded = np.pad(views, ((0, 0), (SHIFT_PAD, SHIFT_PAD), (SHIFT_PAD, SHIFT_PAD)), mode="edge")
    h, w = images.shape[1:]
    return padded[:, SHIFT_PAD - dy:SHIFT_PAD - dy + h, SHIFT_PAD - dx:SHIFT_PAD - dx + w]


def copy_seed(seed: int, copy: int) -> int:
    """The augmentation seed of random copy ``copy``: independent streams per (seed, copy)."""
    return int(np.random.SeedSequence([seed, copy]).generate_state(1)[0])


def augmented_copy(images: np.ndarray, seed: int, batch_size: int = 256, **options) -> np.ndarray:
    """One randomly augmented copy of (N, 48, 48) images as float32, from the augmentation
    (``options`` as in :func:`~fer_utils.augment.build_augmentation`) seeded ``seed`` and run
    over batches of ``batch_size`` images, so the same arguments give the same copy."""
    augmentation = build_augmentation(seed, **options)
    if augmentation is None:
        return images.astype(np.float32)
    return np.concatenate([np.asarray(augmentation(images[s:s + batch_size, ..., None].astype(np.float32),
                                                   training=True))[..., 0]
                           for s in range(0, len(images), batch_size)])


def tta_copies(model, images: np.ndarray, n: int = 10, *, mode: str = "random", seed: int = 0,
               batch_size: int = 256) -> np.ndarray:
    """Per-copy class probabilities, shape (n, N, 7); their mean is the TTA prediction.

    Copy k is the same whatever ``n`` is (random copy k draws from its own seeded
    augmentation, over batches of ``batch_size`` images), so 10 copies are the first 10 of 20.
    """
    if mode not in ("random", "deterministic") or n < 1:
        raise ValueError(f"TTA needs mode 'random' or 'deterministic' and n >= 1, got {mode!r}, n={n}")
    if mode == "deterministic" and n > len(DETERMINISTIC_VIEWS):
        raise ValueError(f"deterministic TTA has at most {len(DETERMINISTIC_VIEWS)} views, got n={n}")
    channels = model.input_shape[-1]
    out = np.empty((n, len(images), model.output_shape[-1]), np.float32)
    for copy in range(n):
        if mode == "random":
            views = augmented_copy(images, copy_seed(seed, copy), batch_size)
        else:
            views = deterministic_view(images, *DETERMINISTIC_VIEWS[copy])
        out[copy] = np.asarray(model.predict(model_input(views, channels), batch_size=batch_size, verbose=0))
    return out


def tta_predict(model, images: np.ndarray, n: int = 10, *, mode: str = "random", seed: int = 0) -> np.ndarray:
    """TTA class probabilities (N, 7): the mean over ``n`` copies."""
    return tta_copies(model, images, n, mode=mode, seed=seed).mean(axis=0)


def tta_predictions(model, images: np.ndarray, *, copies: int = 10, seed: int = 0) -> dict:
    """A model's predictions for a TTA study: ``plain`` probabilities (N, 7), the ``random``
    copies (``copies``, N, 7) and the ``deterministic`` mean over all views (N, 7)."""
    return {"plain": predict_proba(model, images),
            "random": tta_copies(model, images, copies, mode="random", seed=seed),
            "deterministic": tta_predict(model, images, len(DETERMINISTIC_VIEWS), mode="deterministic")}


def accuracy_by_copies(copies: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Accuracy of the TTA mean over the first 1, 2, ..., n copies."""
    running = np.cumsum(copies, axis=0)
    return (running.argmax(axis=2) == labels[None, :]).mean(axis=1)
