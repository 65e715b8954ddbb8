import json
from dataclasses import replace

import numpy as np
import pytest

from fer_utils import CLASSES, DataError
from fer_utils.data import load_dataset
from fer_utils.prepare import load_prepared, prepare, save_prepared


@pytest.fixture(scope="module")
def dataset(synthetic_zip):
    return load_dataset(synthetic_zip)


def test_prepare_drops_blanks_and_splits_training(dataset):
    prepared = prepare(dataset, val_fraction=0.2, seed=0)
    assert prepared.removed == {"blank": {"Training": 4, "PublicTest": 4, "PrivateTest": 4},
                                "train_test_duplicates": 0}
    assert len(prepared.images) == len(dataset) - 12
    assert prepared.splits() == ["train", "val", "test"]
    assert prepared.test_usages() == ["PublicTest", "PrivateTest"]
    assert prepared.scored_usages(["PrivateTest", "Training", "PublicTest"]) == ["PrivateTest", "PublicTest"]
    assert prepared.scored_usages("PublicTest") == ["PublicTest"]
    with pytest.raises(DataError, match="no test images of Public; this data has test usages: PublicTest, PrivateTest"):
        prepared.scored_usages(["Public"])
    assert set(prepared.usage[prepared.split != "test"]) == {"Training"}
    assert (prepared.split == "test").sum() == len(prepared.arrays("test", "PublicTest")[0]) * 2
    train, val = (prepared.split == "train").sum(), (prepared.split == "val").sum()
    assert train + val == 136 and val == 28
    assert set(prepared.class_weights) == set(range(len(CLASSES))) and prepared.synthetic


def test_prepare_can_drop_training_copies_of_test_images(dataset):
    prepared = prepare(dataset, drop_test_duplicates=True)
    assert prepared.removed["train_test_duplicates"] == 4
    assert len(prepared.images) == len(dataset) - 16


def test_save_and_load_round_trip(dataset, tmp_path):
    prepared = prepare(dataset, seed=1)
    save_prepared(prepared, tmp_path)
    again = load_prepared(tmp_path)
    np.testing.assert_array_equal(again.images, prepared.images)
    np.testing.assert_array_equal(again.split, prepared.split)
    np.testing.assert_array_equal(again.usage, prepared.usage)
    assert again.class_weights == pytest.approx(prepared.class_weights)
    meta = json.loads((tmp_path / "data" / "prepared.json").read_text())
    assert meta["split_sizes"] == {"train": 108, "val": 28, "test": 62}
    assert meta["test_usage_sizes"] == {"PublicTest": 31, "PrivateTest": 31} and "disgust" in meta["class_weights"]
    assert meta["val_copies_in_train"] == 0
    train_images = prepared.arrays("train")[0]
    copied = prepared.images.copy()
    copied[np.flatnonzero(prepared.split == "val")[:2]] = train_images[:2]  # two validation images copy training ones
    save_prepared(replace(prepared, images=copied), tmp_path)
    assert json.loads((tmp_path / "data" / "prepared.json").read_text())["val_copies_in_train"] == 2


def test_missing_split_and_missing_file_errors(dataset, tmp_path):
    prepared = prepare(dataset)
    with pytest.raises(DataError, match="no 'Validation' images"):
        prepared.arrays("Validation")
    with pytest.raises(DataError, match=r"no 'test' images of usage 'Training' \(test usages: PublicTest, Private"):
        prepared.arrays("test", "Training")
    with pytest.raises(DataError, match=r"prepared\.npz: not found; run the preprocessing notebook"):
        load_prepared(tmp_path)


def test_split_table_counts_images_per_split_and_class(dataset):
    prepared = prepare(dataset)
    table = prepared.split_table()
    assert list(table.index) == ["train", "val", "test: PublicTest", "test: PrivateTest", "total"]
    assert list(table.columns) == [*CLASSES, "total"]
    assert table.loc["val", "total"] == 28 and table.loc["total", "total"] == len(prepared.images)
    assert table.loc["test: PublicTest", "happy"] == (prepared.arrays("test", "PublicTest")[1] == 3).sum()


def test_train_sample_keeps_a_stratified_fraction_of_train_only(dataset):
    prepared = prepare(dataset)
    sample = prepared.train_sample(0.5, seed=1)
    n_train = (prepared.split == "train").sum()
    assert abs((sample.split == "train").sum() - n_train / 2) <= len(CLASSES)
    for split in ("val", "test"):
        np.testing.assert_array_equal(sample.arrays(split)[0], prepared.arrays(split)[0])
    full = np.bincount(prepared.arrays("train")[1], minlength=len(CLASSES)) / n_train
    half = np.bincount(sample.arrays("train")[1], minlength=len(CLASSES)) / (sample.split == "train").sum()
    np.testing.assert_allclose(half, full, atol=0.02)
    assert sample.class_weights == prepared.class_weights
    assert prepared.train_sample(1.0) is prepared
    with pytest.raises(ValueError, match="fraction must be in"):
        prepared.train_sample(0)
