import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from fer_utils.report import (
    PROJECT_ARCHIVE_SHA256,
    Run,
    _abstract,
    build_markdown,
    seed_recall,
    tta_verdict,
    write_report,
)
from fer_utils.runs import update_metrics, write_json

SECTIONS = ["## Abstract", "## Data and methods", "## Results", "## The seed report, side by side", "## Chapters",
            "## Limitations", "## Ethics"]


def fake_score(accuracy):
    return {"n": 100, "accuracy": accuracy, "accuracy_ci": [accuracy - 0.05, accuracy + 0.05],
            "macro_f1": accuracy - 0.1, "macro_f1_ci": [accuracy - 0.15, accuracy - 0.05]}


def make_run(run, synthetic):
    (run / "figures").mkdir(parents=True)
    for name in ("04_learning_curves_vgg_gap", "01_class_counts"):
        for suffix in ("png", "pdf"):
            (run / "figures" / f"{name}.{suffix}").write_bytes(b"figure")
    (run / "manifest.json").write_text(json.dumps({"data": {"source": "/x/fer2013.zip", "sha256": "ab" * 32,
                                                            "synthetic": synthetic}}))
    (run / "training.json").write_text(json.dumps([{"model": "vgg_gap", "best val_accuracy": 0.61,
                                                     "best epoch": 9, "epochs": 10, "minutes": 30.5}]))
    update_metrics(run, "models", {"vgg_gap": {"PublicTest": {"plain": fake_score(0.6),
                                                              "tta_random": {**fake_score(0.62), "gain": 0.02,
                                                                             "gain_ci": [0.005, 0.035]},
                                                              "tta_deterministic": fake_score(0.615)}}})


def test_update_metrics_keeps_other_keys(tmp_path):
    assert update_metrics(tmp_path, "a", 1) is None  # a notebook cell ending with it shows nothing
    update_metrics(tmp_path, "b", {"c": 2})
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"a": 1, "b": {"c": 2}}


def test_report_has_every_section_tables_and_captioned_inline_figures(tmp_path):
    make_run(tmp_path, synthetic=False)
    text = build_markdown(tmp_path)
    assert text.startswith("# FER report: FER2013")
    assert [line for line in text.splitlines() if line in SECTIONS] == SECTIONS
    assert ("| vgg_gap | PublicTest | 100 | 60.00% [55.0, 65.0] | 62.00% [57.0, 67.0] | 61.50% [56.5, 66.5] "
            "| +2.00 [+0.5, +3.5] |") in text
    assert "`vgg_gap`, reaches 60.00% [55.0, 65.0] on PublicTest (100 images), 62.00% [57.0, 67.0]" in text
    caption = ("Loss and accuracy per epoch, train against validation (train only for a run on all of "
               "Training): `vgg_gap`.")
    assert f"![{caption}](figures/04_learning_curves_vgg_gap.png)\n\n*Figure 2: {caption}*" in text
    assert text.index("### 01 · Exploratory") < text.index("### 04 · Training") < text.index("## Limitations")


def test_class_weights_and_the_archive_caveat_appear_only_where_they_apply(tmp_path):
    def text(name, *, synthetic, weighted, sha256):
        make_run(tmp_path / name, synthetic=synthetic)
        manifest = json.loads((tmp_path / name / "manifest.json").read_text())
        write_json(tmp_path / name / "manifest.json", {**manifest, "data": {**manifest["data"], "sha256": sha256}})
        (tmp_path / name / "models" / "vgg_gap").mkdir(parents=True)
        write_json(tmp_path / name / "models" / "vgg_gap" / "train_config.json", {"class_weighted": weighted})
        return build_markdown(tmp_path / name)

    weights, caveat = "class weights, augmentation", "recovered from an upscaled copy"
    project = text("project", synthetic=False, weighted=True, sha256=PROJECT_ARCHIVE_SHA256)
    assert weights in project and caveat in project
    other = text("other", synthetic=False, weighted=False, sha256="ab" * 32)
    assert weights not in other and caveat not in other and "Limitations" in other
    assert weights in text("synthetic", synthetic=True, weighted=True, sha256="cd" * 32)


