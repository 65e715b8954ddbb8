import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from fer_utils import CLASSES, plots
from fer_utils.data import Dataset

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
MAX_CELL_LINES = 8


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_prediction_captions_say_true_predicted_and_confidence():
    proba = np.full((2, 7), 0.01)
    proba[0, 3], proba[1, 6] = 0.94, 0.94
    assert plots.prediction_captions([3, 0], proba) == ["happy -> happy\n94%", "angry -> surprise\n94%"]


def test_duplicate_pairs_figure_captions_usage_and_class_and_flags_label_disagreement():
    images = np.zeros((4, 48, 48), np.uint8)
    dataset = Dataset(images, np.array([0, 0, 1, 2]), np.array(["Training", "PublicTest", "Training", "Training"]),
                      np.array(["a", "b", "c", "d"]), "mem", "0" * 64)
    pairs = pd.DataFrame({"first": [0, 2], "second": [1, 3], "within_training": [False, True],
                          "same_label": [True, False]})
    fig = plots.duplicate_pairs(dataset, pairs, title="Duplicate pairs")
    titles = [ax.get_title() for ax in fig.axes if ax.images]
    assert titles == ["pair 1: Training\nangry", "pair 1: PublicTest\nangry", "pair 2: Training\ndisgust",
                      "pair 2: Training\nfear (differs)"]
    assert fig.get_suptitle() == "Duplicate pairs"


def test_every_notebook_code_cell_is_short():
    """Notebooks are thin: each code cell calls fer_utils and shows the result (the parameters
    cell, one assignment per line that papermill overrides, holds no logic and is not counted)."""
    long = [(path.name, k, len("".join(cell["source"]).strip().splitlines()))
            for path in sorted(NOTEBOOKS.glob("*.ipynb"))
            for k, cell in enumerate(json.loads(path.read_text())["cells"])
            if cell["cell_type"] == "code" and "parameters" not in cell["metadata"].get("tags", [])]
    assert [c for c in long if c[2] > MAX_CELL_LINES] == [] and len(long) > 40


def test_gradcam_grid_fills_its_rows_and_has_a_colour_bar():
    images, maps = np.zeros((14, 48, 48)), np.random.default_rng(0).random((14, 48, 48))
    fig = plots.gradcam_grid(images, maps, [f"t{k}" for k in range(14)], title="Grad-CAM")
    panels = [ax for ax in fig.axes if ax.images and ax.get_title()]
    assert len(panels) == 14 and len([ax for ax in fig.axes if ax.get_title() == ""]) == 1  # the colour bar
    assert fig.axes[-1].get_ylabel().startswith("Grad-CAM: evidence")
    assert len({ax.get_position().x0 for ax in panels}) == 7
    with pytest.raises(ValueError, match="Grad-CAM grid: no images to draw"):
        plots.gradcam_grid(images[:0], maps[:0], [], title="Grad-CAM")


def test_save_fig_marks_synthetic_figures_in_their_title(tmp_path):
    fig, ax = plt.subplots()
    ax.set_title("Accuracy")
    plots.save_fig(fig, "a", tmp_path, synthetic=True)
    assert fig.get_suptitle() == "Accuracy (synthetic data)" and ax.get_title() == ""
    assert (tmp_path / "figures" / "a.png").stat().st_size > 0 and (tmp_path / "figures" / "a.pdf").exists()


def test_learning_curves_say_which_loss_is_which_and_show_chance_and_planned_epochs():
    history = pd.DataFrame({"epoch": [0, 1, 2], "loss": [2.0, 1.5, 1.2], "val_loss": [1.9, 1.6, 1.5],
                            "accuracy": [0.2, 0.4, 0.5], "val_accuracy": [0.3, 0.45, 0.44]})
    fig = plots.learning_curves(history, {"epochs": 10, "class_weighted": True, "label_smoothing": 0.1})
    loss, accuracy = fig.axes
    labels = [t.get_text() for t in loss.get_legend().get_texts()]
    assert labels[:2] == ["train (class-weighted, smoothing 0.1)", "validation (unweighted, smoothing 0.1)"]
    assert "best epoch (2)" in labels and "planned, not run yet (3 of 10)" in labels
    assert "chance (1/7)" in [t.get_text() for t in accuracy.get_legend().get_texts()]
    assert accuracy.get_xlim() == (0.5, 10.5)
    plain = [t.get_text() for t in plots.learning_curves(history).axes[0].get_legend().get_texts()]
    assert plain[0] == "train" and not any("planned" in label for label in plain)
    with pytest.raises(ValueError, match="at least one epoch; the history is empty"):
        plots.learning_curves(history.iloc[:0])
    state = {"state": "early_stopped", "stop_reason": "no better val_accuracy in 1 epochs"}
    stopped = plots.learning_curves(history, {"epochs": 10}, state=state)
    assert ("not run: early stopping after 3 of 10\n(no better val_accuracy in 1 epochs)"
            in [t.get_text() for t in stopped.axes[0].get_legend().get_texts()])
    budget = plots.learning_curves(history, {"epochs": 10}, state={"state": "time_budget"})
    legend = [t.get_text() for t in budget.axes[0].get_legend().get_texts()]
    assert "not run: time budget reached after 3 of 10" in legend


