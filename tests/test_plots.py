import json
from pathlib import Path

import numpy as np
import pandas as pd

from fer_utils import plots
from fer_utils.data import Dataset

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
MAX_CELL_LINES = 8


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
