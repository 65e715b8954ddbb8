"""Scoring: accuracy and per-class metrics (scikit-learn), bootstrap confidence intervals
(``scipy.stats.bootstrap``), calibration (reliability bins, ECE), TTA studies, and
saved models (alone or as an ensemble) scored on a FER2013 usage: the ``evaluate`` command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import binomtest, bootstrap
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from fer_utils import CLASSES
from fer_utils.data import Dataset
from fer_utils.inference import predict_proba
from fer_utils.models import compute_dtype
from fer_utils.predict import load_model
from fer_utils.prediction_cache import cached_predictions, prediction_key
from fer_utils.quality import blank_mask
from fer_utils.tta import accuracy_by_copies, tta_predict, tta_predictions

LABELS = list(range(len(CLASSES)))
#: The scored variants of :func:`tta_study`.
VARIANTS = ("plain", "tta_random", "tta_deterministic")


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


def reliability(labels, proba, n_bins: int = 10) -> pd.DataFrame:
    """Mean confidence of the predicted class, accuracy and images of each non-empty bin of
    ``n_bins`` equal-width confidence bins: the reliability diagram's points."""
    confidence, correct = _top_class(np.asarray(labels), np.asarray(proba))
    bins = np.clip(np.digitize(confidence, np.linspace(0, 1, n_bins + 1)[1:-1]), 0, n_bins - 1)
    frame = pd.DataFrame({"bin": bins, "confidence": confidence, "correct": correct})
    return (frame.groupby("bin").agg(confidence=("confidence", "mean"), accuracy=("correct", "mean"),
                                     images=("correct", "size")).reset_index(drop=True))


def expected_calibration_error(labels, proba, n_bins: int = 10) -> float:
    """Mean gap between confidence and accuracy over the bins of :func:`reliability`,
    weighted by their images."""
    table = reliability(labels, proba, n_bins)
    return float(((table["accuracy"] - table["confidence"]).abs() * table["images"]).sum() / table["images"].sum())


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
    if len(labels) == 1:
        raise ValueError(f"cannot score {usage or 'a set'} from 1 image: its intervals need two or more")
    if proba.shape != (len(labels), len(CLASSES)):
        raise ValueError(f"proba must have shape ({len(labels)}, {len(CLASSES)}), got {proba.shape}")
    broken = int((~np.isfinite(proba)).any(axis=1).sum())
    if broken:
        raise ValueError(f"{usage or 'scores'}: {broken} image(s) with probabilities that are not finite "
                         f"(NaN or inf): the model's weights may have diverged")
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


def recall_gains(labels, base_proba, new_proba, *, seed: int = 0) -> dict:
    """Per class: the recall of ``new_proba`` minus that of ``base_proba`` on the same images
    of the class, with its paired 95% interval (:func:`accuracy_gain`); None without images."""
    labels = np.asarray(labels)
    return {c: accuracy_gain(labels[labels == k], np.asarray(base_proba)[labels == k],
                             np.asarray(new_proba)[labels == k], seed=seed) if (labels == k).sum() > 1 else None
            for k, c in enumerate(CLASSES)}


def tta_score(labels, plain_proba, tta_proba, *, seed: int = 0, **score_options) -> dict:
    """:func:`score` of TTA predictions, with their paired ``gain`` in
    accuracy over the plain predictions of the same images and its ``gain_ci``."""
    return {**score(labels, tta_proba, seed=seed, **score_options),
            **accuracy_gain(labels, plain_proba, tta_proba, seed=seed),
            "recall_gain": recall_gains(labels, plain_proba, tta_proba, seed=seed)}