def test_the_recipe_table_names_start_models_teachers_and_training_on_all_of_training(tmp_path):
    make_run(tmp_path, synthetic=False)
    (tmp_path / "training.json").write_text(json.dumps([{"model": "vgg_gap", "best val_accuracy": None,
                                                         "best epoch": 20, "epochs": 20, "minutes": 50.0}]))
    (tmp_path / "models" / "vgg_gap").mkdir(parents=True)
    (tmp_path / "models" / "vgg_gap" / "train_config.json").write_text(json.dumps({
        "model": "vgg_gap", "optimizer": "sgd", "learning_rate": 0.002, "schedule": "cosine", "epochs": 20,
        "init_from": "/w/runs/vgg-wide-sgd/model.keras", "teachers": ["/w/runs/a/model.keras", "/w/runs/b/model.keras"],
        "distill": 0.5, "label_smoothing": 0.1, "batch_size": 64, "seed": 3}))
    text = build_markdown(tmp_path)
    assert ("`vgg_gap` trained on all of Training, the validation images included, with a recipe chosen "
            "on validation; it keeps its last epoch.") in text
    (tmp_path / "training.json").write_text(json.dumps([
        {"model": name, "best val_accuracy": None, "best epoch": 20, "epochs": 20, "minutes": 50.0}
        for name in ("vgg_gap", "vgg_lean")]))
    assert ("`vgg_gap` and `vgg_lean` trained on all of Training, the validation images included, with a "
            "recipe chosen on validation; each keeps its last epoch.") in build_markdown(tmp_path)
    row = next(line for line in text.splitlines() if line.startswith("| vgg_gap | vgg_gap"))
    assert "| sgd lr 0.002, from `vgg-wide-sgd` |" in row and "| 20 / 20, all of Training |" in row
    assert "| 64 | 3 | cross-entropy, smoothing 0.1, distilled 0.5 from `a`, `b` |" in row


def test_the_abstract_names_the_analysed_model_when_it_is_not_the_best_by_validation(tmp_path):
    make_run(tmp_path, synthetic=False)
    training = json.loads((tmp_path / "training.json").read_text())
    (tmp_path / "training.json").write_text(json.dumps([*training, {**training[0], "model": "all",
                                                                    "best val_accuracy": None}]))
    scores = {"plain": fake_score(0.64), "tta_random": fake_score(0.66), "tta_deterministic": fake_score(0.65)}
    update_metrics(tmp_path, "models", {**json.loads((tmp_path / "metrics.json").read_text())["models"],
                                        "all": {"PublicTest": scores}})
    assert "analysed in chapter 06" not in " ".join(_abstract(Run(tmp_path)))
    assert "2 trained model(s) and test-time" in " ".join(_abstract(Run(tmp_path)))
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    write_json(tmp_path / "manifest.json", {**manifest, "parameters": {"adopt_runs": {"all": "../long-runs/all"}}})
    assert "2 trained model(s) (1 of them adopted from finished long runs) and" in " ".join(_abstract(Run(tmp_path)))
    write_json(tmp_path / "manifest.json", {**manifest, "parameters": {"adopt_runs": {"all": "x", "vgg_gap": "y"}}})
    assert "2 trained model(s) (all adopted from finished long runs) and" in " ".join(_abstract(Run(tmp_path)))
    update_metrics(tmp_path, "analysis", {"model": "all"})
    for name, seed in (("vgg_gap", 0), ("all", 0)):
        (tmp_path / "models" / name).mkdir(parents=True, exist_ok=True)
        write_json(tmp_path / "models" / name / "train_config.json", {"seed": seed})
    assert "The model with the best validation accuracy, `vgg_gap`," in " ".join(_abstract(Run(tmp_path)))
    write_json(tmp_path / "models" / "all" / "train_config.json", {"seed": 1})
    write_json(tmp_path / "manifest.json", {**manifest, "parameters": {"seed": 0}})
    assert ("The model with the best validation accuracy on the study's split, `vgg_gap`,"
            in " ".join(_abstract(Run(tmp_path))))
    write_json(tmp_path / "models" / "vgg_gap" / "train_config.json", {"seed": 1})
    write_json(tmp_path / "manifest.json", {**manifest, "parameters": {"seed": 0}})
    assert "best validation accuracy" not in " ".join(_abstract(Run(tmp_path)))  # not on the study's split
    assert ("The model analysed in chapter 06, `all`, reaches 64.00% [59.0, 69.0] plain and 66.00% [61.0, 71.0] "
            "with random TTA.") in " ".join(_abstract(Run(tmp_path)))


def test_the_split_is_given_as_the_runs_proportions(tmp_path):
    make_run(tmp_path, synthetic=False)
    assert "a train/validation split of Training (80/20)" in " ".join(_abstract(Run(tmp_path)))
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    write_json(tmp_path / "manifest.json", {**manifest, "parameters": {"val_fraction": 0.1}})
    assert "a train/validation split of Training (90/10)" in " ".join(_abstract(Run(tmp_path)))


