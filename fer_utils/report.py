"""The study's report, generated from a run folder: ``report.md`` and ``report.html`` with an
abstract, methods, results, the seed report side by side, every chapter's findings and
figures (inline, captioned, each with its reading), limitations and ethics."""

from __future__ import annotations

import html
from pathlib import Path

import markdown
import numpy as np

from fer_utils import CLASSES
from fer_utils.findings import CHAPTERS, chapter_findings, percent, with_interval
from fer_utils.runs import (
    DISCUSSION,
    FER_PACKAGE,
    FIGURES_DIR,
    MANIFEST,
    METRICS,
    PREPARED,
    REPORT_HTML,
    REPORT_MD,
    TRAIN_CONFIG,
    TRAINING,
    by_validation,
    model_dir,
    other_split_models,
    read_json,
)

#: The seed report's own numbers, shown beside every run's.
SEED_REPORT = {"validation accuracy": 0.628, "test accuracy with TTA": 0.6435}
#: The seed report's confusion matrix on its 7,066 test images with TTA (rows: true class, in
#: CLASSES order), as printed.
SEED_CONFUSION = [[507, 65, 53, 30, 180, 111, 14], [11, 90, 4, 1, 3, 2, 0], [161, 26, 346, 45, 162, 203, 75],
                  [31, 8, 20, 1569, 114, 46, 37], [47, 5, 26, 98, 914, 115, 11], [125, 30, 83, 44, 305, 541, 11],
                  [38, 7, 84, 38, 42, 8, 580]]

#: Figure name (its start) -> caption, and the reading: a fixed sentence, or the index of the
#: chapter's finding that reads it (a string naming a model picks that model's finding).
FIGURES = {
    "01_class_counts": ("Images per class and FER2013 usage.", 1),
    "01_samples": ("Random images of each class (the seed report's Figures 1 and 2).",
                   "Each image is a 48x48 greyscale face; compare the faces within a row as much as across rows."),
    "01_intensity": ("Pixel intensity distribution of each class.",
                     "Where the curves overlap, brightness alone does not tell the classes apart."),
    "01_mean_faces": ("The mean face of each class.",
                      "Where the mean faces differ is where the classes differ on average."),
    "01_blank_images": ("Images caught by the blank rule.", 2),
    "01_duplicates": ("Exact duplicate pairs, within Training and across usages, with their labels.", 3),
    "02_class_weights": ("Loss weight of each class (balanced weights on the train split).", 1),
    "02_augmentation_preview": ("Original training images and random augmentations of each.",
                                "Each copy should still show its expression: the augmentation rotates, shifts, "
                                "shears, zooms and mirrors the face."),
    "03_model_costs": ("Parameters and compute per image of each model.", 0),
    "03b_sweep_heatmap": ("Validation accuracy of each learning rate x batch size cell.", 0),
    "04_learning_curves": ("Loss and accuracy per epoch, train against validation (train only for a run on "
                           "all of Training).", "model"),
    "05_tta_gain_by_copies": ("Accuracy of random TTA against the number of copies averaged.", 0),
    "05_tta_gain_per_class": ("Change of recall per class from TTA.",
                              "Bars above zero are classes TTA helps; a change whose error bar (paired 95% "
                              "interval) crosses zero is within the noise."),
    "06_confusion_counts": ("Confusion matrix in counts (rows: true class).", 1),
    "06_confusion_normalized": ("Confusion matrix normalised by true class: recall on the diagonal.", 0),
    "06_per_class_scores": ("Precision, recall and F1 of each class.", 0),
    "06_beside": ("Recall per class of the analysed model minus that of the model beside it (the run of the seed "
                  "CNN most accurate on the study's validation split, when there is one), on the same images "
                  "(error bars: paired 95% intervals).", 3),
    "06_mistakes": ("The most confident mistakes, true -> predicted.",
                    "Read them as possible label noise where the face fits the predicted label better than "
                    "the given one."),
    "06_reliability": ("Reliability diagram: accuracy against confidence per bin.", 2),
    "06_gradcam": ("Grad-CAM maps of the predicted class.",
                   "Maps that land off the face (hair, background, image borders) mark predictions that rest "
                   "on something other than the expression."),
}

