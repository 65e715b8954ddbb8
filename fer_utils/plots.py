"""Figures of the report. Each function returns a Matplotlib figure with axis labels and a
title; :func:`save_fig` writes it as PNG and PDF into the run folder."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import MaxNLocator

from fer_utils import CLASSES
from fer_utils.runs import FIGURES_DIR, model_label

FIGURE_DPI = 150


def save_fig(fig, name: str, run_dir, *, synthetic: bool) -> None:
    """Write ``fig`` as ``figures/<name>.png`` and ``.pdf`` under ``run_dir``.

    Figures made from synthetic data get "(synthetic data)" in their title (the figure's, or
    its first panel's when the figure has none).
    """
    if synthetic:
        title = fig.get_suptitle()
        if not title and fig.axes and fig.axes[0].get_title():
            title = fig.axes[0].get_title()
            fig.axes[0].set_title("")
        fig.suptitle(f"{title} (synthetic data)".strip(), fontweight="bold")
    folder = Path(run_dir) / FIGURES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    for suffix in ("png", "pdf"):
        fig.savefig(folder / f"{name}.{suffix}", dpi=FIGURE_DPI, bbox_inches="tight",
                    metadata={"CreationDate": None} if suffix == "pdf" else None)


def class_counts(counts: pd.DataFrame):
    """Grouped bar chart of images per class (x) and usage (colour)."""
    fig, ax = plt.subplots(figsize=(8, 4))
    long = counts[list(CLASSES)].reset_index().melt(id_vars="usage", var_name="class", value_name="images")
    sns.barplot(long, x="class", y="images", hue="usage", ax=ax)
    ax.set(xlabel="class", ylabel="images", title="Images per class and usage")
    return fig


def image_grid(images: np.ndarray, titles=None, *, columns: int = 8, title: str = "", size: float = 1.2):
    """Grayscale images in a grid, each with an optional small title (room made for its lines);
    a ``None`` image leaves its panel empty."""
    rows = max(1, int(np.ceil(len(images) / columns)))
    lines = max((str(t).count("\n") + 1 for t in titles), default=0) if titles is not None else 0
    fig, axes = plt.subplots(rows, columns, figsize=(columns * size, rows * (size + 0.15 * lines) + 0.6),
                             squeeze=False, layout="constrained")
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < len(images) and images[k] is not None:
            ax.imshow(images[k], cmap="gray", vmin=0, vmax=255)
            if titles is not None:
                ax.set_title(titles[k], fontsize=7)
    fig.suptitle(title)
    return fig


def prediction_captions(labels, proba) -> list[str]:
    """"true -> predicted\\nconfidence" under each image of a grid of predictions."""
    proba = np.asarray(proba)
    return [f"{CLASSES[t]} -> {CLASSES[p.argmax()]}\n{p.max():.0%}" for t, p in zip(labels, proba)]


def duplicate_pairs(dataset, pairs: pd.DataFrame, title: str):
    """Each pair of :func:`fer_utils.quality.duplicate_pairs` side by side, captioned with its
    usage and label; the second of a pair whose labels differ says so."""
    index = pairs[["first", "second"]].to_numpy().ravel()
    captions = [f"pair {k // 2 + 1}: {caption}" for k, caption in enumerate(dataset.captions(index))]
    for k, same in enumerate(pairs["same_label"]):
        captions[2 * k + 1] += "" if same else " (differs)"
    return image_grid(dataset.images[index], captions, title=title)


def samples_per_class(images, labels, *, per_class: int = 8, seed: int = 0, title: str = "Sample images per class"):
    """A row of random images for every class (the seed report's Figures 1 and 2)."""
    rng = np.random.default_rng(seed)
    picked, names = [], []
    for label, name in enumerate(CLASSES):
        index = np.flatnonzero(labels == label)
        chosen = rng.choice(index, size=min(per_class, len(index)), replace=False)
        picked += [images[i] for i in chosen] + [None] * (per_class - len(chosen))
        names += [name] * per_class
    return image_grid(picked, names, columns=per_class, title=title)


def intensity_histograms(images, labels):
    """Pixel intensity distribution of every class (density, one line each)."""
    fig, ax = plt.subplots(figsize=(8, 4))
    bins = np.arange(0, 257, 8)
    for label, name in enumerate(CLASSES):
        values = images[labels == label].ravel()
        if values.size:
            hist, _ = np.histogram(values, bins=bins, density=True)
            ax.plot(bins[:-1] + 4, hist, label=name)
    ax.set(xlabel="pixel intensity (0-255)", ylabel="density", title="Pixel intensity per class")
    ax.legend(ncol=4, fontsize=8)
    return fig


def mean_faces(images, labels):
    """The mean image of every class."""
    means = [images[labels == k].mean(axis=0) if (labels == k).any() else np.zeros(images.shape[1:])
             for k in range(len(CLASSES))]
    return image_grid(np.stack(means), list(CLASSES), columns=len(CLASSES), title="Mean face per class", size=1.5)


def augmentation_preview(images, augmentation, *, copies: int = 7):
    """Each row: an original image, then ``copies`` random augmentations of it."""
    batch = np.repeat(images[:, None], copies, axis=1).reshape(-1, *images.shape[1:], 1).astype("float32")
    augmented = np.asarray(augmentation(batch, training=True)).reshape(len(images), copies, *images.shape[1:])
    tiles = np.concatenate([images[:, None].astype("float32"), augmented], axis=1).reshape(-1, *images.shape[1:])
    titles = (["original"] + [f"augmented {k + 1}" for k in range(copies)]) * len(images)
    return image_grid(tiles, titles, columns=copies + 1, title="Augmentation preview (seed parameters)")


def class_weight_bars(weights: dict[str, float]):
    """Bar chart of the loss weight of each class."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar(list(weights), list(weights.values()), color="tab:purple")
    ax.axhline(1.0, color="grey", linestyle="--", linewidth=1)
    ax.set(xlabel="class", ylabel="weight", title='Class weights (compute_class_weight "balanced")')
    return fig


def _binomial_halfwidth(p, n):
    """Half-width of the normal-approximation 95% interval of a proportion ``p`` of ``n`` trials."""
    return 1.96 * np.sqrt(np.asarray(p) * (1 - np.asarray(p)) / max(n, 1))


def _not_run(done: int, planned: int, state: dict) -> str:
    """The legend of the epochs a run did not train: stopped early (and why), or not run yet."""
    reason = f"\n({state['stop_reason']})" if state.get("stop_reason") else ""
    if state.get("state") == "early_stopped":
        return f"not run: early stopping after {done} of {planned}{reason}"
    if state.get("state") == "time_budget":
        return f"not run: time budget reached after {done} of {planned}{reason}"
    return f"planned, not run yet ({done} of {planned})"


def learning_curves(history: pd.DataFrame, config: dict | None = None, title: str = "Learning curves",
                    state: dict | None = None):
    """Loss and accuracy per epoch, train against validation (train only for a run without
    validation split): the best validation epoch marked, chance accuracy (1/7) drawn, the x
    axis spanning the planned epochs (the epochs not run shaded, with why: the run's
    ``state``, e.g. early stopping), and the losses
    labelled with what they are (the training loss is the one optimised: class-weighted,
    distilled and smoothed when the run was; the validation loss is plain cross-entropy)."""
    config, state = config or {}, state or {}
    if history.empty:
        raise ValueError("learning curves need at least one epoch; the history is empty")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    epochs = history["epoch"] + 1
    validated = "val_accuracy" in history
    planned = max(int(config.get("epochs", len(epochs))), len(epochs))
    optimised = ", ".join(k for k, on in (("class-weighted", config.get("class_weighted")),
                                          (f"distilled {config.get('distill', 0):g}", config.get("distill")),
                                          (f"smoothing {config.get('label_smoothing', 0):g}",
                                           config.get("label_smoothing"))) if on)
    smoothing = f", smoothing {config['label_smoothing']:g}" if config.get("label_smoothing") else ""
    labels = {"loss": (f"train ({optimised})" if optimised else "train", f"validation (unweighted{smoothing})"),
              "accuracy": ("train (augmented images)", "validation")}
    marker = "o" if len(epochs) <= 20 else None
    for ax, metric in zip(axes, ("loss", "accuracy")):
        ax.plot(epochs, history[metric], marker=marker, label=labels[metric][0])
        if validated:
            best = epochs[history["val_accuracy"].idxmax()]
            ax.plot(epochs, history[f"val_{metric}"], marker=marker, label=labels[metric][1])
            ax.axvline(best, color="grey", linestyle="--", label=f"best epoch ({best})")
        if len(epochs) < planned:
            ax.axvspan(len(epochs) + 0.5, planned, color="0.9", label=_not_run(len(epochs), planned, state))
        ax.set(xlabel="epoch", ylabel=metric, title=f"{metric.capitalize()} per epoch", xlim=(0.5, planned + 0.5))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[1].axhline(1 / len(CLASSES), color="black", linestyle=":", label="chance (1/7)")
    for ax in axes:  # below the axes: inside, they hid the first epochs
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2)
    notes = [f"continues {model_label(config['init_from'])}"] if config.get("init_from") else []
    notes += [] if validated else ["no validation split: all of Training trained on"]
    fig.suptitle(f"{title} ({'; '.join(notes)})" if notes else title)
    return fig


def heatmap(table: pd.DataFrame, *, title: str, xlabel: str, ylabel: str, fmt: str = ".3f", cmap="viridis",
            scale: str = ""):
    """Annotated heatmap of a 2-D table; ``scale`` labels its colour bar."""
    fig, ax = plt.subplots(figsize=(1.2 * table.shape[1] + 3, 0.7 * table.shape[0] + 2))
    sns.heatmap(table, annot=True, fmt=fmt, cmap=cmap, ax=ax, cbar_kws={"label": scale})
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    return fig


#: The sweep heatmap's colour scale spans at least this many points above the baseline, so
#: that cells a point or two apart (about their 95% interval) look alike.
SWEEP_SCALE_POINTS = 10


def sweep_heatmap(grid: pd.DataFrame, val_labels, chosen: dict, title: str):
    """Validation accuracy of each learning rate x batch size cell with its 95% interval; the
    colour scale starts at the majority-class baseline (so cells within noise of each other
    look alike, and a cell at the baseline learned nothing), the chosen cell is outlined."""
    labels = np.asarray(val_labels)
    baseline = np.bincount(labels, minlength=len(CLASSES)).max() / len(labels)
    table = grid.pivot(index="learning_rate", columns="batch_size", values="val_accuracy")
    notes = table.map(lambda p: f"{100 * p:.1f}%\n±{100 * _binomial_halfwidth(p, len(labels)):.1f}")
    fig, ax = plt.subplots(figsize=(1.4 * table.shape[1] + 3.5, 0.8 * table.shape[0] + 2))
    sns.heatmap(100 * table, annot=notes, fmt="", cmap="viridis", vmin=100 * baseline,
                vmax=max(100 * np.nanmax(table.to_numpy()), 100 * baseline + SWEEP_SCALE_POINTS), ax=ax,
                cbar_kws={"label": f"validation accuracy (%); scale starts at the majority-class "
                                   f"baseline {100 * baseline:.1f}%"})
    row = list(table.index).index(chosen["learning_rate"])
    column = list(table.columns).index(chosen["batch_size"])
    ax.add_patch(plt.Rectangle((column, row), 1, 1, fill=False, edgecolor="red", linewidth=2.5))
    ax.set(title=title, xlabel="batch size (red: the chosen setting)", ylabel="learning rate")
    return fig


def model_costs(costs: pd.DataFrame):
    """Parameters and MFLOPs per image of each model, side by side."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    (costs["trainable"] / 1e6).plot.bar(ax=axes[0], color="tab:blue")
    axes[0].set(xlabel="model", ylabel="trainable parameters (millions)", title="Parameters")
    costs["MFLOPs per image"].plot.bar(ax=axes[1], color="tab:orange")
    axes[1].set(xlabel="model", ylabel="MFLOPs per 48x48 image", title="Compute per image")
    for ax in axes:
        ax.tick_params(axis="x", rotation=0)
    return fig


def confusion_heatmap(confusion, *, normalized: bool, title: str):
    """Confusion matrix heatmap, true class as rows."""
    table = pd.DataFrame(confusion, index=CLASSES, columns=CLASSES)
    return heatmap(table, title=title, xlabel="predicted class", ylabel="true class",
                   fmt=".2f" if normalized else "d", cmap="Blues",
                   scale="share of the true class" if normalized else "images")


def per_class_scores(table: pd.DataFrame, title: str = "Precision, recall and F1 per class"):
    """Grouped bars of precision, recall and F1 for every class."""
    fig, ax = plt.subplots(figsize=(9, 4))
    table[["precision", "recall", "f1"]].plot.bar(ax=ax, rot=0)
    ax.set(xlabel="class", ylabel="score", ylim=(0, 1), title=title)
    return fig


def tta_gain_curve(curves: dict[str, np.ndarray], plain: dict[str, float], images: int, title: str):
    """Accuracy of random TTA against the number of copies: one small panel per model, on shared
    axes so that the models compare across panels (nine curves on one axes could not be told
    apart), each with its 95% interval band and its plain accuracy dashed."""
    columns = min(len(curves), 4)
    rows = -(-len(curves) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.9 * columns + 0.6, 2.3 * rows + 1.2), sharex=True,
                             sharey=True, squeeze=False, layout="constrained")
    for ax, (name, accuracy) in zip(axes.flat, curves.items()):
        accuracy = 100 * np.asarray(accuracy)
        copies = np.arange(1, len(accuracy) + 1)
        band = 100 * _binomial_halfwidth(accuracy / 100, images)
        ax.plot(copies, accuracy, marker="o", markersize=3, label="random TTA")
        ax.fill_between(copies, accuracy - band, accuracy + band, alpha=0.2, label="its 95% interval (unpaired)")
        ax.axhline(100 * plain[name], color="black", linestyle="--", linewidth=1, label="plain")
        ax.set_title(name, fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for index in range(len(curves), rows * columns):  # empty panels: the one above gets the x axis
        axes.flat[index].set_visible(False)
        axes.flat[index - columns].xaxis.set_tick_params(labelbottom=True)
        axes.flat[index - columns].set_xlabel("copies averaged (N)")
    for ax in axes[-1]:
        ax.set_xlabel("copies averaged (N)")
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy (%)")
    fig.legend(*axes.flat[0].get_legend_handles_labels(), loc="outside lower center", ncol=3, fontsize=8,
               title=f"{images:,} images; the paired gains are in the table", title_fontsize=8)
    fig.suptitle(title)
    return fig


def per_class_gain(gains: pd.DataFrame, title: str):
    """Difference of recall per class (points) of each comparison (a TTA variant against plain
    predictions, or one model against another), with paired 95% intervals: ``gains`` is a
    :func:`fer_utils.scoring.recall_gain_table`, a row per class and columns
    ``(comparison, "gain" | "low" | "high")``."""
    variants = list(dict.fromkeys(gains.columns.get_level_values(0)))
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / len(variants)
    x = np.arange(len(gains))
    for k, variant in enumerate(variants):
        part = 100 * gains[variant]
        ax.bar(x + (k - (len(variants) - 1) / 2) * width, part["gain"], width, label=variant,
               yerr=[part["gain"] - part["low"], part["high"] - part["gain"]], capsize=3)
    ax.axhline(0, color="grey", linewidth=1)
    ax.set_xticks(x, gains.index)
    ax.set(xlabel="class", ylabel="recall difference (points)", title=title)
    ax.legend(title="error bars: paired 95% interval", title_fontsize=8, fontsize=8)
    return fig


def reliability_diagram(bins: dict[str, pd.DataFrame], ece: dict[str, float], title: str):
    """Accuracy against confidence per bin for each variant (plain, TTA...), the diagonal being
    perfect calibration, and the images per bin underneath."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(5.5, 6.5), sharex=True, height_ratios=[3, 1])
    top.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    width = 0.8 / (len(bins) * 10)
    for k, (name, table) in enumerate(bins.items()):
        top.plot(table["confidence"], table["accuracy"], marker="o", color=f"C{k}",
                 label=f"{name} (ECE {ece[name]:.3f})")
        bottom.bar(table["confidence"] + (k - (len(bins) - 1) / 2) * width, table["images"], width,
                   color=f"C{k}", label=name)
    top.set(ylabel="accuracy", xlim=(0, 1), ylim=(0, 1), title=title)
    top.legend(fontsize=8)
    bottom.set(xlabel="confidence of the predicted class", ylabel="images per bin")
    return fig


def gradcam_grid(images, heatmaps, titles, title: str):
    """Each greyscale image with its Grad-CAM map laid over it, and the map's colour bar; as
    many columns (4 to 8) as fill every row when such a number exists."""
    if not len(images):
        raise ValueError("Grad-CAM grid: no images to draw")
    columns = next((c for c in range(8, 3, -1) if len(images) % c == 0), min(6, len(images)))
    rows = max(1, int(np.ceil(len(images) / columns)))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.6 + 1, rows * 1.9 + 0.5), squeeze=False,
                             layout="constrained")
    overlay = None
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < len(images):
            ax.imshow(images[k], cmap="gray", vmin=0, vmax=255)
            overlay = ax.imshow(heatmaps[k], cmap="jet", alpha=0.4, vmin=0, vmax=1)
            ax.set_title(titles[k], fontsize=7)
    if overlay is not None:
        fig.colorbar(overlay, ax=axes, shrink=0.7, label="Grad-CAM: evidence for the predicted class (0-1)")
    fig.suptitle(title)
    return fig
