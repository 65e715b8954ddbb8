import json

import numpy as np
import pytest

from fer_utils import CLASSES
from fer_utils.data import Dataset
from fer_utils.scoring import (
    accuracy_gain,
    confident_mistakes,
    default_usage,
    ensemble_scores,
    ensemble_studies,
    ensemble_study,
    ensemble_table,
    expected_calibration_error,
    model_difference,
    most_confused,
    per_class_table,
    recall_gain_table,
    recall_gains,
    recall_interval,
    reliability,
    score,
)


def one_hot(predicted, confidence=0.9):
    proba = np.full((len(predicted), 7), (1 - confidence) / 6)
    proba[np.arange(len(predicted)), predicted] = confidence
    return proba


LABELS = np.array([0, 0, 0, 0, 1, 1, 4, 4, 5, 5] * 10)
PREDICTED = np.array([0, 0, 0, 5, 1, 0, 4, 5, 5, 4] * 10)


def test_score_matches_hand_counted_answers():
    result = score(LABELS, one_hot(PREDICTED), usage="PublicTest", n_resamples=200)
    assert result["usage"] == "PublicTest" and result["n"] == 100
    assert result["accuracy"] == pytest.approx(0.6)
    angry = result["per_class"]["angry"]
    assert angry["precision"] == pytest.approx(30 / 40) and angry["recall"] == pytest.approx(30 / 40)
    assert angry["support"] == 40 and result["per_class"]["happy"]["support"] == 0
    assert result["confusion"][0] == [30, 0, 0, 0, 0, 10, 0, 0][:7]
    assert result["confusion_normalized"][4][5] == pytest.approx(0.5)
    low, high = result["accuracy_ci"]
    assert low < 0.6 < high and high - low < 0.25
    f1_present = np.mean([result["per_class"][c]["f1"] for c in CLASSES])
    assert result["macro_f1"] == pytest.approx(f1_present)


def test_score_rejects_bad_shapes_and_empty_sets():
    with pytest.raises(ValueError, match=r"proba must have shape \(3, 7\)"):
        score(np.array([0, 1, 2]), np.zeros((3, 6)))
    with pytest.raises(ValueError, match="empty set"):
        score(np.array([], int), np.zeros((0, 7)))
    with pytest.raises(ValueError, match="cannot score PublicTest from 1 image: its intervals need two or more"):
        score(np.array([0]), np.eye(7)[:1], usage="PublicTest")
    broken = np.eye(7)[[0, 1, 2]]
    broken[1, 3] = np.nan  # a model whose weights went NaN
    with pytest.raises(ValueError, match=r"PublicTest: 1 image\(s\) with probabilities that are not finite"):
        score(np.array([0, 1, 2]), broken, usage="PublicTest")


def test_calibration_of_a_perfectly_calibrated_and_an_overconfident_model():
    labels = np.array([0] * 10)
    calibrated = one_hot(np.array([0] * 8 + [1] * 2), confidence=0.8)
    assert expected_calibration_error(labels, calibrated) == pytest.approx(0.0, abs=1e-9)
    overconfident = one_hot(np.array([0] * 5 + [1] * 5), confidence=0.95)
    assert expected_calibration_error(labels, overconfident) == pytest.approx(0.45)
    table = reliability(labels, overconfident)
    assert table.to_dict("list") == {"confidence": [pytest.approx(0.95)], "accuracy": [0.5], "images": [10]}
    mixed = np.concatenate([one_hot([0] * 4, 0.35), one_hot([0] * 2 + [1] * 4, 0.95)])
    table = reliability(np.zeros(10, int), mixed)
    assert table["images"].tolist() == [4, 6] and table["accuracy"].tolist() == [1.0, pytest.approx(1 / 3)]
    assert expected_calibration_error(np.zeros(10, int), mixed) == pytest.approx((4 * 0.65 + 6 * (0.95 - 1 / 3)) / 10)


