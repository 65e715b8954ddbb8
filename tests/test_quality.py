import numpy as np
import pytest

from fer_utils.data import Dataset
from fer_utils.quality import (
    blank_counts,
    blank_mask,
    duplicate_groups,
    duplicate_pairs,
    duplicate_summary,
    has_copy_in,
    image_digests,
    train_test_duplicates,
)


def make(images, usages):
    images = np.asarray(images, dtype=np.uint8)
    n = len(images)
    return Dataset(images, np.zeros(n, np.int64), np.asarray(usages), np.asarray([f"i{k}" for k in range(n)]),
                   "mem", "0" * 64)


def img(seed):
    return np.random.default_rng(seed).integers(0, 256, (48, 48))


BLACK, WHITE = np.zeros((48, 48)), np.full((48, 48), 255)
NEAR_FLAT = np.full((48, 48), 128) + (np.arange(48 * 48).reshape(48, 48) % 2)  # std 0.5


def test_blank_mask_threshold():
    mask = blank_mask(np.stack([BLACK, WHITE, NEAR_FLAT, img(1)]).astype(np.uint8))
    assert mask.tolist() == [True, True, True, False]
    assert blank_mask(np.stack([NEAR_FLAT]).astype(np.uint8), max_std=0.4).tolist() == [False]
    with pytest.raises(ValueError, match=r"shape \(N, H, W\)"):
        blank_mask(np.zeros((2, 48, 48, 1)))


def test_blank_counts_per_usage():
    ds = make([BLACK, img(1), WHITE, img(2)], ["Training", "Training", "PublicTest", "PublicTest"])
    assert blank_counts(ds) == {"Training": 1, "PublicTest": 1}


def test_image_digests_are_equal_exactly_for_equal_pixels():
    images = np.zeros((3, 48, 48), np.uint8)
    images[2, 0, 0] = 1
    digests = image_digests(images)
    assert len(digests) == 3 and digests[0] == digests[1] != digests[2]


def test_duplicate_groups_find_equal_images_only():
    groups = duplicate_groups(np.stack([img(1), img(2), img(1), img(3), img(2), img(1)]).astype(np.uint8))
    assert sorted(groups.groupby("group")["index"].apply(list).tolist()) == [[0, 2, 5], [1, 4]]


def test_duplicate_summary_within_and_across():
    ds = make([img(1), img(1), img(2), img(2), img(3), BLACK, BLACK],
              ["Training", "Training", "Training", "PublicTest", "PrivateTest", "Training", "PublicTest"])
    summary = duplicate_summary(ds)
    assert summary == {"groups": 2, "images": 4, "within": {"Training": 2, "PublicTest": 0, "PrivateTest": 0},
                       "across": {"Training/PublicTest": 1, "Training/PrivateTest": 0, "PublicTest/PrivateTest": 0},
                       "conflicting_labels": 0}
    assert duplicate_summary(ds, include_blank=True)["across"]["Training/PublicTest"] == 2
    ds.labels[1] = 3  # the two copies of img(1) now disagree
    assert duplicate_summary(ds)["conflicting_labels"] == 1


def test_has_copy_in_marks_images_whose_pixels_appear_among_the_others():
    images = np.stack([img(1), img(2), img(3)]).astype(np.uint8)
    assert has_copy_in(images, np.stack([img(3), img(1)]).astype(np.uint8)).tolist() == [True, False, True]
    assert has_copy_in(images, images[:0]).tolist() == [False, False, False]


def test_train_test_duplicates_marks_training_copies_of_test_images():
    ds = make([img(1), img(2), img(2), img(1), BLACK, BLACK],
              ["Training", "Training", "PublicTest", "Training", "Training", "PrivateTest"])
    assert train_test_duplicates(ds).tolist() == [False, True, False, False, False, False]


def test_duplicate_pairs_mix_within_training_and_across_usages_and_compare_labels():
    ds = make([img(1), img(1), img(2), img(2), img(3), img(3), img(2), BLACK, BLACK],
              ["Training", "Training", "Training", "Training", "Training", "PublicTest", "PrivateTest",
               "Training", "Training"])
    ds.labels[:] = [0, 0, 1, 1, 2, 5, 1, 0, 0]
    pairs = duplicate_pairs(ds, n=2)
    assert pairs.to_dict("records") == [
        {"first": 0, "second": 1, "within_training": True, "same_label": True},
        {"first": 2, "second": 6, "within_training": False, "same_label": True}]
    every = duplicate_pairs(ds, n=8)
    assert len(every) == 3 and every.loc[2].to_dict() == {"first": 4, "second": 5, "within_training": False,
                                                          "same_label": False}
    assert duplicate_pairs(make([img(1), img(2)], ["Training"] * 2)).empty