LIMITATIONS = [
    "FER2013's labels are noisy: one label per image from a web search, checked by hand; its authors report "
    "human accuracy near 65% (Goodfellow et al., 2013, arXiv 1307.0414).",
    "Training images with exact copies elsewhere in Training can fall on both sides of the train/validation "
    "split, which flatters validation accuracy by up to the share of validation images with such a copy "
    "(counts in the data chapter).",
    "A model is one run with one seed; where a recipe was run with several seeds, they show how far a seed "
    "alone moves a result. Differences between models smaller than the intervals shown are not findings.",
    "The seed report's test set (its 7,066-image test folder) is not this study's (see the test usages scored "
    "in the results); FER2013's PrivateTest half is kept out of every choice made here (`evaluate --usage "
    "PrivateTest` scores it on a copy of the data that has it).",
]
#: The SHA-256 of the FER2013 archive this project was built on (``../shared/data/fer2013.zip``),
#: whose Training images carry :data:`ARCHIVE_LIMITATION`.
PROJECT_ARCHIVE_SHA256 = "7ce893dabe9973d94db4bef173d5df60284afedc4a37721208e16ae8b9ef38b8"
ARCHIVE_LIMITATION = (
    "In the FER2013 archive used here the Training images are PNGs recovered from an upscaled copy (about 1.8 "
    "grey levels from the original JPEGs, as the test images are), so exact-pixel duplicate search cannot find "
    "Training copies of test images, and training and test images differ slightly in how they were stored.")

ETHICS = [
    "The seed report names the ethics of facial emotion recognition: biases of the training data "
    "against under-represented groups, privacy, and the need for transparent, responsible use.",
    "A face's expression is not the person's emotion: the model labels posed or spontaneous facial "
    "configurations, not inner states.",
    "FER2013 was scraped from web searches; its people did not consent to this use, and its demographics "
    "are not documented, so accuracy per group is unknown.",
    "Do not use these models to make decisions about people (hiring, policing, health, education); see "
    "the model card's intended use and cautions (`fer_utils/default_model/MODEL_CARD.md`).",
]


def _pct(value) -> str:
    """The report's percentages: two decimals."""
    return percent(value, digits=2)


def _with_interval(value: float, interval, *, signed: bool = False) -> str:
    """The report's values with intervals: two decimals."""
    return with_interval(value, interval, signed=signed, digits=2)


def _ci(result: dict, key: str) -> str:
    return _with_interval(result[key], result[f"{key}_ci"])


def _gain(result: dict) -> str:
    """A paired difference (``gain``, ``gain_ci``: TTA over plain, an ensemble over its best
    member) in points with its interval ("-" if not recorded)."""
    return _with_interval(result["gain"], result["gain_ci"], signed=True) if "gain" in result else "-"


def markdown_table(header, rows) -> list[str]:
    """A Markdown table, one string per line."""
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows] + [""]


class Run:
    """The files of a run folder that the report reads."""

    def __init__(self, run_dir):
        self.path = Path(run_dir)
        self.manifest = read_json(self.path / MANIFEST, {})
        self.metrics = read_json(self.path / METRICS, {})
        self.prepared = read_json((self.path / PREPARED).with_suffix(".json"), {})
        self.training = read_json(self.path / TRAINING, [])
        self.configs = {t["model"]: read_json(model_dir(self.path, t["model"]) / TRAIN_CONFIG, {})
                        for t in self.training}
        data = self.manifest.get("data", {})
        self.synthetic = data.get("synthetic", self.prepared.get("synthetic", False))
        self.figures = sorted((self.path / FIGURES_DIR).glob("*.png"))

    @property
    def parameters(self) -> dict:
        return self.manifest.get("parameters", {})

    def split_words(self) -> str:
        """The train/validation proportions, such as "80/20"."""
        val = self.parameters.get("val_fraction", 0.2)
        return f"{round(100 * (1 - val))}/{round(100 * val)}"

    def scores(self, usage: str = "PublicTest") -> dict:
        """``{model: {variant: score}}`` on one test usage."""
        return {name: by_usage[usage] for name, by_usage in self.metrics.get("models", {}).items()
                if usage in by_usage}

    def seed_model(self) -> str | None:
        """The study's run of the seed CNN under the seed's protocol (class-weighted), if any."""
        candidates = [name for name, c in self.configs.items() if c.get("model") == "seed_cnn"]
        weighted = [name for name in candidates if self.configs[name].get("class_weighted")]
        return (weighted or candidates or [None])[0]