def test_tables_of_a_result():
    result = score(LABELS, one_hot(PREDICTED), n_resamples=50)
    table = per_class_table(result)
    assert list(table.index) == list(CLASSES) and table.loc["sad", "support"] == 20
    confused = most_confused(result, top=2)
    assert confused.iloc[0][["true", "predicted", "images"]].tolist() == ["angry", "sad", 10]
    assert len(confused) == 2


def test_accuracy_gain_is_paired_and_its_interval_brackets_it():
    labels = np.arange(200) % 7
    base = np.eye(7)[labels]
    base[:50] = np.eye(7)[(labels[:50] + 1) % 7]  # 150 of 200 right
    new = np.eye(7)[labels]
    new[:30] = np.eye(7)[(labels[:30] + 1) % 7]   # 170 of 200 right, the same images wrong or fewer
    result = accuracy_gain(labels, base, new)
    assert result["gain"] == pytest.approx(0.1)
    low, high = result["gain_ci"]
    assert 0 < low < 0.1 < high < 0.2
    same = accuracy_gain(labels, base, base)
    assert same == {"gain": 0.0, "gain_ci": [0.0, 0.0]}


def test_recall_interval_is_wilson_and_per_class():
    assert recall_interval(0, 0) is None
    low, high = recall_interval(8, 10)
    assert round(low, 4) == 0.4902 and round(high, 4) == 0.9433  # Wilson 95%, 8 of 10
    labels = np.array([0, 0, 0, 1, 1, 2])
    proba = np.eye(7)[[0, 0, 1, 1, 1, 2]]
    result = score(labels, proba)
    assert result["recall_ci"]["angry"] == recall_interval(2, 3) and result["recall_ci"]["happy"] is None
    assert result["recall_ci"]["disgust"][0] <= result["per_class"]["disgust"]["recall"] == 1.0


def test_confident_mistakes_most_confident_first_and_at_most_n():
    labels = np.array([0, 1, 2, 3, 4])
    proba = np.array([one_hot([1], 0.5)[0], one_hot([1], 0.9)[0], one_hot([0], 0.7)[0], one_hot([3], 0.99)[0],
                      one_hot([0], 0.9)[0]])
    assert confident_mistakes(labels, proba, 10).tolist() == [4, 2, 0]
    assert confident_mistakes(labels, proba, 2).tolist() == [4, 2]
    assert confident_mistakes(labels[[1, 3]], proba[[1, 3]], 5).size == 0


def test_recall_gains_are_paired_per_class():
    labels = np.array([0] * 10 + [1] * 10 + [2])
    base = one_hot(np.array([0] * 5 + [1] * 5 + [1] * 10 + [2]))
    new = one_hot(np.array([0] * 10 + [1] * 8 + [0] * 2 + [2]))
    gains = recall_gains(labels, base, new)
    assert gains["angry"]["gain"] == pytest.approx(0.5) and gains["disgust"]["gain"] == pytest.approx(-0.2)
    assert gains["angry"]["gain_ci"][0] <= 0.5 <= gains["angry"]["gain_ci"][1]
    assert gains["fear"] is None and gains["happy"] is None
    table = recall_gain_table({"new - base": gains, "base - base": recall_gains(labels, base, base)})
    assert table.index.tolist() == list(CLASSES) and table.columns.tolist()[:3] == [
        ("new - base", "gain"), ("new - base", "low"), ("new - base", "high")]
    assert table.loc["angry", ("new - base", "gain")] == pytest.approx(0.5)
    assert table.loc["angry", ("base - base", "gain")] == 0 and np.isnan(table.loc["fear", ("new - base", "low")])


def fake_study(labels, predicted_by_variant):
    """A tta_study-shaped dict from one-hot predictions per variant."""
    proba = {v: one_hot(np.asarray(p), 0.6) for v, p in predicted_by_variant.items()}
    return {"labels": labels, "proba": proba, **{v: score(labels, proba[v]) for v in proba}}