def tta_study(model, images: np.ndarray, labels: np.ndarray, *, n: int = 10, max_copies: int = 20,
              seed: int = 0, usage: str = "", predictions: dict | None = None) -> dict:
    """Plain prediction beside random TTA (``n`` copies) and deterministic TTA (all views).

    Returns the :func:`score` of each (``plain``, ``tta_random``, ``tta_deterministic``; the
    TTA ones add their paired ``gain`` over plain, its ``gain_ci`` and ``recall_gain`` per
    class), ``accuracy_by_copies`` for 1 to ``max_copies`` random copies, and the ``labels``
    and each variant's probabilities (``proba``) for paired comparisons. ``predictions``: the
    model's :func:`tta_predictions` when already made (``model`` is then not used).
    """
    drawn = max(n, max_copies)
    if predictions is None:
        predictions = tta_predictions(model, images, copies=drawn, seed=seed)
    copies, shape = predictions["random"], (len(labels), len(CLASSES))
    if copies.shape != (drawn, *shape) or {predictions[k].shape for k in ("plain", "deterministic")} != {shape}:
        got = ", ".join(f"{k} {v.shape}" for k, v in predictions.items())
        raise ValueError(f"predictions of {len(labels)} images with {drawn} random copies expected; got {got}")
    proba = {"plain": predictions["plain"], "tta_random": copies[:n].mean(axis=0),
             "tta_deterministic": predictions["deterministic"]}
    return {**_variant_scores(labels, proba, seed=seed, usage=usage),
            "accuracy_by_copies": accuracy_by_copies(copies[:max_copies], labels).round(5).tolist(),
            "labels": np.asarray(labels), "proba": proba}


def _variant_scores(labels, proba: dict, **score_options) -> dict:
    """:func:`score` of the plain probabilities and :func:`tta_score` of each TTA variant."""
    return {"plain": score(labels, proba["plain"], **score_options),
            **{name: tta_score(labels, proba["plain"], proba[name], **score_options) for name in VARIANTS[1:]}}


def ensemble_study(studies: dict, usage: str, members=None, *, seed: int = 0) -> dict:
    """The ensemble of ``members`` (default: all) of ``{model: {usage: tta_study}}``: the mean
    of their probabilities, plain and with each TTA variant, scored like a :func:`tta_study`;
    each variant adds the paired ``gain_over_best_member`` (over the member most accurate in
    that variant). Also ``members``, ``labels`` and ``proba``."""
    members = list(members or studies)
    if len(members) < 2:
        raise ValueError(f"an ensemble needs at least two models; got {', '.join(members) or 'none'}")
    unknown = [m for m in members if usage not in studies.get(m, {})]
    if unknown:
        raise ValueError(f"no {usage} study of {', '.join(unknown)}; have: {', '.join(studies)}")
    parts = [studies[m][usage] for m in members]
    labels = parts[0]["labels"]
    proba = {v: np.mean([part["proba"][v] for part in parts], axis=0) for v in VARIANTS}
    result = _variant_scores(labels, proba, seed=seed, usage=usage)
    for v in VARIANTS:
        result[v]["gain_over_best_member"] = _gain_over_best(
            labels, [part["proba"][v] for part in parts], [part[v] for part in parts], proba[v], seed)
    return {**result, "members": members, "labels": labels, "proba": proba}


def study_scores(studies: dict) -> dict:
    """``{model: {usage: {variant: score}}}`` of ``{model: {usage: tta_study}}``, without the
    per-copy curve: what ``metrics.json`` keeps."""
    return {name: {usage: {v: study[v] for v in VARIANTS} for usage, study in by_usage.items()}
            for name, by_usage in studies.items()}


def study_table(studies: dict) -> pd.DataFrame:
    """Accuracy with its 95% interval and macro-F1, one row per model, usage and variant."""
    rows = [{"model": name, "usage": usage, "variant": variant, "accuracy": round(r["accuracy"], 4),
             "accuracy 95% CI": [round(v, 4) for v in r["accuracy_ci"]], "macro-F1": round(r["macro_f1"], 4)}
            for name, by_usage in study_scores(studies).items() for usage, by_variant in by_usage.items()
            for variant, r in by_variant.items()]
    return pd.DataFrame(rows).set_index(["model", "usage", "variant"])


def ensemble_studies(studies: dict, usages, members=None, *, seed: int = 0) -> dict:
    """``{usage: ensemble_study}`` of ``members`` (default: all) of ``{model: {usage: tta_study}}``;
    empty when no members are named and fewer than two models were trained (no ensemble to make);
    named members (at least two) are :func:`ensemble_study`'s to check."""
    if not members and len(studies) < 2:
        return {}
    return {usage: ensemble_study(studies, usage, members, seed=seed) for usage in usages}


