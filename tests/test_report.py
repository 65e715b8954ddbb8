import json

from fer_utils.report import build_markdown, write_report
from fer_utils.runs import update_metrics


def fake_score(accuracy):
    return {"n": 100, "accuracy": accuracy, "accuracy_ci": [accuracy - 0.05, accuracy + 0.05],
            "macro_f1": accuracy - 0.1, "macro_f1_ci": [accuracy - 0.15, accuracy - 0.05]}


def make_run(run, synthetic):
    (run / "figures").mkdir(parents=True)
    (run / "figures" / "04_learning_curves_vgg_gap.png").write_bytes(b"png")
    (run / "manifest.json").write_text(json.dumps({"data": {"source": "/x/fer2013.zip", "sha256": "ab" * 32,
                                                            "synthetic": synthetic}}))
    (run / "training.json").write_text(json.dumps([{"model": "vgg_gap", "best val_accuracy": 0.61,
                                                     "best epoch": 9, "epochs": 10, "minutes": 30.5}]))
    update_metrics(run, "models", {"vgg_gap": {"PublicTest": {"plain": fake_score(0.6),
                                                              "tta_random": {**fake_score(0.62), "gain": 0.02,
                                                                             "gain_ci": [0.005, 0.035]},
                                                              "tta_deterministic": fake_score(0.615)}}})


def test_update_metrics_keeps_other_keys(tmp_path):
    update_metrics(tmp_path, "a", 1)
    update_metrics(tmp_path, "b", {"c": 2})
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"a": 1, "b": {"c": 2}}


def test_report_tables_seed_numbers_and_linked_figures(tmp_path):
    make_run(tmp_path, synthetic=False)
    text = build_markdown(tmp_path)
    assert text.startswith("# FER report: FER2013")
    assert ("| vgg_gap | PublicTest | 100 | 60.00% [55.0, 65.0] | 62.00% [57.0, 67.0] | 61.50% [56.5, 66.5] "
            "| +2.00 [+0.5, +3.5] |") in text
    assert "| validation accuracy | 62.80% |" in text and "| test accuracy with TTA | 64.35% |" in text
    assert "[04_learning_curves_vgg_gap](figures/04_learning_curves_vgg_gap.png)" in text
    md_path, html_path = write_report(tmp_path)
    html = html_path.read_text()
    assert "<table>" in html and 'href="figures/04_learning_curves_vgg_gap.png"' in html and "<img" not in html


def test_synthetic_run_says_so_in_the_title(tmp_path):
    make_run(tmp_path, synthetic=True)
    write_report(tmp_path)
    assert (tmp_path / "report.md").read_text().startswith("# FER report (synthetic data, not FER2013)")
    assert "<title>FER report (synthetic data, not FER2013)</title>" in (tmp_path / "report.html").read_text()


def test_fer_package_comparison_and_discussion_are_included_when_present(tmp_path):
    make_run(tmp_path, synthetic=False)
    assert "fer` package" not in build_markdown(tmp_path) and "## Discussion" not in build_markdown(tmp_path)
    result = {**fake_score(0.65), "usage": "PublicTest", "tta": fake_score(0.67), "parameters": 58423,
              "images_per_second": 972.4}
    (tmp_path / "fer_package.json").write_text(json.dumps({"fer package": result}))
    (tmp_path / "discussion.md").write_text("The seed CNN trained for 30 minutes only.\n")
    text = build_markdown(tmp_path)
    assert ("| fer package | PublicTest | 100 | 65.00% [60.0, 70.0] | 67.00% [62.0, 72.0] | - | 55.00% [50.0, 60.0] "
            "| 58,423 | 972 |") in text
    assert "## Discussion\n\nThe seed CNN trained for 30 minutes only.\n" in text
