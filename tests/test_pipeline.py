"""The papermill pipeline: one smoke run of every notebook, and its failure handling."""

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

from fer_utils import DataError, OptionError, pipeline
from fer_utils.cli import main
from fer_utils.pipeline import PipelineError, load_profile, notebook_paths, run_pipeline
from fer_utils.runs import RunExistsError

from .conftest import face, png_bytes
from .test_report import SECTIONS

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """The smoke pipeline as a user of ``pip install .`` (not editable) runs it: from the
    installed package, notebooks and profiles included, in a directory outside the checkout."""
    tmp = tmp_path_factory.mktemp("pipeline")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-compile",
                    "--target", str(tmp / "site"), str(ROOT)], check=True, capture_output=True)
    env = {**os.environ, "PYTHONPATH": str(tmp / "site")}
    where = subprocess.run([sys.executable, "-c", "import fer_utils; print(fer_utils.__file__)"], cwd=tmp, env=env,
                           capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(tmp / "site"))
    result = subprocess.run([sys.executable, "-m", "fer_utils", "pipeline", "--profile", "smoke", "--out", "run"],
                            cwd=tmp, env=env, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp / "run"


def test_smoke_run_executes_every_notebook(smoke_run):
    executed = sorted(p.name for p in (smoke_run / "notebooks").glob("*.ipynb"))
    assert executed == [p.name for p in notebook_paths()]
    assert {"01_eda.ipynb", "02_preprocessing.ipynb", "03_model.ipynb", "04_training.ipynb", "05_tta.ipynb",
            "06_confusion_analysis.ipynb"} <= set(executed)
    for path in (smoke_run / "notebooks").glob("*.ipynb"):
        cells = nbformat.read(path, as_version=4).cells
        assert any("injected-parameters" in c.metadata.get("tags", []) for c in cells), path.name
        assert not [o for c in cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]


def test_smoke_run_writes_figures_as_png_and_pdf(smoke_run):
    figures = smoke_run / "figures"
    pngs = {p.stem for p in figures.glob("*.png")}
    assert pngs == {p.stem for p in figures.glob("*.pdf")}
    assert {"01_class_counts", "01_samples_Training", "02_augmentation_preview",
            "03b_sweep_heatmap", "04_learning_curves_seed_cnn", "04_learning_curves_vgg_gap",
            "05_tta_gain_by_copies", "05_tta_gain_per_class", "06_confusion_counts", "06_confusion_normalized",
            "06_per_class_scores", "06_beside", "06_mistakes", "06_reliability", "06_gradcam"} <= pngs


def test_smoke_run_manifest_and_hand_over_files(smoke_run):
    manifest = json.loads((smoke_run / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["data"]["synthetic"] is True
    assert manifest["parameters"]["profile"] == "smoke" and len(manifest["data"]["sha256"]) == 64
    assert all(n["status"] == "ok" for n in manifest["notebooks"].values())
    assert "01_class_counts.pdf" in manifest["figures"] and "keras" in manifest["packages"]
    for name in ("data/prepared.npz", "sweep.json", "training.json", "models/vgg_gap/model.keras",
                 "models/seed_cnn/history.csv"):
        assert (smoke_run / name).exists(), name
    stored = sorted(p.suffix for p in (smoke_run / "predictions").iterdir())
    assert stored == [".npz"] * 4  # two models, two test usages, no .part left


def test_smoke_run_ends_with_metrics_and_report(smoke_run):
    metrics = json.loads((smoke_run / "metrics.json").read_text())
    assert set(metrics["models"]) == {"seed_cnn", "vgg_gap"}
    assert set(metrics["models"]["vgg_gap"]) == {"PublicTest", "PrivateTest"}
    assert set(metrics["models"]["vgg_gap"]["PublicTest"]) == {"plain", "tta_random", "tta_deterministic"}
    assert metrics["analysis"]["split"] == "PublicTest" and len(metrics["analysis"]["most_confused"]) == 5
    assert set(metrics) == {"data", "model_costs", "models", "comparisons", "ensemble", "analysis"}
    assert set(metrics["ensemble"]["members"]) == {"seed_cnn", "vgg_gap"}
    assert set(metrics["ensemble"]["scores"]) == {"PublicTest", "PrivateTest"}
    analysed, beside = metrics["analysis"]["model"], metrics["analysis"]["beside"]["model"]
    assert {analysed, beside} == {"seed_cnn", "vgg_gap"}
    report = (smoke_run / "report.md").read_text()
    assert report.startswith("# FER report (synthetic data, not FER2013)") and "64.35%" in report
    assert [line for line in report.splitlines() if line in SECTIONS] == SECTIONS
    html = (smoke_run / "report.html").read_text()
    images = re.findall(r'<img alt="[^"]+" src="([^"]+)"', html)
    assert len(images) == len(list((smoke_run / "figures").glob("*.png")))
    assert all((smoke_run / src).is_file() for src in images + re.findall(r'href="([^"]+)"', html))


def test_every_notebook_ends_with_its_generated_findings(smoke_run):
    for path in sorted((smoke_run / "notebooks").glob("*.ipynb")):
        last = nbformat.read(path, as_version=4).cells[-1]
        (output,) = last.outputs
        text = output["data"]["text/markdown"]
        assert text.startswith("**Findings** (generated from this run's files)\n\n- ")
        assert "nothing recorded" not in text, path.name


def test_a_run_is_not_replaced_by_another_data_source(smoke_run, synthetic_zip):
    with pytest.raises(RunExistsError, match="holds a run of other data"):
        run_pipeline(synthetic_zip, smoke_run, profile="smoke", force=True)
    with pytest.raises(RunExistsError, match="pass --force to replace it"):
        run_pipeline(None, smoke_run, profile="smoke")


def failing_notebook(folder, failing_cell="raise ValueError('boom')"):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('data = None\nrun_dir = "."')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell(failing_cell)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = folder / "09_fails.ipynb"
    nbformat.write(nb, path)
    return path


def test_failure_names_the_notebook_and_cell(tmp_path, synthetic_zip):
    with pytest.raises(PipelineError, match=r"notebook 09_fails\.ipynb failed in cell 3 .ValueError: boom."):
        run_pipeline(synthetic_zip, tmp_path / "run", notebooks=[failing_notebook(tmp_path)])
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "failed" and manifest["notebooks"]["09_fails.ipynb"]["status"] == "failed"
    assert (tmp_path / "run" / "notebooks" / "09_fails.ipynb").exists()


def test_a_kernel_that_dies_is_named_and_recorded(tmp_path, synthetic_zip):
    notebook = failing_notebook(tmp_path, "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)")  # e.g. memory
    with pytest.raises(PipelineError, match=r"notebook 09_fails\.ipynb stopped \(DeadKernelError: .*\); executed"):
        run_pipeline(synthetic_zip, tmp_path / "run", notebooks=[notebook])
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "failed" and manifest["notebooks"]["09_fails.ipynb"]["status"] == "failed"


def test_skip_bad_and_resize_reach_the_notebooks_that_load_the_data(tmp_path, synthetic_zip):
    source = tmp_path / "with-bad.zip"
    with zipfile.ZipFile(synthetic_zip) as good, zipfile.ZipFile(source, "w") as bad:
        for item in good.infolist():
            bad.writestr(item, good.read(item))
        bad.writestr("train/happy/Training_big.png", png_bytes(face(size=64)))
        bad.writestr("train/happy/Training_broken.png", b"not an image")
    eda = [ROOT / "notebooks" / "01_eda.ipynb"]
    with pytest.raises(DataError, match=r"Training_big\.png: image is 64x64, expected 48x48"):
        run_pipeline(source, tmp_path / "run", notebooks=eda)
    with pytest.raises(DataError, match=r"Training_broken\.png: not an image file"):
        run_pipeline(source, tmp_path / "run", notebooks=eda, resize=True)
    run_dir = run_pipeline(source, tmp_path / "run", notebooks=eda, skip_bad=True, resize=True)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["parameters"]["skip_bad"] is True
    executed = (run_dir / "notebooks" / "01_eda.ipynb").read_text()
    assert "1 bad item(s) skipped" in executed and "with-bad.zip" in executed


def test_unknown_profile_is_a_clean_cli_error(capsys):
    with pytest.raises(SystemExit):
        main(["pipeline", "--profile", "huge"])
    assert "invalid choice: 'huge'" in capsys.readouterr().err


def test_a_profile_key_that_no_notebook_reads_is_named(tmp_path, monkeypatch):
    real = pipeline.shipped
    monkeypatch.setattr(pipeline, "shipped", lambda folder, package: tmp_path if folder == "configs"
                        else real(folder, package))
    (tmp_path / "smoke.yaml").write_text("seed: 0\nsynthetic: {n_train: 10}\ntta_copies: 10\n")
    with pytest.raises(OptionError, match=r"smoke\.yaml: unknown key\(s\) tta_copies; no notebook declares them "
                                         r"\(known: .*tta_n"):
        load_profile("smoke")
    (tmp_path / "smoke.yaml").write_text("seed: 0\nrun_dir: here\n")
    with pytest.raises(OptionError, match=r"smoke\.yaml: run_dir cannot be set in a profile; the pipeline sets them"):
        load_profile("smoke")
    (tmp_path / "smoke.yaml").write_text("seed: 0\nsynthetic: {n_train: 10\n")
    with pytest.raises(OptionError, match=r"smoke\.yaml: not valid YAML"):
        load_profile("smoke")
    (tmp_path / "smoke.yaml").write_text("seed: 0\nsynthetic: {n_train: 10}\ntta_n: 10\n")
    assert load_profile("smoke") == {"seed": 0, "synthetic": {"n_train": 10}, "tta_n": 10}