def test_learning_curves_of_a_run_without_validation_show_training_only():
    history = pd.DataFrame({"epoch": [0, 1], "loss": [2.0, 1.5], "accuracy": [0.2, 0.4]})
    fig = plots.learning_curves(history, {"epochs": 2, "distill": 0.5})
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["train (distilled 0.5)"]
    labels = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert labels == ["train (augmented images)", "chance (1/7)"]
    assert fig.get_suptitle() == "Learning curves (no validation split: all of Training trained on)"


def test_learning_curves_name_the_run_continued_and_tick_whole_epochs():
    history = pd.DataFrame({"epoch": range(20), "loss": np.linspace(2, 1, 20), "accuracy": np.linspace(0.2, 0.6, 20)})
    fig = plots.learning_curves(history, {"epochs": 20, "init_from": "/w/runs/vgg-wide-sgd/model.keras"},
                                title="Learning curves: anneal")
    assert fig.get_suptitle() == ("Learning curves: anneal (continues vgg-wide-sgd; no validation split: all of "
                                  "Training trained on)")
    fig.canvas.draw()
    ticks = [t for t in fig.axes[0].get_xticks() if 0.5 <= t <= 20.5]
    assert ticks and all(float(t).is_integer() for t in ticks)
    bare = plots.learning_curves(history, {"epochs": 20, "init_from": "best.keras"}, title="t")
    assert bare.get_suptitle().startswith("t (continues best.keras;")
    legend = fig.axes[0].get_legend().get_window_extent()
    assert legend.y1 < fig.axes[0].get_window_extent().y0  # below the axes, hiding no epoch


def test_sweep_heatmap_starts_its_scale_at_the_majority_baseline_and_outlines_the_choice():
    grid = pd.DataFrame({"learning_rate": [0.01, 0.01, 0.001, 0.001], "batch_size": [32, 64, 32, 64],
                         "val_accuracy": [0.5, 0.55, 0.6, 0.52]})
    labels = np.array([3] * 30 + [0] * 10 + [1] * 60)  # majority: 60 of 100
    fig = plots.sweep_heatmap(grid, labels, {"learning_rate": 0.001, "batch_size": 32}, title="Sweep")
    ax, colour_bar = fig.axes
    assert colour_bar.get_ylabel().endswith("majority-class baseline 60.0%")
    assert ax.collections[0].get_clim() == (60.0, 70.0)  # 10 points above the baseline at least
    wide = plots.sweep_heatmap(grid.assign(val_accuracy=[0.5, 0.55, 0.9, 0.52]), labels,
                               {"learning_rate": 0.001, "batch_size": 32}, title="Sweep")
    assert wide.axes[0].collections[0].get_clim() == (60.0, 90.0)
    assert [t.get_text() for t in ax.texts][0] == "60.0%\n±9.6"  # rows: learning rate ascending
    (outline,) = ax.patches
    assert outline.get_xy() == (0, 0) and outline.get_edgecolor()[:3] == (1.0, 0.0, 0.0)


def test_tta_curve_has_integer_ticks_and_a_band_and_per_class_gain_has_error_bars():
    fig = plots.tta_gain_curve({"m": [0.5, 0.52, 0.53]}, {"m": 0.5}, 400, title="TTA")
    ax = fig.axes[0]
    assert all(float(t).is_integer() for t in ax.get_xticks()) and len(ax.collections) == 1
    assert [line.get_ydata()[0] for line in ax.get_lines()][1] == 50.0  # plain, dashed
    names = [f"model {k}" for k in range(10)]  # one panel each, on a grid of four columns
    fig = plots.tta_gain_curve({n: [0.5, 0.52] for n in names}, {n: 0.5 for n in names}, 400, title="TTA")
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in shown] == names and len(fig.axes) == 12
    assert fig.axes[7].get_xlabel() == "copies averaged (N)"  # above an empty panel: it has the x axis
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["random TTA", "its 95% interval (unpaired)",
                                                                  "plain"]
    gains = pd.DataFrame({("random TTA", "gain"): [0.02, -0.01], ("random TTA", "low"): [0.0, -0.03],
                          ("random TTA", "high"): [0.04, 0.01]}, index=["angry", "fear"])
    ax = plots.per_class_gain(gains, title="Gain").axes[0]
    assert [round(b.get_height(), 6) for b in ax.patches] == [2.0, -1.0]
    assert [type(c).__name__ for c in ax.containers] == ["ErrorbarContainer", "BarContainer"]


