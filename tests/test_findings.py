import pandas as pd
import pytest

from fer_utils import CLASSES
from fer_utils.findings import CHAPTERS, chapter_findings, findings_markdown, percent, with_interval
from fer_utils.runs import model_dir, read_json, update_metrics, write_json


def score(accuracy, **extra):
    return {"n": 200, "accuracy": accuracy, "accuracy_ci": [accuracy - 0.05, accuracy + 0.05], **extra}


def make_run(run):
    counts = {"Training": {**dict.fromkeys(CLASSES, 100), "happy": 800, "disgust": 50, "total": 1350},
              "PublicTest": {**dict.fromkeys(CLASSES, 20), "total": 140}}
    update_metrics(run, "data", {"counts": counts, "blank": {"Training": 3, "PublicTest": 1},
                                 "duplicates": {"groups": 5, "images": 11, "within": {"Training": 6},
                                                "across": {"Training/PublicTest": 2, "PublicTest/PrivateTest": 1},
                                                "conflicting_labels": 2}})
    (run / "data").mkdir()
    write_json(run / "data" / "prepared.json", {
        "class_weights": {**dict.fromkeys(CLASSES, 1.0), "happy": 0.25, "disgust": 4.0},
        "split_sizes": {"train": 1077, "val": 270, "test": 139}, "test_usage_sizes": {"PublicTest": 139},
        "val_copies_in_train": 27})
    update_metrics(run, "model_costs", {"seed_cnn": {"trainable": 1_326_567, "MFLOPs per image": 151.2}})
    write_json(run / "sweep.json", {"model": "vgg_gap", "chosen": {"learning_rate": 0.001, "batch_size": 64},
                                    "grid": [{"val_accuracy": 0.3}, {"val_accuracy": 0.45}]})
    write_json(run / "training.json", [{"model": "seed_cnn", "best val_accuracy": 0.55, "best epoch": 2,
                                        "epochs": 3, "minutes": 12.4}])
    model_dir(run, "seed_cnn").mkdir(parents=True)
    pd.DataFrame({"epoch": [0, 1, 2], "accuracy": [0.3, 0.6, 0.7], "val_accuracy": [0.4, 0.55, 0.5],
                  "seconds": [1, 2, 3]}).to_csv(model_dir(run, "seed_cnn") / "history.csv", index=False)
    update_metrics(run, "models", {"seed_cnn": {"PublicTest": {
        "plain": score(0.5), "tta_random": score(0.52, gain=0.02, gain_ci=[0.01, 0.03]),
        "tta_deterministic": score(0.49, gain=-0.01, gain_ci=[-0.02, 0.0])}}})
    per_class = {c: {"recall": 0.5, "support": 10} for c in CLASSES}
    per_class.update(fear={"recall": 0.2, "support": 10}, happy={"recall": 0.9, "support": 10})
    update_metrics(run, "analysis", {"model": "seed_cnn", "split": "PublicTest", "ece": 0.041,
                                     "per_class": per_class, "most_confused": [
                                         {"true": "fear", "predicted": "sad", "images": 7,
                                          "share of true class": 0.35}]})