def test_the_ensemble_is_a_results_table_with_its_gain_over_the_best_member(tmp_path):
    make_run(tmp_path, synthetic=False)
    assert "### Ensemble" not in build_markdown(tmp_path)
    gain = {"gain_over_best_member": {"gain": 0.012, "gain_ci": [-0.003, 0.027]}}
    update_metrics(tmp_path, "ensemble", {"members": ["vgg_gap", "seed_cnn"], "scores": {"PublicTest": {
        "plain": {**fake_score(0.63), **gain}, "tta_random": {**fake_score(0.65), **gain}}}})
    text = build_markdown(tmp_path)
    assert "The mean of the probabilities of `vgg_gap`, `seed_cnn`, scored like a model" in text
    assert "| PublicTest | random TTA | 65.00% [60.0, 70.0] | 55.00% [50.0, 60.0] | +1.20 [-0.3, +2.7] |" in text
    assert text.index("### Ensemble") < text.index("## The seed report")


def test_methods_name_the_commit_a_run_finished_on_when_it_differs(tmp_path):
    make_run(tmp_path, synthetic=False)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    write_json(tmp_path / "manifest.json", {**manifest, "git_commit": "abc"})
    assert "git commit `abc`; profile" in build_markdown(tmp_path)
    write_json(tmp_path / "manifest.json", {**manifest, "git_commit": "abc", "git_commit_last": "abc-dirty"})
    assert "git commit `abc` (tracked files outside the run folder were changed while it ran); profile" in (
        build_markdown(tmp_path))
    write_json(tmp_path / "manifest.json", {**manifest, "git_commit": "abc", "git_commit_last": "def"})
    assert "git commit `abc` (finished on `def`); profile" in build_markdown(tmp_path)


@pytest.mark.parametrize(("low", "high", "verdict"), [
    (-0.001, 0.03, "not replicated here"), (0.001, 0.019, "a gain, smaller than the seed's"),
    (0.021, 0.04, "a gain, larger than the seed's"),
    (0.001, 0.03, "replicated (the interval excludes zero and holds +2)"),
    (0.0, 0.03, "not replicated here"), (0.001, 0.02, "replicated ("), (0.02, 0.03, "replicated (")])
def test_tta_verdict_places_the_interval_against_the_seeds_gain(low, high, verdict):
    assert tta_verdict(low, high).startswith(verdict)


def test_every_image_and_link_of_the_html_resolves_inside_the_run_folder(tmp_path):
    make_run(tmp_path, synthetic=False)
    _, html_path = write_report(tmp_path)
    references = []

    class Collect(HTMLParser):
        def handle_starttag(self, tag, attrs):
            references.extend(v for k, v in attrs if (tag, k) in (("img", "src"), ("a", "href")))

    Collect().feed(html_path.read_text())
    images = [r for r in references if r.endswith(".png")]
    assert len(images) >= 2 and all(not Path(r).is_absolute() and (tmp_path / r).exists() for r in references)
    assert re.search(r'<img alt="Images per class and FER2013 usage." src="figures/01_class_counts.png"',
                     html_path.read_text())


def test_seed_side_by_side_says_what_replicated(tmp_path):
    make_run(tmp_path, synthetic=False)
    for name, weighted, seed in (("seed-w", True, 0), ("seed-u", False, 0), ("seed-u2", False, 2)):
        (tmp_path / "models" / name).mkdir(parents=True)
        write_json(tmp_path / "models" / name / "train_config.json",
                   {"model": "seed_cnn", "class_weighted": weighted, "batch_size": 32, "epochs": 100, "seed": seed})
    write_json(tmp_path / "training.json", [
        {"model": "seed-w", "best val_accuracy": 0.6127, "best epoch": 45, "epochs": 55, "minutes": 69},
        {"model": "seed-u", "best val_accuracy": 0.6772, "best epoch": 59, "epochs": 69, "minutes": 85},
        {"model": "seed-u2", "best val_accuracy": 0.68, "best epoch": 59, "epochs": 69, "minutes": 85}])
    tta = {**fake_score(0.6), "gain": 0.018, "gain_ci": [0.008, 0.028],
           "per_class": {c: {"recall": 0.5} for c in seed_recall()}, "recall_ci": dict.fromkeys(seed_recall())}
    update_metrics(tmp_path, "models", {"seed-w": {"PublicTest": {"plain": fake_score(0.58), "tta_random": tta,
                                                                  "tta_deterministic": fake_score(0.59)}}})
    update_metrics(tmp_path, "comparisons", {"PublicTest": [
        {"model": "seed-w", "minus": "seed-u", "usage": "PublicTest", "variant": "plain", "difference": -0.07,
         "difference_ci": [-0.085, -0.055]},
        {"model": "seed-w", "minus": "seed-u2", "usage": "PublicTest", "variant": "plain", "difference": -0.01,
         "difference_ci": [-0.02, 0.0]}]})  # seed-u2: another seed and split, not the controlled comparison
    text = build_markdown(tmp_path)
    assert "The seed CNN of this study is `seed-w`." in text
    assert "| class weights | balanced | balanced |" in text and "| epochs | not stated | 55 (best 45) |" in text
    assert "- Validation accuracy: -1.5 points from the seed's 62.80%; within 2 points: replicated." in text
    assert ("- TTA gain: +1.80 [+0.8, +2.8] points against the seed's about +2: replicated (the interval excludes "
            "zero and holds +2).") in text
    assert ("`seed-w` minus `seed-u` = -7.00 [-8.5, -5.5] points of PublicTest accuracy: weighting cost "
            "accuracy.") in text
    assert "| happy | 85.97% | 50.00% |" in text and seed_recall()["disgust"] == 90 / 111
    assert "| `seed-w` | `seed-u` | PublicTest | -7.00 [-8.5, -5.5] | - |" in text  # one row per pair


