"""Preprocessing: blank filtering, optional duplicate removal, the stratified validation
split of Training and the balanced class weights, saved into the run folder for the
notebooks that follow."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.utils.class_weight import compute_class_weight

from fer_utils import CLASSES, DataError
from fer_utils.data import Dataset
from fer_utils.quality import BLANK_MAX_STD, blank_mask, train_test_duplicates
from fer_utils.runs import PREPARED


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


def balanced_class_weights(labels: np.ndarray) -> dict[int, float]:
    """``compute_class_weight("balanced")`` for every class; a clear error if one is absent."""
    present = np.unique(labels)
    missing = [CLASSES[i] for i in range(len(CLASSES)) if i not in present]
    if missing:
        raise DataError(f"no training images of class(es) {', '.join(missing)}: cannot weight the loss")
    weights = compute_class_weight("balanced", classes=np.arange(len(CLASSES)), y=labels)
    return {i: float(w) for i, w in enumerate(weights)}
SPLITS = ("train", "val", "PublicTest", "PrivateTest")


@dataclass
class Prepared:
    """Images kept after filtering, each tagged with its ``split``: ``train``, ``val`` (both
    from Training) or its test usage (``PublicTest``, ``PrivateTest``)."""

    images: np.ndarray
    labels: np.ndarray
    split: np.ndarray
    class_weights: dict[int, float]
    removed: dict = field(default_factory=dict)
    synthetic: bool = False

    def arrays(self, split: str):
        """``(images, labels)`` of one split; a clear error when it is empty."""
        mask = self.split == split
        if not mask.any():
            raise DataError(f"prepared data has no {split!r} images (splits: {', '.join(self.splits())})")
        return self.images[mask], self.labels[mask]

    def splits(self) -> list[str]:
        """The splits present, in the order train, val, PublicTest, PrivateTest."""
        return [s for s in SPLITS if (self.split == s).any()]

    def train_sample(self, fraction: float, seed: int = 0) -> Prepared:
        """A copy keeping a stratified, seeded ``fraction`` of ``train`` and every other split
        whole (short runs such as the sweep); the class weights stay those of the full split."""
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        if fraction == 1:
            return self
        train = np.flatnonzero(self.split == "train")
        _, sampled = train_val_split(self.labels[train], fraction, seed)
        keep = self.split != "train"
        keep[train[sampled]] = True
        return replace(self, images=self.images[keep], labels=self.labels[keep], split=self.split[keep])


def prepare(dataset: Dataset, *, val_fraction: float = 0.2, seed: int = 0,
            max_std: float = BLANK_MAX_STD, drop_test_duplicates: bool = False) -> Prepared:
    """Drop blank images (and optionally Training copies of test images), split Training
    into train/validation (stratified, seeded) and weight the classes of ``train``."""
    blank = blank_mask(dataset.images, max_std)
    duplicate = train_test_duplicates(dataset, max_std) if drop_test_duplicates else np.zeros(len(dataset), bool)
    keep = ~blank & ~duplicate
    removed = {"blank": {u: int((blank & (dataset.usages == u)).sum()) for u in dataset.present_usages()},
               "train_test_duplicates": int(duplicate.sum())}
    kept = dataset.subset(keep)
    split = kept.usages.astype(object)
    training = np.flatnonzero(kept.usages == "Training")
    if not len(training):
        raise DataError(f"{dataset.source}: no Training images left to train on")
    train_idx, val_idx = train_val_split(kept.labels[training], val_fraction, seed)
    split[training[train_idx]], split[training[val_idx]] = "train", "val"
    return Prepared(kept.images, kept.labels, split.astype(str),
                    balanced_class_weights(kept.labels[training[train_idx]]), removed, dataset.synthetic)


def save_prepared(prepared: Prepared, run_dir) -> Path:
    """Write the prepared arrays and a JSON sidecar (weights, removed counts) into ``run_dir``."""
    path = Path(run_dir) / PREPARED
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, images=prepared.images, labels=prepared.labels, split=prepared.split)
    meta = {"class_weights": {CLASSES[i]: w for i, w in prepared.class_weights.items()},
            "removed": prepared.removed, "synthetic": prepared.synthetic,
            "split_sizes": {s: int((prepared.split == s).sum()) for s in prepared.splits()}}
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    return path


def load_prepared(run_dir) -> Prepared:
    """Read what :func:`save_prepared` wrote; names the missing file if the step did not run."""
    path = Path(run_dir) / PREPARED
    if not path.exists():
        raise DataError(f"{path}: not found; run the preprocessing notebook (02) for this run folder first")
    meta = json.loads(path.with_suffix(".json").read_text())
    with np.load(path) as data:
        weights = {CLASSES.index(c): w for c, w in meta["class_weights"].items()}
        return Prepared(data["images"], data["labels"], data["split"], weights,
                        meta["removed"], meta["synthetic"])