def _abstract(run: Run) -> list[str]:
    scores = run.scores()
    kind = "synthetic faces (not FER2013)" if run.synthetic else "FER2013"
    adopted = len(run.parameters.get("adopt_runs") or {})
    adopted_words = "all" if adopted == len(run.training) else f"{adopted} of them"
    text = (f"This study rebuilds the seed report's facial emotion recognition pipeline on {kind}: "
            f"blank-image filtering, a train/validation split of Training ({run.split_words()}), "
            f"{'class weights, ' if any(c.get('class_weighted') for c in run.configs.values()) else ''}"
            f"augmentation, {len(run.training)} trained model(s)"
            f"{f' ({adopted_words} adopted from finished long runs)' if adopted else ''} "
            f"and test-time augmentation (TTA).")
    other_split = other_split_models(run.path, run.configs)
    comparable = [t for t in run.training if t["best val_accuracy"] is not None and t["model"] not in other_split]
    best = next((model for model in by_validation(comparable) if model in scores), None)
    if best:
        r = scores[best]
        on_split = " on the study's split" if other_split else ""
        text += (f" The model with the best validation accuracy{on_split}, `{best}`, reaches "
                 f"{_ci(r['plain'], 'accuracy')} on PublicTest "
                 f"({r['plain']['n']:,} images), {_ci(r['tta_random'], 'accuracy')} with random TTA "
                 f"(paired gain {_gain(r['tta_random'])} points).")
    analysed = run.metrics.get("analysis", {}).get("model")
    if analysed not in (None, best) and analysed in scores:
        r = scores[analysed]
        text += (f" The model analysed in chapter 06, `{analysed}`, reaches {_ci(r['plain'], 'accuracy')} plain "
                 f"and {_ci(r['tta_random'], 'accuracy')} with random TTA.")
    seed = run.seed_model()
    if seed in scores:
        text += (f" The seed CNN, rebuilt to its printed parameter counts, reaches "
                 f"{_ci(scores[seed]['tta_random'], 'accuracy')} with TTA, against the seed report's "
                 f"{_pct(SEED_REPORT['test accuracy with TTA'])} on its own test set.")
    return ["## Abstract", "", text + " Intervals are 95% bootstrap intervals over images.", ""]


def _augmentation(config: dict) -> str:
    aug = config.get("augmentation", {})
    parts = [f"{k} {v:g}" for k, v in aug.items() if not isinstance(v, bool) and v]
    return ", ".join(parts + (["flip"] if aug.get("flip") else [])) or "none"


def _run_names(models) -> str:
    """Saved models named by their run folders: ``runs/a/model.keras`` is `` `a` ``."""
    return ", ".join(f"`{Path(model).parent.name or model}`" for model in models)


def _recipe_rows(run: Run) -> list[list]:
    rows = []
    for t in run.training:
        c = run.configs.get(t["model"], {})
        decay = c.get("weight_decay", -1)
        optimizer = f"{c.get('optimizer', '?')} lr {c.get('learning_rate', 0):g}" + (
            f", wd {decay:g}" if decay and decay > 0 else "") + (
            f", from {_run_names([c['init_from']])}" if c.get("init_from") else "")
        schedule = c.get("schedule", "?") + (f" on {c.get('plateau_monitor')}" if c.get("schedule") == "plateau"
                                             else "")
        loss = "cross-entropy" + (f", smoothing {c['label_smoothing']:g}" if c.get("label_smoothing") else "") + (
            f", distilled {c['distill']:g} from {_run_names(c['teachers'])}" if c.get("teachers") else "")
        epochs = f"{t['epochs']} / {c.get('epochs', '?')}" + (
            ", all of Training" if t["best val_accuracy"] is None else "")
        rows.append([t["model"], c.get("model", "?"), optimizer, schedule, epochs,
                     c.get("batch_size", "?"), c.get("seed", "?"), loss, "yes" if c.get("class_weighted") else "no",
                     _augmentation(c), c.get("precision", "?"), t["minutes"]])
    return rows


