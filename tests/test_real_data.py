"""Checks on the real FER2013 archive; skipped where it is absent (never committed)."""

import os
from pathlib import Path

import pytest

from fer_utils import CLASSES
from fer_utils.data import load_dataset

SOURCE = Path(os.environ.get("FER2013_PATH", Path(__file__).resolve().parents[2] / "shared" / "data" / "fer2013.zip"))
pytestmark = pytest.mark.skipif(not SOURCE.exists(), reason=f"FER2013 not found at {SOURCE} (set FER2013_PATH)")

# Counts from the archive's README.
TRAIN = {"angry": 3995, "disgust": 436, "fear": 4097, "happy": 7215, "neutral": 4965, "sad": 4830, "surprise": 3171}
PUBLIC = {"angry": 467, "disgust": 56, "fear": 496, "happy": 895, "neutral": 607, "sad": 653, "surprise": 415}


@pytest.fixture(scope="module")
def fer2013():
    return load_dataset(SOURCE)


def test_counts_per_usage_and_class_match_the_readme(fer2013):
    counts = fer2013.counts()
    assert fer2013.present_usages() == ["Training", "PublicTest"]
    assert counts.loc["Training", "total"] == 28_709 and counts.loc["PublicTest", "total"] == 3_589
    assert {c: int(counts.loc["Training", c]) for c in CLASSES} == TRAIN
    assert {c: int(counts.loc["PublicTest", c]) for c in CLASSES} == PUBLIC


def test_real_images_are_48x48_uint8_and_not_synthetic(fer2013):
    assert fer2013.images.shape == (32_298, 48, 48) and not fer2013.synthetic
    assert 100 < fer2013.images.mean() < 160
