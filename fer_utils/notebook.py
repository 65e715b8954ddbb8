"""Small helpers shared by the notebooks' first cells. Importing this module (the notebooks do
it before any module that loads Keras) imports TensorFlow without its C++ start-up lines,
which would otherwise fill the first cell's output of every notebook."""

from __future__ import annotations

import os
from pathlib import Path

from fer_utils.cli import import_tensorflow_quietly
from fer_utils.data import Dataset

if os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import_tensorflow_quietly()


def setup() -> None:
    """Set one figure style for every notebook."""
    import matplotlib.pyplot as plt  # noqa: PLC0415
    plt.rcParams.update({"figure.dpi": 80, "axes.grid": False, "font.size": 9})


def resolve_data(data, seed: int = 0) -> Path:
    """``data`` as a Path, or (when None) the cached synthetic smoke dataset."""
    if data:
        return Path(data)
    from fer_utils.synthetic import default_dataset  # noqa: PLC0415
    return default_dataset(seed=seed)


def describe(dataset: Dataset) -> str:
    """One line naming the data, loudly marked when it is synthetic, and the bad items skipped."""
    kind = "SYNTHETIC data (procedurally drawn faces, not FER2013)" if dataset.synthetic else "FER2013"
    skipped = f"; {len(dataset.skipped)} bad item(s) skipped (each logged above)" if dataset.skipped else ""
    return (f"Data: {Path(dataset.source).name}, {kind}; {len(dataset)} images; "
            f"usages: {', '.join(dataset.present_usages())}; sha256 {dataset.source_hash[:12]}{skipped}")


def findings(run_dir, chapter: str):
    """The chapter's generated findings (:mod:`fer_utils.findings`), shown as Markdown."""
    from IPython.display import Markdown  # noqa: PLC0415

    from fer_utils.findings import findings_markdown  # noqa: PLC0415
    return Markdown(findings_markdown(run_dir, chapter))