def _all_training(run: Run) -> str:
    """The methods' sentence on the runs trained on all of Training ("" when none was)."""
    names = [f"`{t['model']}`" for t in run.training if t["best val_accuracy"] is None]
    if not names:
        return ""
    listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
    return (f" {listed} trained on all of Training, the validation images included, with a recipe chosen on "
            f"validation; {'it' if len(names) == 1 else 'each'} keeps its last epoch.")


def _finished_on(manifest: dict) -> str:
    """The commit the run finished on, where it differs from the one it started on."""
    last = manifest.get("git_commit_last")
    if not last:
        return ""
    if last == f"{manifest.get('git_commit')}-dirty":
        return " (tracked files outside the run folder were changed while it ran)"
    return f" (finished on `{last}`)"


def _methods(run: Run) -> list[str]:
    data = run.manifest.get("data", {})
    blank = ", ".join(f"{u} {n}" for u, n in run.prepared.get("removed", {}).get("blank", {}).items()) or "none"
    lines = ["## Data and methods", "",
             f"Data: `{Path(data.get('source', '?')).name}` (sha256 `{data.get('sha256', '?')[:16]}`); git commit "
             f"`{run.manifest.get('git_commit')}`{_finished_on(run.manifest)}; "
             f"profile `{run.parameters.get('profile')}`. "
             f"Images whose pixel standard deviation is below {run.parameters.get('max_std', 2.0):g} grey levels "
             f"are dropped as blank ({blank}); Training is split {run.split_words()} into train and validation, "
             f"stratified and seeded; models are chosen on validation only and scored on the test usages "
             f"({', '.join(run.prepared.get('test_usage_sizes', {})) or 'none'}).{_all_training(run)}", ""]
    sizes = {**run.prepared.get("split_sizes", {}), **run.prepared.get("test_usage_sizes", {})}
    if sizes:
        lines += markdown_table(["split", *(s if s in ("train", "val", "test") else f"test: {s}" for s in sizes)],
                                [["images", *(f"{n:,}" for n in sizes.values())]])
    if run.training:
        lines += ["Each model's recipe (epochs: run / planned; seed: of its split and initialisation, so a "
                  "run with another seed than the study's was validated on another split):", ""]
        lines += markdown_table(["run", "network", "optimizer", "schedule", "epochs", "batch", "seed", "loss",
                                 "class weights", "augmentation", "precision", "minutes"], _recipe_rows(run))
    return lines


