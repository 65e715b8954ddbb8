"""The run's ``metrics.json`` and the report assembled from it: ``report.md`` and ``report.html``."""

from __future__ import annotations

from pathlib import Path

import markdown

from fer_utils.runs import DISCUSSION, FER_PACKAGE, MANIFEST, METRICS, PREPARED, TRAINING, read_json

#: The seed report's own numbers, shown beside every run's.
SEED_REPORT = {"validation accuracy": 0.628, "test accuracy with TTA": 0.6435}


def _pct(value) -> str:
    return f"{100 * value:.2f}%"


def _with_interval(value: float, interval, *, signed: bool = False) -> str:
    """``value`` and its 95% interval in percent (points when ``signed``)."""
    sign, unit = ("+", "") if signed else ("", "%")
    low, high = interval
    return f"{100 * value:{sign}.2f}{unit} [{100 * low:{sign}.1f}, {100 * high:{sign}.1f}]"


def _ci(result: dict, key: str) -> str:
    return _with_interval(result[key], result[f"{key}_ci"])


def _gain(result: dict) -> str:
    """A TTA variant's paired gain over plain, in points with its interval ("-" if not recorded)."""
    return _with_interval(result["gain"], result["gain_ci"], signed=True) if "gain" in result else "-"


def markdown_table(header, rows) -> list[str]:
    """A Markdown table, one string per line."""
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def build_markdown(run_dir) -> str:
    """The report's Markdown, from the run folder's JSON files and figures."""
    run = Path(run_dir)
    manifest = read_json(run / MANIFEST, {})
    metrics = read_json(run / METRICS, {})
    prepared = read_json((run / PREPARED).with_suffix(".json"), {})
    synthetic = manifest.get("data", {}).get("synthetic", prepared.get("synthetic", False))
    title = "FER report" + (" (synthetic data, not FER2013)" if synthetic else ": FER2013")
    lines = [f"# {title}", ""]
    if synthetic:
        lines += ["> **Synthetic data.** These results come from procedurally drawn faces and say "
                  "nothing about real facial expressions.", ""]
    data = manifest.get("data", {})
    lines += ["## Data", "",
              f"- source: `{Path(data.get('source', '?')).name}` (sha256 `{data.get('sha256', '?')[:16]}`)",
              f"- split sizes after filtering: {prepared.get('split_sizes', {})}",
              f"- blank images removed: {prepared.get('removed', {}).get('blank', {})}",
              f"- git commit: `{manifest.get('git_commit')}`; "
              f"profile: `{manifest.get('parameters', {}).get('profile')}`", ""]
    lines += ["## Models and training", ""]
    training = read_json(run / TRAINING, [])
    if training:
        lines += markdown_table(["model", "best val accuracy", "best epoch", "epochs", "minutes"],
                        [[t["model"], _pct(t["best val_accuracy"]), t["best epoch"], t["epochs"], t["minutes"]]
                         for t in training]) + [""]
    rows = []
    for model, splits in metrics.get("models", {}).items():
        for split, results in splits.items():
            rows.append([model, split, results["plain"]["n"], _ci(results["plain"], "accuracy"),
                         _ci(results["tta_random"], "accuracy"), _ci(results["tta_deterministic"], "accuracy"),
                         _gain(results["tta_random"]), _ci(results["plain"], "macro_f1"),
                         _ci(results["tta_random"], "macro_f1")])
    if rows:
        lines += ["## Results", "", "Accuracy and macro-F1 with bootstrap 95% confidence intervals; "
                  "TTA = test-time augmentation (random: the seed's method; deterministic: fixed views).", ""]
        lines += markdown_table(["model", "split", "images", "accuracy", "accuracy, random TTA",
                                 "accuracy, deterministic TTA",
                         "random TTA gain (paired)", "macro-F1", "macro-F1, random TTA"], rows) + [""]
    lines += ["### The seed report, for comparison", ""]
    lines += markdown_table(["seed report", "value"], [[k, _pct(v)] for k, v in SEED_REPORT.items()]) + [""]
    comparison = read_json(run / FER_PACKAGE)
    if comparison:
        lines += ["### Against the `fer` package's model", "",
                  "Same images, same metrics; TTA = the deterministic 10 views (`benchmarks/fer_package.py`).", ""]
        lines += markdown_table(["model", "split", "images", "accuracy", "accuracy, TTA", "TTA gain (paired)",
                                 "macro-F1",
                         "parameters", "images/s"],
                        [[name, r["usage"], r["n"], _ci(r, "accuracy"), _ci(r["tta"], "accuracy"), _gain(r["tta"]),
                          _ci(r, "macro_f1"), f"{r['parameters']:,}", f"{r['images_per_second']:.0f}"]
                         for name, r in comparison.items()])
        lines += [""]
    analysis = metrics.get("analysis")
    if analysis:
        lines += [f"## Errors of `{analysis['model']}` on {analysis['split']}", "",
                  f"Expected calibration error: {analysis['ece']:.3f}.", ""]
        lines += markdown_table(["true", "predicted", "images", "share of true class"],
                        [[p["true"], p["predicted"], p["images"], _pct(p["share of true class"])]
                         for p in analysis["most_confused"]]) + [""]
        lines += markdown_table(["class", "precision", "recall", "F1", "support"],
                        [[c, f"{v['precision']:.3f}", f"{v['recall']:.3f}", f"{v['f1']:.3f}", v["support"]]
                         for c, v in analysis["per_class"].items()]) + [""]
    if (run / DISCUSSION).exists():
        lines += ["## Discussion", "", (run / DISCUSSION).read_text().strip(), ""]
    figures = sorted((run / "figures").glob("*.png"))
    if figures:
        lines += ["## Figures", ""] + [f"- [{f.stem}](figures/{f.name}) ([PDF](figures/{f.stem}.pdf))"
                                       for f in figures] + [""]
    return "\n".join(lines)


def write_report(run_dir) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` (figures linked, not embedded) into the run folder."""
    run = Path(run_dir)
    text = build_markdown(run)
    md_path, html_path = run / "report.md", run / "report.html"
    md_path.write_text(text + "\n")
    body = markdown.markdown(text, extensions=["tables"])
    title = text.splitlines()[0].lstrip("# ")
    html_path.write_text(f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{title}</title>"
                         "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
                         "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em}</style>"
                         f"</head><body>\n{body}\n</body></html>\n")
    return md_path, html_path
