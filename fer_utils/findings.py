"""What each chapter of the study found, in sentences generated from the run folder's files
(never typed by hand): the last cell of every notebook and the readings of the report."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fer_utils import CLASSES
from fer_utils.runs import METRICS, PREPARED, SWEEP, TRAINING, model_dir, read_history, read_json

#: The chapters, in the order of the notebooks, and their titles.
CHAPTERS = {"01": "Exploratory data analysis", "02": "Preprocessing", "03": "Models",
            "03b": "Learning rate x batch size", "04": "Training", "05": "Test-time augmentation",
            "06": "Confusion analysis"}


def percent(value: float, digits: int = 1) -> str:
    """A proportion in percent: ``percent(0.6127)`` is ``"61.3%"``."""
    return f"{100 * value:.{digits}f}%"


def with_interval(value: float, interval, *, signed: bool = False, digits: int = 1) -> str:
    """``value`` in percent with its 95% interval (one decimal), as points with a sign when
    ``signed`` (a difference): ``"61.3% [60.1, 62.5]"``, ``"+1.4 [+0.4, +2.4]"``."""
    sign, unit = ("+", "") if signed else ("", "%")
    low, high = interval
    return f"{100 * value:{sign}.{digits}f}{unit} [{100 * low:{sign}.1f}, {100 * high:{sign}.1f}]"


def _interval(result: dict, key: str) -> str:
    return with_interval(result[key], result[f"{key}_ci"])


def _difference(result: dict) -> str:
    """``+g [low, high] points``: a paired difference (``gain``, ``gain_ci``) in points."""
    return f"{with_interval(result['gain'], result['gain_ci'], signed=True)} points"


def _points(result: dict) -> str:
    """`` (+g [low, high] points)``: a TTA variant's paired gain, or nothing when not recorded."""
    return f" ({_difference(result)})" if "gain" in result else ""


def _eda(run: Path, metrics: dict) -> list[str]:
    data = metrics.get("data")
    if not data:
        return []
    counts = data["counts"]
    training = counts.get("Training") or next(iter(counts.values()))
    per_class = {c: training[c] for c in CLASSES}
    big, small = max(per_class, key=per_class.get), min(per_class, key=per_class.get)
    duplicates = data["duplicates"]
    across = sum(n for pair, n in duplicates["across"].items() if pair.startswith("Training/"))
    usages = ", ".join(f"{u} {c['total']:,}" for u, c in counts.items())
    return [f"{sum(c['total'] for c in counts.values()):,} images: {usages}.",
            f"Training's largest class, {big}, has {per_class[big] / max(per_class[small], 1):.1f} times the "
            f"images of its smallest, {small} ({per_class[big]:,} against {per_class[small]:,}).",
            f"{sum(data['blank'].values())} blank images "
            f"({', '.join(f'{u} {n}' for u, n in data['blank'].items())}), dropped before training.",
            f"{duplicates['groups']:,} groups of exact duplicates ({duplicates['images']:,} images); "
            f"{duplicates['within'].get('Training', 0):,} Training images have a copy within Training, and "
            f"{across:,} groups span Training and a test usage"
            + (f"; in {duplicates['conflicting_labels']:,} groups the copies carry different labels (label noise)."
               if duplicates.get("conflicting_labels") else ".")]


def _preprocessing(run: Path, metrics: dict) -> list[str]:
    prepared = read_json((run / PREPARED).with_suffix(".json"))
    if not prepared:
        return []
    sizes, weights = prepared["split_sizes"], prepared["class_weights"]
    heavy, light = max(weights, key=weights.get), min(weights, key=weights.get)
    tests = ", ".join(f"{u} {n:,}" for u, n in prepared.get("test_usage_sizes", {}).items())
    copies = prepared.get("val_copies_in_train", 0)
    leak = ([f"{copies:,} validation images ({percent(copies / sizes['val'])}) have an exact copy in the train "
             f"split (FER2013's duplicates): validation accuracy can overstate accuracy on unseen faces by up to "
             f"{100 * copies / sizes['val']:.1f} points."] if copies else [])
    return [f"Splits after filtering: train {sizes.get('train', 0):,}, validation {sizes.get('val', 0):,}, "
            f"test {sizes.get('test', 0):,} ({tests}).",
            f"Class weights range from {weights[light]:.2f} ({light}) to {weights[heavy]:.2f} ({heavy}).", *leak]


def _models(run: Path, metrics: dict) -> list[str]:
    costs = metrics.get("model_costs", {})
    return [f"`{name}`: {c['trainable'] / 1e6:.2f} M trainable parameters, {c['MFLOPs per image']:.0f} MFLOPs "
            f"per image." for name, c in costs.items()]