def _results(run: Run) -> list[str]:
    rows = [[model, usage, r["plain"]["n"], _ci(r["plain"], "accuracy"), _ci(r["tta_random"], "accuracy"),
             _ci(r["tta_deterministic"], "accuracy"), _gain(r["tta_random"]), _ci(r["plain"], "macro_f1"),
             _ci(r["tta_random"], "macro_f1")]
            for model, by_usage in run.metrics.get("models", {}).items() for usage, r in by_usage.items()]
    lines = []
    if rows:
        lines += ["## Results", "", "Accuracy and macro-F1 with bootstrap 95% confidence intervals; "
                  "TTA = test-time augmentation (random: the seed's method; deterministic: fixed views).", ""]
        lines += markdown_table(["model", "usage", "images", "accuracy", "accuracy, random TTA",
                                 "accuracy, deterministic TTA", "random TTA gain (paired)", "macro-F1",
                                 "macro-F1, random TTA"], rows)
    differences = [row for rows in run.metrics.get("comparisons", {}).values() for row in rows]
    if differences:
        lines += ["### Models against each other", "",
                  "Accuracy of the first model minus the second's on the same images, with a paired bootstrap "
                  "95% interval: an interval that excludes zero is a difference beyond the test set's sampling "
                  "noise (not beyond seed-to-seed variation, which single runs cannot measure). Among many "
                  "pairs, about one interval in twenty excludes zero by chance alone.", ""]
        pairs = {}
        for r in differences:
            pairs.setdefault((r["model"], r["minus"], r["usage"]), {})[r["variant"]] = _with_interval(
                r["difference"], r["difference_ci"], signed=True)
        lines += markdown_table(["model", "minus", "usage", "plain (points)", "random TTA (points)"],
                                [[f"`{model}`", f"`{minus}`", usage, by_variant.get("plain", "-"),
                                  by_variant.get("tta_random", "-")]
                                 for (model, minus, usage), by_variant in pairs.items()])
    lines += _ensemble(run)
    comparison = read_json(run.path / FER_PACKAGE)
    if comparison:
        lines += ["### Against the `fer` package's model", "",
                  "Same images, same metrics, same TTA views (`benchmarks/fer_package.py`): the deterministic "
                  "10 views, and 10 random copies of the project's augmentation; our accuracy minus the `fer` "
                  "package's with a paired bootstrap 95% interval.", ""]
        tta_variants = ("tta", "tta_random")
        lines += markdown_table(["model", "usage", "images", "accuracy", "fixed-view TTA", "random TTA", "macro-F1",
                                 "minus `fer` (paired)", "minus `fer`, fixed-view TTA", "minus `fer`, random TTA",
                                 "parameters", "images/s"],
                                [[name, r["usage"], r["n"], _ci(r, "accuracy"),
                                  *(_ci(r[v], "accuracy") if v in r else "-" for v in tta_variants),
                                  _ci(r, "macro_f1"),
                                  *(_gain(r.get("minus_fer_package", {}).get(v, {})) for v in ("plain", *tta_variants)),
                                  f"{r['parameters']:,}", f"{r['images_per_second']:.0f}"]
                                 for name, r in comparison.items()])
        names = {"tta": "fixed-view", "tta_random": "random"}
        for name, r in comparison.items():
            if best := r.get("minus_fer_package", {}).get("best_tta"):
                lines += [f"Each with its more accurate TTA on these images ({name}: {names[best['ours']]}, `fer`: "
                          f"{names[best['theirs']]}): {_gain(best)} points.", ""]
    return lines


def _ensemble(run: Run) -> list[str]:
    ensemble = run.metrics.get("ensemble")
    if not ensemble:
        return []
    names = {"plain": "plain", "tta_random": "random TTA", "tta_deterministic": "deterministic TTA"}
    return ["### Ensemble", "",
            f"The mean of the probabilities of {', '.join(f'`{m}`' for m in ensemble['members'])}, scored like a "
            "model; its gain is over its most accurate member on the same images (paired 95% interval).", ""
            ] + markdown_table(["usage", "variant", "accuracy", "macro-F1", "gain over best member (paired)"],
                               [[usage, names[v], _ci(r, "accuracy"), _ci(r, "macro_f1"),
                                 _gain(r["gain_over_best_member"])]
                                for usage, by_variant in ensemble["scores"].items() for v, r in by_variant.items()])


def seed_recall() -> dict[str, float]:
    """Per-class recall of the seed report's printed confusion matrix."""
    confusion = np.asarray(SEED_CONFUSION)
    return {c: float(confusion[k, k] / confusion[k].sum()) for k, c in enumerate(CLASSES)}