def test_reliability_diagram_draws_each_variant_and_its_images_per_bin():
    table = pd.DataFrame({"confidence": [0.3, 0.8], "accuracy": [0.25, 0.7], "images": [40, 60]})
    fig = plots.reliability_diagram({"plain": table, "random TTA": table}, {"plain": 0.05, "random TTA": 0.04},
                                    title="Calibration")
    top, bottom = fig.axes
    assert [t.get_text() for t in top.get_legend().get_texts()][1:] == ["plain (ECE 0.050)", "random TTA (ECE 0.040)"]
    assert sorted(round(b.get_height()) for b in bottom.patches) == [40, 40, 60, 60]
    assert bottom.get_ylabel() == "images per bin"


def test_samples_per_class_leaves_panels_empty_rather_than_drawing_black_faces():
    labels = np.array([0] * 5 + [1] * 2 + [2] * 5 + [3] * 5 + [4] * 5 + [5] * 5 + [6] * 5)
    images = np.full((len(labels), 48, 48), 128, np.uint8)
    fig = plots.samples_per_class(images, labels, per_class=3, title="Samples")
    drawn = [ax for ax in fig.axes if ax.images]
    assert len(fig.axes) == 21 and len(drawn) == 20 and [ax.get_title() for ax in drawn][3:5] == ["disgust"] * 2


def test_class_counts_draws_one_bar_per_class_and_usage_with_its_count():
    counts = pd.DataFrame([[10 * (k + 1) for k in range(7)], [k + 1 for k in range(7)]], columns=list(CLASSES),
                          index=pd.Index(["Training", "PublicTest"], name="usage"))
    ax = plots.class_counts(counts).axes[0]
    heights = sorted(round(bar.get_height()) for bar in ax.patches if bar.get_height() > 0)
    assert heights == sorted([10 * (k + 1) for k in range(7)] + [k + 1 for k in range(7)])
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("class", "images", "Images per class and usage")


def test_mean_faces_averages_each_class_and_leaves_a_missing_class_at_zero():
    labels = np.array([0, 0, 3])
    images = np.stack([np.full((48, 48), v, np.uint8) for v in (10, 30, 200)])
    fig = plots.mean_faces(images, labels)
    panels = {ax.get_title(): ax.images[0].get_array() for ax in fig.axes if ax.images}
    assert panels["angry"].mean() == pytest.approx(20) and panels["happy"].mean() == pytest.approx(200)
    assert panels["sad"].max() == 0 and len(panels) == len(CLASSES)


def test_intensity_histograms_draw_a_density_per_class_present():
    labels = np.array([0, 3])
    ax = plots.intensity_histograms(np.stack([np.full((48, 48), 5, np.uint8), np.full((48, 48), 250, np.uint8)]),
                                    labels).axes[0]
    assert [line.get_label() for line in ax.get_lines()] == ["angry", "happy"]
    assert all(np.sum(line.get_ydata()) * 8 == pytest.approx(1) for line in ax.get_lines())  # densities


def test_confusion_heatmap_annotates_counts_as_whole_numbers_and_rates_with_two_decimals():
    counts = np.arange(49).reshape(7, 7)
    texts = [t.get_text() for t in plots.confusion_heatmap(counts, normalized=False, title="c").axes[0].texts]
    assert texts[:3] == ["0", "1", "2"]
    rates = counts / counts.sum(axis=1, keepdims=True)
    ax = plots.confusion_heatmap(rates, normalized=True, title="r").axes[0]
    assert ax.texts[1].get_text() == f"{rates[0, 1]:.2f}" and ax.get_ylabel() == "true class"
    assert ax.figure.axes[1].get_ylabel() == "share of the true class"  # the colour bar


def test_class_weight_bars_and_per_class_scores_plot_the_values_given():
    weights = dict(zip(CLASSES, [1.0, 9.4, 1.0, 0.6, 0.8, 0.9, 1.2]))
    ax = plots.class_weight_bars(weights).axes[0]
    assert [round(bar.get_height(), 1) for bar in ax.patches] == list(weights.values())
    table = pd.DataFrame({"precision": [0.5] * 7, "recall": [0.25] * 7, "f1": [0.1] * 7}, index=list(CLASSES))
    ax = plots.per_class_scores(table).axes[0]
    assert sorted({round(bar.get_height(), 2) for bar in ax.patches}) == [0.1, 0.25, 0.5] and ax.get_ylim() == (0, 1)


def test_model_costs_plot_parameters_in_millions_and_flops_per_image():
    costs = pd.DataFrame({"trainable": [1_326_567, 4_650_000], "MFLOPs per image": [42.0, 530.0]},
                         index=["seed_cnn", "vgg_gap"])
    left, right = plots.model_costs(costs).axes
    assert [round(b.get_height(), 2) for b in left.patches] == [1.33, 4.65]
    assert [b.get_height() for b in right.patches] == [42.0, 530.0]
    assert left.get_ylabel() == "trainable parameters (millions)"