def test_every_chapter_reads_its_numbers_from_the_run_folder(tmp_path):
    make_run(tmp_path)
    found = {chapter: chapter_findings(tmp_path, chapter) for chapter in CHAPTERS}
    assert found["01"] == [
        "1,490 images: Training 1,350, PublicTest 140.",
        "Training's largest class, happy, has 16.0 times the images of its smallest, disgust (800 against 50).",
        "4 blank images (Training 3, PublicTest 1), dropped before training.",
        "5 groups of exact duplicates (11 images); 6 Training images have a copy within Training, and 2 groups "
        "span Training and a test usage; in 2 groups the copies carry different labels (label noise)."]
    assert found["02"] == ["Splits after filtering: train 1,077, validation 270, test 139 (PublicTest 139).",
                           "Class weights range from 0.25 (happy) to 4.00 (disgust).",  # figure 02's reading
                           "27 validation images (10.0%) have an exact copy in the train split (FER2013's "
                           "duplicates): validation accuracy can overstate accuracy on unseen faces by up to 10.0 "
                           "points."]
    assert found["03"] == ["`seed_cnn`: 1.33 M trainable parameters, 151 MFLOPs per image."]
    assert found["03b"] == ["2 cells of `vgg_gap`: validation accuracy from 30.0% to 45.0%; the best cell is "
                            "learning rate 0.001 with batch 64."]
    write_json(run_grid := tmp_path / "sweep.json", {"model": "vgg_gap", "chosen": {"learning_rate": 0.01,
               "batch_size": 32}, "grid": [{"val_accuracy": 0.44}, {"val_accuracy": 0.45}, {"val_accuracy": 0.3}]})
    assert chapter_findings(run_grid.parent, "03b")[0].endswith(
        "batch 32, but 1 other cell(s) lie within its 95% interval (±5.9 points): the grid does not separate them.")
    assert found["04"] == ["`seed_cnn`: best validation accuracy 55.0% at epoch 2 of 3 (12 minutes); training "
                           "accuracy 60.0% at that epoch."]
    rows = read_json(tmp_path / "training.json")
    write_json(tmp_path / "training.json", [*rows, {"model": "all", "best val_accuracy": None, "best epoch": 20,
                                                    "epochs": 20, "minutes": 51.0}])
    assert chapter_findings(tmp_path, "04")[1] == ("`all`: no validation split (trained on all of Training); "
                                                   "the model of its last epoch, after 20 epochs (51 minutes).")
    write_json(tmp_path / "training.json", rows)
    assert found["05"] == ["`seed_cnn` on PublicTest: 50.0% [45.0, 55.0] plain, 52.0% [47.0, 57.0] with "
                           "random TTA (+2.0 [+1.0, +3.0] points), 49.0% [44.0, 54.0] with deterministic TTA "
                           "(-1.0 [-2.0, +0.0] points)."]
    best = {"gain_over_best_member": {"gain": 0.015, "gain_ci": [0.002, 0.03]}}
    update_metrics(tmp_path, "ensemble", {"members": ["seed_cnn", "vgg_gap"], "scores": {"PublicTest": {
        "plain": score(0.6, **best), "tta_random": score(0.62, **best)}}})
    assert chapter_findings(tmp_path, "05")[1] == (
        "The ensemble of `seed_cnn`, `vgg_gap` on PublicTest: 60.0% [55.0, 65.0] plain, 62.0% [57.0, 67.0] with "
        "random TTA; over its best member +1.5 [+0.2, +3.0] points plain, +1.5 [+0.2, +3.0] points with random TTA.")
    assert found["06"] == ["`seed_cnn` on PublicTest: recall from 20.0% (fear) to 90.0% (happy).",
                           "The most frequent confusion: fear taken for sad (7 images, 35.0% of fear).",
                           "Expected calibration error 0.041."]
    gains = {c: {"gain": 0.0, "gain_ci": [-0.1, 0.1]} for c in CLASSES} | {
        "fear": {"gain": 0.12, "gain_ci": [0.05, 0.2]}, "sad": {"gain": -0.08, "gain_ci": [-0.15, -0.01]},
        "disgust": None}
    update_metrics(tmp_path, "analysis", {**read_json(tmp_path / "metrics.json")["analysis"], "beside": {
        "model": "seed-cnn", "gain": 0.031, "gain_ci": [0.012, 0.05], "recall_gain": gains}})
    assert chapter_findings(tmp_path, "06")[3] == (
        "`seed_cnn` minus `seed-cnn`, on the same images: +3.1 [+1.2, +5.0] points of accuracy; recall per class "
        "from +12.0 [+5.0, +20.0] points (fear) to -8.0 [-15.0, -1.0] points (sad).")
    for same in ({c: {"gain": 0.0, "gain_ci": [0.0, 0.0]} for c in CLASSES}, dict.fromkeys(CLASSES)):
        update_metrics(tmp_path, "analysis", {**read_json(tmp_path / "metrics.json")["analysis"], "beside": {
            "model": "seed-cnn", "gain": 0.0, "gain_ci": [0.0, 0.0], "recall_gain": same}})
        assert chapter_findings(tmp_path, "06")[3] == (
            "`seed_cnn` minus `seed-cnn`, on the same images: +0.0 [+0.0, +0.0] points of accuracy.")


def test_chapters_without_files_have_no_findings_and_unknown_chapters_are_named(tmp_path):
    assert all(chapter_findings(tmp_path, chapter) == [] for chapter in CHAPTERS)
    assert "(nothing recorded yet for this chapter)" in findings_markdown(tmp_path, "05")
    with pytest.raises(ValueError, match="unknown chapter '07'; chapters: 01, 02"):
        chapter_findings(tmp_path, "07")


def test_findings_markdown_is_a_list_under_a_heading(tmp_path):
    make_run(tmp_path)
    text = findings_markdown(tmp_path, "02")
    assert text.startswith("**Findings** (generated from this run's files)\n\n- Splits after filtering")
    assert text.count("\n- ") == 3


def test_percentages_and_intervals_read_the_same_everywhere():
    assert percent(0.61274) == "61.3%" and percent(0.61274, digits=2) == "61.27%"
    assert with_interval(0.6127, [0.601, 0.625]) == "61.3% [60.1, 62.5]"
    assert with_interval(0.0137, [0.004, 0.024], signed=True, digits=2) == "+1.37 [+0.4, +2.4]"
    assert list(CHAPTERS)[0] == "01" and CHAPTERS["06"] == "Confusion analysis"