def _seed_side_by_side(run: Run) -> list[str]:
    seed = run.seed_model()
    config, summary = run.configs.get(seed, {}), next((t for t in run.training if t["model"] == seed), {})
    test = run.prepared.get("test_usage_sizes", {}).get("PublicTest")
    tta_n = run.parameters.get("tta_n", 10)
    lines = ["## The seed report, side by side", "",
             f"The seed CNN of this study is `{seed}`." if seed else "This run trained no seed CNN.", ""]
    lines += markdown_table(["", "seed report", "this study"], [
        ["test set", "its test folder: 7,066 images after blank removal",
         f"PublicTest: {test:,} images" if test else "PublicTest: -"],
        ["train / validation", "23,040 / 5,766 (80/20 by the generator)",
         " / ".join(f"{n:,}" if isinstance(n, int) else "-"
                    for n in (run.prepared.get("split_sizes", {}).get(s) for s in ("train", "val")))],
        ["epochs", "not stated", f"{summary.get('epochs', '-')} (best {summary.get('best epoch', '-')})"],
        ["batch", "32", config.get("batch_size", "-")],
        ["class weights", "balanced", "balanced" if config.get("class_weighted") else "none"],
        ["TTA copies", "10 in its text; 15 prediction passes in its log", f"{tta_n} random copies"]])
    scores = run.scores().get(seed)
    rows = [["validation accuracy", _pct(SEED_REPORT["validation accuracy"]),
             _pct(summary["best val_accuracy"]) if summary.get("best val_accuracy") is not None else "-"],
            ["test accuracy with TTA", _pct(SEED_REPORT["test accuracy with TTA"]),
             _ci(scores["tta_random"], "accuracy") if scores else "-"],
            ["TTA gain", "about +2 points", f"{_gain(scores['tta_random'])} points" if scores else "-"]]
    lines += markdown_table(["result", "seed report", "this study (95% interval)"], rows)
    lines += _verdicts(run, seed, summary, scores)
    if scores:
        recall_ci = scores["tta_random"].get("recall_ci", {})
        lines += ["Recall per class with TTA: the seed's from its printed confusion matrix, this study's with "
                  "its Wilson 95% interval.", ""]
        lines += markdown_table(["class", "seed report", "this study"], [
            [c, _pct(s), _pct(scores["tta_random"]["per_class"][c]["recall"])
             + (f" [{100 * recall_ci[c][0]:.1f}, {100 * recall_ci[c][1]:.1f}]" if recall_ci.get(c) else "")]
            for c, s in seed_recall().items()])
    return lines


def tta_verdict(low: float, high: float) -> str:
    """Whether a TTA gain with paired interval [low, high] (fractions) replicates the seed's +2 points."""
    if low <= 0:
        return "not replicated here (the interval holds zero)."
    if high < 0.02:
        return "a gain, smaller than the seed's (its interval is below +2)."
    if low > 0.02:
        return "a gain, larger than the seed's (its interval is above +2)."
    return "replicated (the interval excludes zero and holds +2)."


def _verdicts(run: Run, seed: str | None, summary: dict, scores: dict | None) -> list[str]:
    """What replicated and what did not, each said from the numbers above."""
    lines = []
    if summary.get("best val_accuracy") is not None:  # None: trained without validation split
        gap = 100 * (summary["best val_accuracy"] - SEED_REPORT["validation accuracy"])
        lines.append(f"- Validation accuracy: {gap:+.1f} points from the seed's "
                     f"{_pct(SEED_REPORT['validation accuracy'])}; "
                     + ("within 2 points: replicated." if abs(gap) <= 2 else "not within 2 points."))
    if scores:
        lines.append(f"- TTA gain: {_gain(scores['tta_random'])} points against the seed's about +2: "
                     + tta_verdict(*scores["tta_random"]["gain_ci"]))
    config = run.configs.get(seed, {})
    twin = next((name for name, c in run.configs.items() if config.get("class_weighted") and
                 c.get("model") == "seed_cnn" and not c.get("class_weighted") and c.get("seed") == config.get("seed")),
                None)  # the same run without class weights (same seed, so same split)
    row = next((r for rows in run.metrics.get("comparisons", {}).values() for r in rows
                if twin and {r["model"], r["minus"]} == {seed, twin} and r["variant"] == "plain"
                and r["usage"] == "PublicTest"), None)
    if row:
        sign = 1 if row["model"] == seed else -1
        difference, (low, high) = sign * row["difference"], sorted(sign * v for v in row["difference_ci"])
        verdict = ("weighting helped" if low > 0 else "weighting cost accuracy" if high < 0
                   else "no difference beyond noise")
        lines.append(f"- Class weights (the seed's central claim): `{seed}` minus `{twin}` = "
                     f"{_with_interval(difference, [low, high], signed=True)} points of PublicTest accuracy: "
                     f"{verdict}. Macro-F1 of both is in the results table.")
    return lines + ([""] if lines else [])


