"""Preprocessing: blank filtering, optional duplicate removal, the stratified validation
split of Training and the balanced class weights, saved into the run folder for the
notebooks that follow."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split
from sklearn.utils.class_weight import compute_class_weight

from fer_utils import CLASSES, DataError
from fer_utils.data import Dataset
from fer_utils.quality import BLANK_MAX_STD, blank_mask, has_copy_in, train_test_duplicates
from fer_utils.runs import PREPARED, write_json


def train_val_split(labels: np.ndarray, val_fraction: float = 0.2, seed: int = 0):
    """Stratified, seeded split: ``(train_index, val_index)`` into ``labels``.

    The seed report held out 20% of Training for validation; ``val_fraction`` 0 keeps every
    image for training (a final fit after the options were chosen on a validation split).
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if val_fraction == 0:
        index = np.arange(len(labels))
        return index, index[:0]
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
SPLITS = ("train", "val", "test")
TEST_USAGES = ("PublicTest", "PrivateTest")


@dataclass
class Prepared:
    """Images kept after filtering, each with its ``split`` (``train`` and ``val``, both from
    FER2013's Training usage, or ``test``) and its FER2013 ``usage`` (Training, PublicTest,
    PrivateTest: the test split holds one or both test usages, scored apart)."""

    images: np.ndarray
    labels: np.ndarray
    split: np.ndarray
    usage: np.ndarray
    class_weights: dict[int, float]
    removed: dict = field(default_factory=dict)
    synthetic: bool = False

    def arrays(self, split: str, usage: str | None = None):
        """``(images, labels)`` of one split (of one usage of it when given); a clear error when
        that is empty."""
        mask = (self.split == split) & ((self.usage == usage) if usage else True)
        if not mask.any():
            present = (f"test usages: {', '.join(self.test_usages())}" if usage
                       else f"splits: {', '.join(self.splits())}")
            of_usage = f" of usage {usage!r}" if usage else ""
            raise DataError(f"prepared data has no {split!r} images{of_usage} ({present})")
        return self.images[mask], self.labels[mask]

    def splits(self) -> list[str]:
        """The splits present, in the order train, val, test."""
        return [s for s in SPLITS if (self.split == s).any()]

    def test_usages(self) -> list[str]:
        """The FER2013 usages of the test split, PublicTest first."""
        return [u for u in TEST_USAGES if ((self.split == "test") & (self.usage == u)).any()]

    def scored_usages(self, wanted) -> list[str]:
        """The usages of ``wanted`` that the test split has, in its order; a named error when
        there is none (nothing to score)."""
        wanted = [wanted] if isinstance(wanted, str) else list(wanted)
        usages = [u for u in wanted if u in self.test_usages()]
        if not usages:
            raise DataError(f"no test images of {', '.join(wanted) or 'any usage'}; this data has test usages: "
                            f"{', '.join(self.test_usages()) or 'none'}")
        return usages

    def split_table(self) -> pd.DataFrame:
        """Images per split (each test usage apart) and class, with totals."""
        rows = np.where(self.split == "test", np.char.add("test: ", self.usage.astype(str)), self.split)
        order = [*SPLITS[:2], *[f"test: {u}" for u in TEST_USAGES]]
        return pd.crosstab(pd.Categorical(rows, categories=[r for r in order if (rows == r).any()]),
                           pd.Categorical([CLASSES[k] for k in self.labels], categories=CLASSES),
                           margins=True, margins_name="total", dropna=False).rename_axis(index="split", columns="class")

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
        return replace(self, images=self.images[keep], labels=self.labels[keep], split=self.split[keep],
                       usage=self.usage[keep])


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
    split = np.full(len(kept), "test", dtype=object)
    training = np.flatnonzero(kept.usages == "Training")
    if not len(training):
        raise DataError(f"{dataset.source}: no Training images left to train on")
    train_idx, val_idx = train_val_split(kept.labels[training], val_fraction, seed)
    split[training[train_idx]], split[training[val_idx]] = "train", "val"
    return Prepared(kept.images, kept.labels, split.astype(str), kept.usages.astype(str),
                    balanced_class_weights(kept.labels[training[train_idx]]), removed, dataset.synthetic)


def save_prepared(prepared: Prepared, run_dir) -> Path:
    """Write the prepared arrays and a JSON sidecar (weights, removed counts) into ``run_dir``."""
    path = Path(run_dir) / PREPARED
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, images=prepared.images, labels=prepared.labels, split=prepared.split, usage=prepared.usage)
    meta = {"class_weights": {CLASSES[i]: w for i, w in prepared.class_weights.items()},
            "removed": prepared.removed, "synthetic": prepared.synthetic,
            "split_sizes": {s: int((prepared.split == s).sum()) for s in prepared.splits()},
            "test_usage_sizes": {u: len(prepared.arrays("test", u)[1]) for u in prepared.test_usages()},
            "val_copies_in_train": int(has_copy_in(prepared.images[prepared.split == "val"],
                                                   prepared.images[prepared.split == "train"]).sum())}
    write_json(path.with_suffix(".json"), meta)
    return path


def load_prepared(run_dir) -> Prepared:
    """Read what :func:`save_prepared` wrote; names the missing file if the step did not run."""
    path = Path(run_dir) / PREPARED
    if not path.exists():
        raise DataError(f"{path}: not found; run the preprocessing notebook (02) for this run folder first")
    meta = json.loads(path.with_suffix(".json").read_text())
    with np.load(path) as data:
        weights = {CLASSES.index(c): w for c, w in meta["class_weights"].items()}
        return Prepared(data["images"], data["labels"], data["split"], data["usage"], weights,
                        meta["removed"], meta["synthetic"])