def _sweep(run: Path, metrics: dict) -> list[str]:
    sweep = read_json(run / SWEEP)
    if not sweep:
        return []
    accuracy = [cell["val_accuracy"] for cell in sweep["grid"]]
    chosen, best = sweep["chosen"], max(accuracy)
    images = read_json((run / PREPARED).with_suffix(".json"), {}).get("split_sizes", {}).get("val", 0)
    halfwidth = 1.96 * np.sqrt(best * (1 - best) / images) if images else 0.0
    close = sum(a >= best - halfwidth for a in accuracy) - 1
    return [f"{len(accuracy)} cells of `{sweep['model']}`: validation accuracy from {percent(min(accuracy))} to "
            f"{percent(best)}; the best cell is learning rate {chosen['learning_rate']:g} with batch "
            f"{chosen['batch_size']}" + (f", but {close} other cell(s) lie within its 95% interval "
                                         f"(±{100 * halfwidth:.1f} points): the grid does not separate them."
                                         if close else ".")]


def _training(run: Path, metrics: dict) -> list[str]:
    lines = []
    for row in read_json(run / TRAINING, []):
        if row["best val_accuracy"] is None:
            lines.append(f"`{row['model']}`: no validation split (trained on all of Training); the model of its "
                         f"last epoch, after {row['epochs']} epochs ({row['minutes']:.0f} minutes).")
            continue
        history = read_history(model_dir(run, row["model"]))
        line = (f"`{row['model']}`: best validation accuracy {percent(row['best val_accuracy'])} at epoch "
                f"{row['best epoch']} of {row['epochs']} ({row['minutes']:.0f} minutes)")
        if len(history) >= row["best epoch"]:
            line += f"; training accuracy {percent(history['accuracy'].iloc[row['best epoch'] - 1])} at that epoch"
        lines.append(line + ".")
    return lines


def _tta(run: Path, metrics: dict) -> list[str]:
    return [f"`{name}` on {usage}: {_interval(r['plain'], 'accuracy')} plain, "
            f"{_interval(r['tta_random'], 'accuracy')} with random TTA{_points(r['tta_random'])}, "
            f"{_interval(r['tta_deterministic'], 'accuracy')} with deterministic TTA"
            f"{_points(r['tta_deterministic'])}."
            for name, by_usage in metrics.get("models", {}).items()
            for usage, r in by_usage.items()] + _ensemble(metrics)


def _ensemble(metrics: dict) -> list[str]:
    ensemble = metrics.get("ensemble")
    if not ensemble:
        return []
    members = ", ".join(f"`{m}`" for m in ensemble["members"])
    return [f"The ensemble of {members} on {usage}: {_interval(r['plain'], 'accuracy')} plain, "
            f"{_interval(r['tta_random'], 'accuracy')} with random TTA; over its best member "
            f"{_difference(r['plain']['gain_over_best_member'])} plain, "
            f"{_difference(r['tta_random']['gain_over_best_member'])} with random TTA."
            for usage, r in ensemble["scores"].items()]


def _analysis(run: Path, metrics: dict) -> list[str]:
    analysis = metrics.get("analysis")
    if not analysis:
        return []
    recall = {c: v["recall"] for c, v in analysis["per_class"].items() if v["support"]}
    worst, best = min(recall, key=recall.get), max(recall, key=recall.get)
    top = analysis["most_confused"][0]
    confusion = (f"The most frequent confusion: {top['true']} taken for {top['predicted']} "
                 f"({top['images']} images, {percent(top['share of true class'])} of {top['true']})."
                 if top["images"] else "No image was misclassified.")
    return [f"`{analysis['model']}` on {analysis['split']}: recall from {percent(recall[worst])} ({worst}) to "
            f"{percent(recall[best])} ({best}).", confusion,
            f"Expected calibration error {analysis['ece']:.3f}"
            + (f" plain, {analysis['ece_tta']:.3f} with random TTA." if "ece_tta" in analysis else ".")
            ] + _beside(analysis)


def _beside(analysis: dict) -> list[str]:
    """The analysed model minus the model beside it: accuracy, and the range of the per-class
    recall differences, with paired intervals."""
    beside = analysis.get("beside")
    if not beside:
        return []
    line = f"`{analysis['model']}` minus `{beside['model']}`, on the same images: {_difference(beside)} of accuracy"
    gains = {c: g for c, g in beside["recall_gain"].items() if g}
    most = max(gains, key=lambda c: gains[c]["gain"], default=None)
    least = min(gains, key=lambda c: gains[c]["gain"], default=None)
    if most is not None and gains[most]["gain"] != gains[least]["gain"]:
        line += (f"; recall per class from {_difference(gains[most])} ({most}) to {_difference(gains[least])} "
                 f"({least})")
    return [line + "."]


READERS = dict(zip(CHAPTERS, (_eda, _preprocessing, _models, _sweep, _training, _tta, _analysis)))


def chapter_findings(run_dir, chapter: str) -> list[str]:
    """The findings of one chapter (``"01"`` ... ``"06"``) as sentences; empty when the
    chapter's files are not there yet."""
    if chapter not in READERS:
        raise ValueError(f"unknown chapter {chapter!r}; chapters: {', '.join(CHAPTERS)}")
    run = Path(run_dir)
    return READERS[chapter](run, read_json(run / METRICS, {}))


def findings_markdown(run_dir, chapter: str) -> str:
    """:func:`chapter_findings` as a Markdown list under a "Findings" heading."""
    lines = chapter_findings(run_dir, chapter) or ["(nothing recorded yet for this chapter)"]
    return "**Findings** (generated from this run's files)\n\n" + "\n".join(f"- {line}" for line in lines)