def _reading(stem: str, spec, findings: list[str]) -> str:
    """The one-line reading of a figure: fixed text, or the chapter finding it points to."""
    if isinstance(spec, str) and spec != "model":
        return spec
    if spec == "model":
        model = stem.removeprefix("04_learning_curves_")
        return next((f for f in findings if f.startswith(f"`{model}`")), "")
    return findings[spec] if spec < len(findings) else ""


def _chapters(run: Run) -> list[str]:
    lines, number = ["## Chapters", ""], 0
    for chapter in CHAPTERS:
        findings = chapter_findings(run.path, chapter)
        order = list(FIGURES)
        figures = sorted((f for f in run.figures if f.stem.split("_")[0] == chapter),
                         key=lambda f: next((k for k, key in enumerate(order) if f.stem.startswith(key)), len(order)))
        if not findings and not figures:
            continue
        lines += [f"### {chapter} · {CHAPTERS[chapter]}", ""]
        lines += [f"- {f}" for f in findings] + ([""] if findings else [])
        for figure in figures:
            key = next((k for k in FIGURES if figure.stem.startswith(k)), None)
            caption, spec = FIGURES.get(key, (figure.stem.replace("_", " "), ""))
            if key and (part := figure.stem.removeprefix(key).lstrip("_")):  # one of several: say which
                caption = f"{caption.removesuffix('.')}: {f'`{part}`' if spec == 'model' else part}."
            number += 1
            reading = _reading(figure.stem, spec, findings)
            lines += [f"![{caption}]({FIGURES_DIR}/{figure.name})", "",
                      f"*Figure {number}: {caption}* {reading} ([PDF]({FIGURES_DIR}/{figure.stem}.pdf))", ""]
    return lines


def build_markdown(run_dir) -> str:
    """The report's Markdown, from the run folder's JSON files and figures."""
    run = Run(run_dir)
    title = "FER report" + (" (synthetic data, not FER2013)" if run.synthetic else ": FER2013")
    lines = [f"# {title}", ""]
    if run.synthetic:
        lines += ["> **Synthetic data.** These results come from procedurally drawn faces and say "
                  "nothing about real facial expressions.", ""]
    lines += _abstract(run) + _methods(run) + _results(run) + _seed_side_by_side(run) + _chapters(run)
    if (run.path / DISCUSSION).exists():
        lines += ["## Discussion", "", (run.path / DISCUSSION).read_text().strip(), ""]
    project_archive = run.manifest.get("data", {}).get("sha256") == PROJECT_ARCHIVE_SHA256
    limitations = LIMITATIONS + [ARCHIVE_LIMITATION] * project_archive
    lines += ["## Limitations", ""] + [f"- {item}" for item in limitations] + [""]
    lines += ["## Ethics", ""] + [f"- {item}" for item in ETHICS] + [""]
    return "\n".join(lines)


STYLE = ("body{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.4}"
         "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.2em .5em}"
         "img{max-width:100%;display:block;margin:1em auto}")


def write_report(run_dir) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` into the run folder; both refer to their figures
    by paths relative to it, so the folder renders the same wherever it is copied."""
    run = Path(run_dir)
    text = build_markdown(run)
    md_path, html_path = run / REPORT_MD, run / REPORT_HTML
    md_path.write_text(text + "\n")
    body = markdown.markdown(text, extensions=["tables"])
    title = html.escape(text.splitlines()[0].lstrip("# "))
    html_path.write_text(f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{title}</title>"
                         f"<style>{STYLE}</style></head><body>\n{body}\n</body></html>\n")
    return md_path, html_path