def ensemble_scores(ensembles: dict) -> dict:
    """What ``metrics.json`` keeps of :func:`ensemble_studies`: the ``members`` and the
    ``scores`` ``{usage: {variant: score}}``, each with its ``gain_over_best_member``
    (``{}`` without an ensemble)."""
    if not ensembles:
        return {}
    members = next(iter(ensembles.values()))["members"]
    return {"members": members, "scores": study_scores({"ensemble": ensembles})["ensemble"]}


def ensemble_table(ensembles: dict) -> pd.DataFrame:
    """:func:`study_table` of :func:`ensemble_studies` with the paired accuracy gain over the
    best member (points, 95% interval) of each usage and variant; empty without an ensemble."""
    if not ensembles:
        return pd.DataFrame()
    table = study_table({"ensemble": ensembles}).droplevel("model")
    gains = {(usage, v): e[v]["gain_over_best_member"] for usage, e in ensembles.items() for v in VARIANTS}
    table["gain over best member (points)"] = [round(100 * gains[key]["gain"], 2) for key in table.index]
    table["gain 95% CI"] = [[round(100 * x, 2) for x in gains[key]["gain_ci"]] for key in table.index]
    return table


def default_usage(dataset: Dataset) -> str:
    """PublicTest when present, else the first test usage, else Training."""
    tests = [u for u in dataset.present_usages() if u != "Training"]
    return "PublicTest" if "PublicTest" in tests else (tests or ["Training"])[0]


#: The scores of a TTA variant that an evaluation keeps (:func:`tta_score` has more).
TTA_KEYS = ("accuracy", "accuracy_ci", "macro_f1", "macro_f1_ci", "gain", "gain_ci")


def evaluate_model(model, dataset: Dataset, usage: str, *, tta: int = 0, tta_mode: str = "random",
                   keep_blank: bool = False, seed: int = 0) -> dict:
    """Score ``model`` on one usage: every metric of :func:`score`, the
    blank images left out (reported), and the TTA scores when ``tta`` > 0.

    ``model`` may be a list of models: they are scored as an ensemble (the mean of their
    probabilities, plain and with TTA), with each member's scores under ``members`` and the
    ensemble's paired accuracy gain over the best member (``gain_over_best_member``).
    ``compute_dtype`` records the arithmetic the models computed in (bfloat16 and float32
    scores of one model differ slightly).
    """
    models = list(model) if isinstance(model, (list, tuple)) else [model]
    part = dataset.usage(usage)
    blank = np.zeros(len(part), bool) if keep_blank else blank_mask(part.images)
    part = part.subset(~blank)
    plain = [predict_proba(m, part.images) for m in models]
    proba = np.mean(plain, axis=0)
    result = score(part.labels, proba, usage=usage, seed=seed)
    result.update(data=Path(dataset.source).name, synthetic=dataset.synthetic, blank_removed=int(blank.sum()),
                  compute_dtype=" and ".join(sorted({compute_dtype(m) for m in models})), tta=None)
    if tta:
        copies = [tta_predict(m, part.images, tta, mode=tta_mode, seed=seed) for m in models]
        tta_proba = np.mean(copies, axis=0)
        tta_result = tta_score(part.labels, proba, tta_proba, usage=usage, seed=seed)
        result["tta"] = {"n": tta, "mode": tta_mode, **{k: tta_result[k] for k in TTA_KEYS}}
    if len(models) > 1:
        members = [point_scores(part.labels, p) for p in plain]
        result["gain_over_best_member"] = _gain_over_best(part.labels, plain, members, proba, seed)
        if tta:
            with_tta = [point_scores(part.labels, c) for c in copies]
            result["tta"]["gain_over_best_member"] = _gain_over_best(part.labels, copies, with_tta, tta_proba, seed)
            for member, scores in zip(members, with_tta):
                member.update({f"tta_{k}": v for k, v in scores.items()})
        result["members"] = members
    return result


def _gain_over_best(labels, member_probas, member_scores, ensemble_proba, seed) -> dict:
    """The ensemble's paired accuracy gain (and 95% interval) over its most accurate member."""
    best = int(np.argmax([s["accuracy"] for s in member_scores]))
    return accuracy_gain(labels, member_probas[best], ensemble_proba, seed=seed)