def test_models_against_each_other_is_one_row_per_pair_with_a_column_per_variant(tmp_path):
    make_run(tmp_path, synthetic=False)
    update_metrics(tmp_path, "comparisons", {"PublicTest": [
        {"model": "a", "minus": "b", "usage": "PublicTest", "variant": variant, "difference": difference,
         "difference_ci": [difference - 0.01, difference + 0.01]}
        for variant, difference in (("plain", 0.02), ("tta_random", -0.03))]})
    text = build_markdown(tmp_path)
    assert "| model | minus | usage | plain (points) | random TTA (points) |" in text
    assert "| `a` | `b` | PublicTest | +2.00 [+1.0, +3.0] | -3.00 [-4.0, -2.0] |" in text


def test_synthetic_run_says_so_in_the_title(tmp_path):
    make_run(tmp_path, synthetic=True)
    write_report(tmp_path)
    assert (tmp_path / "report.md").read_text().startswith("# FER report (synthetic data, not FER2013)")
    assert "<title>FER report (synthetic data, not FER2013)</title>" in (tmp_path / "report.html").read_text()


def test_fer_package_comparison_and_discussion_are_included_when_present(tmp_path):
    make_run(tmp_path, synthetic=False)
    assert "`fer` package's model" not in build_markdown(tmp_path) and "## Discussion" not in build_markdown(tmp_path)
    result = {**fake_score(0.65), "usage": "PublicTest", "tta": fake_score(0.67), "parameters": 58423,
              "images_per_second": 972.4}
    ours = {**result, "tta_random": fake_score(0.70),
            "minus_fer_package": {"plain": {"gain": 0.012, "gain_ci": [-0.004, 0.028]},
                                  "tta": {"gain": -0.02, "gain_ci": [-0.035, -0.005]},
                                  "tta_random": {"gain": 0.031, "gain_ci": [0.015, 0.047]},
                                  "best_tta": {"gain": 0.011, "gain_ci": [-0.002, 0.024], "ours": "tta_random",
                                               "theirs": "tta"}}}
    (tmp_path / "fer_package.json").write_text(json.dumps({"fer package": result, "ours": ours}))
    (tmp_path / "discussion.md").write_text("The seed CNN trained for 30 minutes only.\n")
    text = build_markdown(tmp_path)
    assert ("| fer package | PublicTest | 100 | 65.00% [60.0, 70.0] | 67.00% [62.0, 72.0] | - | 55.00% [50.0, 60.0] "
            "| - | - | - | 58,423 | 972 |") in text
    assert ("| ours | PublicTest | 100 | 65.00% [60.0, 70.0] | 67.00% [62.0, 72.0] | 70.00% [65.0, 75.0] "
            "| 55.00% [50.0, 60.0] | +1.20 [-0.4, +2.8] | -2.00 [-3.5, -0.5] | +3.10 [+1.5, +4.7] "
            "| 58,423 | 972 |") in text
    assert ("Each with its more accurate TTA on these images (ours: random, `fer`: fixed-view): "
            "+1.10 [-0.2, +2.4] points.") in text
    assert "## Discussion\n\nThe seed CNN trained for 30 minutes only.\n" in text
