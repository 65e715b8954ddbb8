"""Scores of a classifier: accuracy and per-class metrics (scikit-learn), bootstrap
confidence intervals (``scipy.stats.bootstrap``) and calibration (``sklearn.calibration``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import binomtest, bootstrap
from sklearn.calibration import calibration_curve
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from fer_utils import CLASSES

LABELS = list(range(len(CLASSES)))


def _macro_f1(labels, predicted):
    return f1_score(labels, predicted, labels=LABELS, average="macro", zero_division=0)


def point_scores(labels, proba) -> dict:
    """Accuracy and macro-F1 alone, without intervals (cheap: no bootstrap)."""
    predicted = np.asarray(proba).argmax(axis=1)
    return {"accuracy": float(accuracy_score(labels, predicted)), "macro_f1": float(_macro_f1(labels, predicted))}


def confidence_interval(statistic, labels, predicted, *, n_resamples: int = 1000, seed: int = 0):
    """Percentile bootstrap 95% interval of ``statistic(labels, predicted)`` over images."""
    result = bootstrap((labels, predicted), statistic, paired=True, vectorized=False,
                       n_resamples=n_resamples, method="percentile", random_state=seed)
    return [float(result.confidence_interval.low), float(result.confidence_interval.high)]


def recall_interval(hits: int, images: int) -> list[float] | None:
    """Wilson score 95% interval of a class's recall, ``hits`` of its ``images`` right."""
    if images == 0:
        return None
    interval = binomtest(hits, images).proportion_ci(confidence_level=0.95, method="wilson")
    return [float(interval.low), float(interval.high)]


def accuracy_gain(labels, base_proba, new_proba, *, n_resamples: int = 1000, seed: int = 0) -> dict:
    """Accuracy of ``new_proba`` minus that of ``base_proba`` on the same images, with a
    paired percentile bootstrap 95% interval: ``{"gain": g, "gain_ci": [low, high]}``."""
    labels = np.asarray(labels)
    difference = ((np.asarray(new_proba).argmax(axis=1) == labels).astype(float)
                  - (np.asarray(base_proba).argmax(axis=1) == labels))
    result = bootstrap((difference,), np.mean, n_resamples=n_resamples, method="percentile", random_state=seed)
    return {"gain": float(difference.mean()),
            "gain_ci": [float(result.confidence_interval.low), float(result.confidence_interval.high)]}


def _top_class(labels, proba):
    """Confidence of the predicted class and whether it is right, per image."""
    return proba.max(axis=1), (proba.argmax(axis=1) == labels)


def expected_calibration_error(labels, proba, n_bins: int = 10) -> float:
    """Weighted mean gap between confidence and accuracy over equal-width confidence bins."""
    confidence, correct = _top_class(labels, proba)
    edges = np.linspace(0, 1, n_bins + 1)
    bins = np.clip(np.digitize(confidence, edges[1:-1]), 0, n_bins - 1)
    gaps = [abs(correct[bins == b].mean() - confidence[bins == b].mean()) * (bins == b).mean()
            for b in range(n_bins) if (bins == b).any()]
    return float(sum(gaps))


def reliability(labels, proba, n_bins: int = 10):
    """``(mean confidence, accuracy)`` per confidence bin of the top class (sklearn)."""
    confidence, correct = _top_class(labels, proba)
    accuracy, mean_confidence = calibration_curve(correct.astype(int), confidence, n_bins=n_bins)
    return mean_confidence, accuracy


def score(labels, proba, *, usage: str = "", n_resamples: int = 1000, seed: int = 0) -> dict:
    """Every metric of one usage as a JSON-ready dict.

    Keys: usage, n, accuracy, accuracy_ci, macro_f1, macro_f1_ci, weighted_f1, per_class
    ({class: precision, recall, f1, support}), recall_ci ({class: Wilson 95% interval of
    its recall, None without images}), confusion (counts, rows = true class),
    confusion_normalized (rows sum to 1), ece.
    """
    labels, proba = np.asarray(labels), np.asarray(proba)
    if len(labels) == 0:
        raise ValueError("cannot score an empty set of images")
    if proba.shape != (len(labels), len(CLASSES)):
        raise ValueError(f"proba must have shape ({len(labels)}, {len(CLASSES)}), got {proba.shape}")
    predicted = proba.argmax(axis=1)
    precision, recall, f1, support = precision_recall_fscore_support(labels, predicted, labels=LABELS,
                                                                     zero_division=0)
    confusion = confusion_matrix(labels, predicted, labels=LABELS)
    rows = confusion.sum(axis=1, keepdims=True)
    return {
        "usage": usage, "n": int(len(labels)),
        "accuracy": float(accuracy_score(labels, predicted)),
        "accuracy_ci": confidence_interval(accuracy_score, labels, predicted, n_resamples=n_resamples, seed=seed),
        "macro_f1": float(_macro_f1(labels, predicted)),
        "macro_f1_ci": confidence_interval(_macro_f1, labels, predicted, n_resamples=n_resamples, seed=seed),
        "weighted_f1": float(f1_score(labels, predicted, labels=LABELS, average="weighted", zero_division=0)),
        "per_class": {c: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
                      for c, p, r, f, s in zip(CLASSES, precision, recall, f1, support)},
        "recall_ci": {c: recall_interval(int(confusion[i, i]), int(rows[i, 0])) for i, c in enumerate(CLASSES)},
        "confusion": confusion.tolist(),
        "confusion_normalized": np.divide(confusion, rows, out=np.zeros(confusion.shape),
                                          where=rows > 0).round(4).tolist(),
        "ece": expected_calibration_error(labels, proba),
    }


def per_class_table(result: dict) -> pd.DataFrame:
    """The per-class part of :func:`score` as a table (classes as rows)."""
    return pd.DataFrame(result["per_class"]).T.astype({"support": int})


def most_confused(result: dict, top: int = 5) -> pd.DataFrame:
    """The ``top`` (true, predicted) pairs of different classes with the most images."""
    confusion = np.asarray(result["confusion"])
    normalized = np.asarray(result["confusion_normalized"])
    pairs = [(CLASSES[t], CLASSES[p], int(confusion[t, p]), float(normalized[t, p]))
             for t in LABELS for p in LABELS if t != p]
    frame = pd.DataFrame(pairs, columns=["true", "predicted", "images", "share of true class"])
    return frame.sort_values("images", ascending=False, kind="stable").head(top).reset_index(drop=True)