def tta_studies(model_paths: dict, prepared, usages, *, cache=None, n: int = 10, max_copies: int = 20,
                seed: int = 0) -> dict:
    """``{model: {usage: tta_study}}``: :func:`tta_study` of each saved model (``{name: path}``)
    on each test usage of ``prepared``. With a ``cache`` folder, the predictions are read from
    it when stored (:mod:`fer_utils.prediction_cache`), and stored there when made; a model is
    loaded only when some of its predictions are not stored."""
    options = {"copies": max(n, max_copies), "seed": seed}
    studies = {}
    for name, path in model_paths.items():
        model, studies[name] = None, {}
        for usage in usages:
            images, labels = prepared.arrays("test", usage)

            def predict(images=images, path=path):
                nonlocal model
                if model is None:
                    model = load_model(path)
                return tta_predictions(model, images, **options)

            predictions = predict() if cache is None else cached_predictions(
                cache, prediction_key(path, images, **options), predict)
            studies[name][usage] = tta_study(None, images, labels, n=n, max_copies=max_copies, seed=seed, usage=usage,
                                             predictions=predictions)
    return studies


def paired_differences(studies: dict, usage: str) -> list[dict]:
    """Accuracy of each model of ``{model: {usage: tta_study}}`` minus each later one's, on the
    same images of ``usage``, plain and with random TTA, with paired 95% intervals."""
    names = [name for name in studies if usage in studies[name]]
    rows = []
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            a, b = studies[first][usage], studies[second][usage]
            for variant in VARIANTS[:2]:
                gain = accuracy_gain(a["labels"], b["proba"][variant], a["proba"][variant])
                rows.append({"model": first, "minus": second, "usage": usage, "variant": variant,
                             "difference": gain["gain"], "difference_ci": gain["gain_ci"]})
    return rows


def difference_table(comparisons: dict) -> pd.DataFrame:
    """``{usage: paired_differences}`` as one row per pair of models and usage: each variant's
    difference and its paired 95% interval, in points."""
    table = {}
    for r in (r for rows in comparisons.values() for r in rows):
        row = table.setdefault((r["model"], r["minus"], r["usage"]), {})
        row[r["variant"]] = round(100 * r["difference"], 2)
        row[f"{r['variant']} 95% CI"] = [round(100 * v, 2) for v in r["difference_ci"]]
    index = pd.MultiIndex.from_tuples(list(table), names=["model", "minus", "usage"])
    return pd.DataFrame(list(table.values()), index=index)


def model_difference(labels, base_proba, proba, *, model: str, seed: int = 0) -> dict:
    """``proba``'s model minus ``model`` (whose probabilities are ``base_proba``) on the same
    images: the paired accuracy ``gain`` with its ``gain_ci`` and the ``recall_gain`` per class."""
    return {"model": model, **accuracy_gain(labels, base_proba, proba, seed=seed),
            "recall_gain": recall_gains(labels, base_proba, proba, seed=seed)}


def recall_gain_table(gains: dict[str, dict]) -> pd.DataFrame:
    """Per-class :func:`recall_gains` of several comparisons (``{label: gains}``) as one table:
    a row per class, columns ``(label, "gain" | "low" | "high")`` (the paired 95% interval)."""
    return pd.DataFrame({(label, part): {c: (g["gain"], *g["gain_ci"])[k] if g else np.nan for c, g in by_class.items()}
                         for label, by_class in gains.items() for k, part in enumerate(("gain", "low", "high"))})


def per_class_gain(study: dict) -> pd.DataFrame:
    """Change of recall per class from random and deterministic TTA, from one
    :func:`tta_study`, as a :func:`recall_gain_table`."""
    names = {"tta_random": "random TTA", "tta_deterministic": "deterministic TTA"}
    return recall_gain_table({label: study[variant]["recall_gain"] for variant, label in names.items()})


def confident_mistakes(labels, proba, n: int) -> np.ndarray:
    """Indices of the ``n`` misclassified images with the highest confidence, most confident first."""
    proba = np.asarray(proba)
    wrong = np.flatnonzero(proba.argmax(axis=1) != np.asarray(labels))
    return wrong[np.argsort(-proba[wrong].max(axis=1), kind="stable")][:n]