def test_ensemble_averages_member_probabilities_and_reports_its_gain_over_the_best_member():
    labels = np.array([0, 1, 2, 3] * 5)
    wrong = (labels + 1) % 7
    a = np.where(np.arange(20) < 12, labels, wrong)   # 12 of 20 right
    b = np.where(np.arange(20) >= 8, labels, wrong)   # 12 of 20 right, other images
    c = np.where(np.arange(20) % 2 == 0, labels, wrong)
    better = np.where(np.arange(20) < 16, labels, wrong)  # random TTA: a member right on 16
    studies = {name: {"PublicTest": fake_study(labels, {"plain": p, "tta_random": better if name == "a" else p,
                                                        "tta_deterministic": p})}
               for name, p in (("a", a), ("b", b), ("c", c))}
    ensemble = ensemble_study(studies, "PublicTest", ["a", "b", "c"])
    votes = {v: np.mean([studies[m]["PublicTest"]["proba"][v] for m in "abc"], axis=0)
             for v in ("plain", "tta_random", "tta_deterministic")}
    expected = {v: (p.argmax(axis=1) == labels).mean() for v, p in votes.items()}
    assert ensemble["plain"]["accuracy"] == pytest.approx(expected["plain"]) and ensemble["members"] == ["a", "b", "c"]
    assert ensemble["plain"]["gain_over_best_member"]["gain"] == pytest.approx(expected["plain"] - 0.6)
    assert ensemble["tta_random"]["gain_over_best_member"]["gain"] == pytest.approx(expected["tta_random"] - 0.8)
    assert ensemble["tta_random"]["gain"] == pytest.approx(expected["tta_random"] - expected["plain"])
    assert ensemble["proba"]["plain"].shape == (20, 7)
    assert ensemble_study(studies, "PublicTest")["members"] == ["a", "b", "c"]
    with pytest.raises(ValueError, match="an ensemble needs at least two models; got a"):
        ensemble_study(studies, "PublicTest", ["a"])
    with pytest.raises(ValueError, match="no PrivateTest study of a, b; have: a, b, c"):
        ensemble_study(studies, "PrivateTest", ["a", "b"])
    ensembles = ensemble_studies(studies, ["PublicTest"], ["a", "b", "c"])
    kept = ensemble_scores(ensembles)
    assert kept["members"] == ["a", "b", "c"] and list(kept["scores"]["PublicTest"]) == [
        "plain", "tta_random", "tta_deterministic"]
    assert json.loads(json.dumps(kept)) == kept  # what metrics.json keeps: no arrays
    table = ensemble_table(ensembles)
    assert table.index.tolist() == [("PublicTest", v) for v in ("plain", "tta_random", "tta_deterministic")]
    assert table["gain over best member (points)"].iloc[1] == pytest.approx(100 * (expected["tta_random"] - 0.8))
    alone = ensemble_studies({"a": studies["a"]}, ["PublicTest"])
    assert alone == {} and ensemble_scores(alone) == {} and ensemble_table(alone).empty
    with pytest.raises(ValueError, match="an ensemble needs at least two models; got a"):
        ensemble_studies(studies, ["PublicTest"], ["a"])  # members named: one is a mistake, not "no ensemble"


def test_model_difference_is_paired_on_the_same_images():
    labels = np.array([0, 1, 2, 3] * 5)
    base, new = one_hot(np.where(np.arange(20) < 10, labels, 6)), one_hot(np.where(np.arange(20) < 15, labels, 6))
    difference = model_difference(labels, base, new, model="base")
    assert difference["model"] == "base" and difference["gain"] == pytest.approx(0.25)
    assert difference["gain_ci"][0] > 0 and set(difference["recall_gain"]) == set(CLASSES)


@pytest.mark.parametrize(("usages", "chosen"), [
    (["Training", "PrivateTest", "PublicTest"], "PublicTest"), (["Training", "PrivateTest"], "PrivateTest"),
    (["Training"], "Training")])
def test_default_usage_prefers_public_test_then_another_test_usage_then_training(usages, chosen):
    n = len(usages)
    dataset = Dataset(np.zeros((n, 48, 48), np.uint8), np.zeros(n, int), np.array(usages), np.array(usages), "d", "h")
    assert default_usage(dataset) == chosen
