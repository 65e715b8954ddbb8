import numpy as np
import pytest

from fer_utils import DataError
from fer_utils.prepare import balanced_class_weights, train_val_split

LABELS = np.repeat(np.arange(7), [50, 10, 40, 100, 60, 60, 30])


def test_split_is_stratified_80_20_and_disjoint():
    train, val = train_val_split(LABELS, 0.2, seed=1)
    assert len(train) == 280 and len(val) == 70
    assert not set(train) & set(val) and len(set(train) | set(val)) == len(LABELS)
    np.testing.assert_array_equal(np.bincount(LABELS[val]), [10, 2, 8, 20, 12, 12, 6])


def test_split_is_seeded():
    assert np.array_equal(train_val_split(LABELS, seed=1)[1], train_val_split(LABELS, seed=1)[1])
    assert not np.array_equal(train_val_split(LABELS, seed=1)[1], train_val_split(LABELS, seed=2)[1])


def test_a_zero_fraction_keeps_all_of_training_for_training():
    train, val = train_val_split(LABELS, 0.0)
    assert np.array_equal(train, np.arange(len(LABELS))) and val.size == 0 and val.dtype == train.dtype


def test_split_errors():
    with pytest.raises(ValueError, match=r"val_fraction must be in \[0, 1\), got 1.0"):
        train_val_split(LABELS, 1.0)
    with pytest.raises(DataError, match="class.es. disgust have a single image"):
        train_val_split(np.array([0, 0, 1, 2, 2]))


def test_class_weights_are_balanced():
    weights = balanced_class_weights(LABELS)
    assert weights[3] == pytest.approx(350 / (7 * 100))
    assert weights[1] == pytest.approx(350 / (7 * 10))
    assert list(weights) == list(range(7))


def test_class_weights_need_every_class():
    with pytest.raises(DataError, match="no training images of class.es. surprise"):
        balanced_class_weights(np.arange(6))
