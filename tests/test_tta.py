import keras
import numpy as np
import pytest

from fer_utils import CLASSES, DataError, prediction_cache, scoring
from fer_utils.data import load_dataset
from fer_utils.prediction_cache import cached_predictions, prediction_key
from fer_utils.prepare import prepare
from fer_utils.scoring import (
    VARIANTS,
    difference_table,
    paired_differences,
    per_class_gain,
    study_scores,
    study_table,
    tta_score,
    tta_studies,
    tta_study,
)
from fer_utils.tta import DETERMINISTIC_VIEWS, accuracy_by_copies, deterministic_view, tta_copies, tta_predict


@pytest.fixture
def model():
    """Predicts from mean brightness; ``model.seen`` counts the images it was asked about."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((48, 48, 1))
    x = keras.layers.Rescaling(1 / 255)(keras.layers.GlobalAveragePooling2D()(inputs))
    m = keras.Model(inputs, keras.layers.Dense(7, activation="softmax")(x))
    predict, m.seen = m.predict, 0

    def counting_predict(x, **kwargs):
        m.seen += len(x)
        return predict(x, **kwargs)

    m.predict = counting_predict
    return m


@pytest.fixture
def model_path(model, tmp_path):
    path = tmp_path / "m.keras"
    model.save(path)
    return path


IMAGES = np.random.default_rng(0).integers(0, 256, (30, 48, 48)).astype(np.uint8)


def test_deterministic_views_mirror_and_shift():
    image = np.arange(48 * 48).reshape(1, 48, 48)
    np.testing.assert_array_equal(deterministic_view(image, True, 0, 0)[0], image[0, :, ::-1])
    shifted = deterministic_view(image, False, 2, 0)[0]
    np.testing.assert_array_equal(shifted[:, 2:], image[0, :, :-2])
    np.testing.assert_array_equal(shifted[:, 0], image[0, :, 0])  # edge repeated
    assert len(DETERMINISTIC_VIEWS) == 10 and DETERMINISTIC_VIEWS[0] == (False, 0, 0)


def test_copies_shape_and_cost(model):
    copies = tta_copies(model, IMAGES, 5, batch_size=64)
    assert copies.shape == (5, 30, 7)
    assert model.seen == 5 * 30  # N copies cost N plain predictions
    np.testing.assert_allclose(copies.sum(axis=2), 1.0, rtol=1e-5)


def test_deterministic_tta_repeats_and_random_tta_is_seeded(model):
    a = tta_predict(model, IMAGES, 10, mode="deterministic")
    np.testing.assert_array_equal(a, tta_predict(model, IMAGES, 10, mode="deterministic"))
    np.testing.assert_allclose(tta_predict(model, IMAGES, 4, seed=1), tta_predict(model, IMAGES, 4, seed=1))
    assert not np.allclose(tta_copies(model, IMAGES, 2, seed=1)[0], tta_copies(model, IMAGES, 2, seed=1)[1])


def test_the_first_copies_do_not_depend_on_how_many_are_drawn(model):
    np.testing.assert_array_equal(tta_copies(model, IMAGES, 3, seed=2)[:2], tta_copies(model, IMAGES, 2, seed=2))
    assert not np.allclose(tta_copies(model, IMAGES, 1, seed=2), tta_copies(model, IMAGES, 1, seed=3))


def test_bad_tta_arguments(model):
    with pytest.raises(ValueError, match="at most 10 views"):
        tta_copies(model, IMAGES, 11, mode="deterministic")
    with pytest.raises(ValueError, match="mode 'random' or 'deterministic' and n >= 1"):
        tta_copies(model, IMAGES, 0)


def test_accuracy_by_copies_uses_running_means():
    copies = np.zeros((3, 2, 7))
    copies[0, :, 1] = 3          # copy 1 says class 1 for both, strongly
    copies[1:, :, 0] = 2         # copies 2 and 3 say class 0
    assert accuracy_by_copies(copies, np.array([0, 0])).tolist() == [0.0, 0.0, 1.0]


def test_study_reports_plain_beside_both_variants(model):
    labels = np.arange(30) % 7
    study = tta_study(model, IMAGES, labels, n=3, max_copies=4)
    assert set(study) == {"plain", "tta_random", "tta_deterministic", "accuracy_by_copies", "labels", "proba"}
    assert len(study["accuracy_by_copies"]) == 4 and study["plain"]["n"] == 30
    for variant in ("tta_random", "tta_deterministic"):
        gain = study[variant]["accuracy"] - study["plain"]["accuracy"]
        assert study[variant]["gain"] == pytest.approx(gain)
        assert study[variant]["gain_ci"][0] <= study[variant]["gain"] <= study[variant]["gain_ci"][1]


def test_study_scores_and_table_cover_every_model_usage_and_variant(model):
    labels = np.arange(len(IMAGES)) % 7
    study = tta_study(model, IMAGES, labels, n=2, max_copies=2)
    studies = {"a": {"PublicTest": study}, "b": {"PublicTest": study, "PrivateTest": study}}
    scores = study_scores(studies)
    assert scores["b"]["PrivateTest"].keys() == set(VARIANTS)
    assert scores["a"]["PublicTest"]["plain"] is study["plain"]
    table = study_table(studies)
    assert len(table) == 3 * len(VARIANTS)
    row = table.loc[("b", "PrivateTest", "tta_random")]
    assert row["accuracy"] == round(study["tta_random"]["accuracy"], 4)
    assert row["accuracy 95% CI"] == [round(v, 4) for v in study["tta_random"]["accuracy_ci"]]


def test_tta_score_adds_the_paired_gain_to_the_tta_score():
    labels = np.array([0, 1, 2, 3])
    plain, tta = np.eye(7)[[0, 0, 0, 3]], np.eye(7)[[0, 1, 2, 4]]
    result = tta_score(labels, plain, tta, usage="PublicTest")
    assert result["usage"] == "PublicTest" and result["accuracy"] == 0.75
    assert result["gain"] == 0.25 and result["gain_ci"][0] <= 0.25 <= result["gain_ci"][1]


def test_tta_studies_score_each_model_on_each_test_usage_and_per_class_gain(model_path, synthetic_zip):
    prepared = prepare(load_dataset(synthetic_zip))
    studies = tta_studies({"m": model_path}, prepared, ["PrivateTest"], n=2, max_copies=2)
    study = studies["m"]["PrivateTest"]
    assert list(studies["m"]) == ["PrivateTest"]
    assert study["plain"]["n"] == len(prepared.arrays("test", "PrivateTest")[1])
    assert study["plain"]["usage"] == "PrivateTest" and study["proba"]["tta_random"].shape == (len(study["labels"]), 7)
    gains = per_class_gain(study)
    assert list(gains.columns.get_level_values(0).unique()) == ["random TTA", "deterministic TTA"]
    assert list(gains.index) == list(CLASSES)
    recall = {v: study[v]["per_class"]["happy"]["recall"] for v in VARIANTS}
    assert gains.loc["happy", ("random TTA", "gain")] == pytest.approx(recall["tta_random"] - recall["plain"])
    assert gains.loc["happy", ("deterministic TTA", "gain")] == pytest.approx(
        recall["tta_deterministic"] - recall["plain"])
    random = gains["random TTA"].dropna()
    assert (random["low"] <= random["gain"]).all() and (random["gain"] <= random["high"]).all()


def test_paired_differences_compare_models_on_the_same_images(model):
    labels = np.arange(len(IMAGES)) % 7
    study = tta_study(model, IMAGES, labels, n=2, max_copies=2)
    worse = {**study, "proba": {v: np.roll(p, 1, axis=1) for v, p in study["proba"].items()}}
    rows = paired_differences({"a": {"PublicTest": study}, "b": {"PublicTest": worse}, "c": {}}, "PublicTest")
    assert [(r["model"], r["minus"], r["usage"], r["variant"]) for r in rows] == [
        ("a", "b", "PublicTest", "plain"), ("a", "b", "PublicTest", "tta_random")]
    plain_a = (study["proba"]["plain"].argmax(1) == labels).mean()
    plain_b = (worse["proba"]["plain"].argmax(1) == labels).mean()
    assert rows[0]["difference"] == pytest.approx(plain_a - plain_b)
    assert rows[0]["difference_ci"][0] <= rows[0]["difference"] <= rows[0]["difference_ci"][1]
    table = difference_table({"PublicTest": rows})
    assert list(table.columns) == ["plain", "plain 95% CI", "tta_random", "tta_random 95% CI"]
    assert table.index.tolist() == [("a", "b", "PublicTest")]
    pair = table.loc[("a", "b", "PublicTest")]
    assert pair["plain"] == round(100 * rows[0]["difference"], 2)
    assert pair["tta_random 95% CI"] == [round(100 * v, 2) for v in rows[1]["difference_ci"]]
    assert difference_table({"PublicTest": []}).empty  # one trained model: nothing to compare


def test_stored_predictions_are_read_back_without_loading_the_model(model_path, synthetic_zip, tmp_path, monkeypatch):
    prepared, cache, loads = prepare(load_dataset(synthetic_zip)), tmp_path / "cache", []
    load_model = scoring.load_model
    monkeypatch.setattr(scoring, "load_model", lambda path: loads.append(path) or load_model(path))
    first = tta_studies({"m": model_path}, prepared, ["PublicTest", "PrivateTest"], cache=cache, n=2, max_copies=3)
    assert loads == [model_path]  # once for both usages
    assert len(list(cache.glob("*.npz"))) == 2 and not list(cache.glob("*.part"))
    monkeypatch.setattr(scoring, "load_model", lambda path: pytest.fail(f"{path} loaded although stored"))
    again = tta_studies({"m": model_path}, prepared, ["PublicTest", "PrivateTest"], cache=cache, n=2, max_copies=3)
    for usage in ("PublicTest", "PrivateTest"):
        assert again["m"][usage]["accuracy_by_copies"] == first["m"][usage]["accuracy_by_copies"]
        for variant in VARIANTS:
            np.testing.assert_array_equal(again["m"][usage]["proba"][variant], first["m"][usage]["proba"][variant])
            assert again["m"][usage][variant]["accuracy"] == first["m"][usage][variant]["accuracy"]


def test_the_prediction_key_changes_with_the_model_the_images_and_the_options(model_path, tmp_path, monkeypatch):
    key = prediction_key(model_path, IMAGES, copies=2, seed=0)
    assert key == prediction_key(model_path, IMAGES.copy(), copies=2, seed=0) and len(key) == 64
    other = tmp_path / "other.keras"
    other.write_bytes(model_path.read_bytes() + b"\0")
    keys = {key, prediction_key(other, IMAGES, copies=2, seed=0),
            prediction_key(model_path, IMAGES[::-1], copies=2, seed=0),
            prediction_key(model_path, IMAGES[:, :, :47], copies=2, seed=0),
            prediction_key(model_path, IMAGES, copies=3, seed=0),
            prediction_key(model_path, IMAGES, copies=2, seed=1)}
    monkeypatch.setattr(prediction_cache, "SEED_AUGMENTATION", {**prediction_cache.SEED_AUGMENTATION, "zoom": 0.2})
    keys.add(prediction_key(model_path, IMAGES, copies=2, seed=0))
    assert len(keys) == 7
    with pytest.raises(DataError, match="missing.keras: model file not found"):
        prediction_key(tmp_path / "missing.keras", IMAGES)


def _truncated(path):
    np.savez_compressed(path, key="a" * 64, plain=np.zeros((2, 7)), random=np.zeros((1, 2, 7)),
                        deterministic=np.zeros((2, 7)))
    path.write_bytes(path.read_bytes()[:-40])


def _npy(path):
    with open(path, "wb") as file:  # a file object: np.save keeps the name
        np.save(file, np.zeros(3))


def _without_deterministic(path):
    np.savez_compressed(path, key="a" * 64, plain=np.zeros((2, 7)), random=np.zeros((1, 2, 7)))


@pytest.mark.parametrize("damage", [lambda p: p.write_bytes(b""), lambda p: p.write_bytes(b"not an npz archive"),
                                    _npy, _truncated, _without_deterministic],
                         ids=["empty", "text", "npy", "truncated", "array missing"])
def test_an_unreadable_stored_prediction_is_named_and_kept(tmp_path, damage):
    stored = tmp_path / f"{'a' * 32}.npz"
    damage(stored)
    before = stored.read_bytes()
    with pytest.raises(DataError, match=rf"{stored.name}: stored predictions unreadable .*delete the file"):
        cached_predictions(tmp_path, "a" * 64, lambda: pytest.fail("predicted although stored"))
    assert stored.read_bytes() == before


def test_a_stored_prediction_of_another_key_and_bad_arrays_are_refused(tmp_path):
    arrays = {"plain": np.zeros((2, 7)), "random": np.zeros((1, 2, 7)), "deterministic": np.zeros((2, 7))}
    cached_predictions(tmp_path, "a" * 64, lambda: arrays)
    assert [p.name for p in tmp_path.iterdir()] == [f"{'a' * 32}.npz"]
    with pytest.raises(DataError, match=r"stored under another key \(aaaaaaaaaaaa\.\.\., not aaaaaaaaaaaa"):
        cached_predictions(tmp_path, "a" * 32 + "b" * 32, lambda: pytest.fail("predicted although stored"))
    with pytest.raises(ValueError, match="lack deterministic, random"):
        cached_predictions(tmp_path, "c" * 64, lambda: {"plain": np.zeros((2, 7))})
    assert not list(tmp_path.glob("c*"))
    expected = r"predictions of 2 images with 3 random copies expected; got .*random \(1, 2, 7\)"
    with pytest.raises(ValueError, match=expected):
        tta_study(None, IMAGES[:2], np.array([0, 1]), n=2, max_copies=3, predictions=arrays)
