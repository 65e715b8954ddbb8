"""Data quality: blank images (the seed's "black and white" images) and exact duplicates."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from fer_utils.data import Dataset

#: Default blank threshold: an image whose pixel standard deviation is below this many
#: grey levels is near-constant (all black, all white or a flat grey) and holds no face.
BLANK_MAX_STD = 2.0


def blank_mask(images: np.ndarray, max_std: float = BLANK_MAX_STD) -> np.ndarray:
    """Boolean mask of blank images: pixel standard deviation below ``max_std``."""
    if images.ndim != 3:
        raise ValueError(f"images must have shape (N, H, W), got {images.shape}")
    return images.reshape(len(images), -1).std(axis=1) < max_std


def blank_counts(dataset: Dataset, max_std: float = BLANK_MAX_STD) -> dict[str, int]:
    """Number of blank images per usage present in ``dataset``."""
    mask = blank_mask(dataset.images, max_std)
    return {u: int(mask[dataset.usages == u].sum()) for u in dataset.present_usages()}


def image_digests(images: np.ndarray) -> list[str]:
    """A digest of each image's pixels: equal digests mean equal images."""
    return [hashlib.blake2b(image.tobytes(), digest_size=16).hexdigest() for image in images]


def duplicate_groups(images: np.ndarray) -> pd.DataFrame:
    """Exact duplicates: one row per image that shares its pixels with another.

    Columns: ``index`` (into ``images``) and ``group`` (images with equal pixels share it).
    """
    frame = pd.DataFrame({"index": np.arange(len(images)), "digest": image_digests(images)})
    frame = frame[frame.duplicated("digest", keep=False)]
    frame["group"] = frame.groupby("digest", sort=False).ngroup()
    return frame[["index", "group"]].reset_index(drop=True)


def _dataset_groups(dataset: Dataset, include_blank: bool, max_std: float) -> pd.DataFrame:
    """:func:`duplicate_groups` of a dataset (blank images left out unless ``include_blank``),
    with indices into the dataset and each image's usage."""
    keep = np.ones(len(dataset), bool) if include_blank else ~blank_mask(dataset.images, max_std)
    index = np.flatnonzero(keep)
    groups = duplicate_groups(dataset.images[index])
    groups["index"] = index[groups["index"]]
    groups["usage"] = dataset.usages[groups["index"]]
    return groups


def duplicate_pairs(dataset: Dataset, max_std: float = BLANK_MAX_STD, n: int = 8) -> pd.DataFrame:
    """Up to ``n`` pairs of exact duplicates (blank images left out), one per group: half of
    them within Training, the others across usages, when there are that many.

    Columns: ``first``, ``second`` (indices into ``dataset``; ``second`` of another usage
    than ``first`` when the group has one), ``within_training``, ``same_label``.
    """
    rows = []
    for _, group in _dataset_groups(dataset, False, max_std).groupby("group", sort=True):
        first, *others = group["index"].tolist()
        second = next((i for i in others if dataset.usages[i] != dataset.usages[first]), others[0])
        rows.append({"first": first, "second": second,
                     "within_training": dataset.usages[first] == dataset.usages[second] == "Training",
                     "same_label": bool(dataset.labels[first] == dataset.labels[second])})
    pairs = pd.DataFrame(rows, columns=["first", "second", "within_training", "same_label"])
    within = pairs[pairs["within_training"]].head(n // 2)
    chosen = pd.concat([within, pairs[~pairs["within_training"]].head(n - len(within))])
    return pd.concat([chosen, pairs.drop(chosen.index)]).head(n).reset_index(drop=True)


def duplicate_summary(dataset: Dataset, *, include_blank: bool = False,
                      max_std: float = BLANK_MAX_STD) -> dict:
    """Counts of exact duplicates within and across usages.

    Blank images are all alike, so they are left out unless ``include_blank``. Returns
    ``{"groups": n, "images": n, "within": {usage: n}, "across": {"A/B": n}}`` where
    ``within[u]`` counts images of ``u`` with an equal image of the same usage,
    ``across["A/B"]`` counts groups holding images of both usages and ``conflicting_labels``
    the groups whose equal images carry different labels.
    """
    groups = _dataset_groups(dataset, include_blank, max_std)
    sizes = groups.groupby(["usage", "group"]).size()
    usage_sets = groups.groupby("group")["usage"].agg(frozenset)
    usages = dataset.present_usages()
    within = {u: int(sizes.loc[u][sizes.loc[u] > 1].sum()) if u in sizes.index else 0 for u in usages}
    across = {f"{a}/{b}": int(sum({a, b} <= s for s in usage_sets))
              for i, a in enumerate(usages) for b in usages[i + 1:]}
    labels = pd.Series(dataset.labels[groups["index"]]).groupby(groups["group"].to_numpy()).nunique()
    return {"groups": int(groups["group"].nunique()), "images": len(groups),
            "within": within, "across": across, "conflicting_labels": int((labels > 1).sum())}


def has_copy_in(images: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Mask of ``images`` whose exact pixels appear among ``others``."""
    digests = set(image_digests(others))
    return np.array([digest in digests for digest in image_digests(images)], bool)


def train_test_duplicates(dataset: Dataset, max_std: float = BLANK_MAX_STD) -> np.ndarray:
    """Mask of non-blank Training images whose exact pixels also appear in a test usage."""
    candidates = ~blank_mask(dataset.images, max_std)
    training = np.flatnonzero(candidates & (dataset.usages == "Training"))
    mask = np.zeros(len(dataset), bool)
    mask[training] = has_copy_in(dataset.images[training], dataset.images[candidates & (dataset.usages != "Training")])
    return mask
