import hashlib

import numpy as np
import pytest

from fer_utils import CLASSES, synthetic
from fer_utils.data import load_dataset
from fer_utils.quality import blank_mask, duplicate_summary


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_seed_gives_byte_identical_zip(tmp_path):
    a = synthetic.generate(tmp_path / "a.zip", n_train=70, n_public=14, n_private=14, seed=5)
    b = synthetic.generate(tmp_path / "b.zip", n_train=70, n_public=14, n_private=14, seed=5)
    c = synthetic.generate(tmp_path / "c.zip", n_train=70, n_public=14, n_private=14, seed=6)
    assert sha(a) == sha(b) != sha(c)


def test_layout_formats_and_marker(synthetic_folder):
    assert (synthetic_folder / "SYNTHETIC.md").read_text().startswith("# Synthetic FER-like data")
    assert {p.suffix for p in (synthetic_folder / "train").rglob("*.*")} == {".png"}
    assert {p.suffix for p in (synthetic_folder / "test").rglob("*.*")} == {".jpg"}
    assert {p.name for p in (synthetic_folder / "train").iterdir()} == set(CLASSES)


def test_class_sizes_follow_fer2013_skew():
    sizes = synthetic.class_sizes(1000)
    assert sum(sizes.values()) == 1000
    assert min(sizes, key=sizes.get) == "disgust" and max(sizes, key=sizes.get) == "happy"
    assert synthetic.class_sizes(10)["disgust"] == 2  # every class keeps at least two


def test_blank_images_and_duplicates_are_planted(synthetic_zip):
    ds = load_dataset(synthetic_zip)
    assert blank_mask(ds.images).sum() == 12  # 4 per split
    dup = duplicate_summary(ds)
    assert dup["across"]["Training/PublicTest"] == 4 and dup["within"]["Training"] == 8


def test_faces_vary_and_differ_by_class():
    rng = np.random.default_rng(0)
    happy = np.stack([synthetic.draw_face("happy", rng) for _ in range(30)]).astype(float)
    sad = np.stack([synthetic.draw_face("sad", rng) for _ in range(30)]).astype(float)
    assert happy.shape == (30, 48, 48) and happy.std(axis=0).mean() > 10
    normalise = lambda x: (x - x.mean(axis=(1, 2), keepdims=True)) / x.std(axis=(1, 2), keepdims=True)  # noqa: E731
    mouth = slice(30, 42), slice(14, 34)
    assert np.abs(normalise(happy).mean(0)[mouth] - normalise(sad).mean(0)[mouth]).mean() > 0.1


def test_never_overwrites(tmp_path):
    target = synthetic.generate(tmp_path / "x.zip", n_train=14, n_public=14, n_private=14)
    with pytest.raises(FileExistsError, match="never written over"):
        synthetic.generate(target)


def test_default_dataset_is_generated_once_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("FER_REPORT_CACHE", str(tmp_path))
    first = synthetic.default_dataset(n_train=14, n_public=14, n_private=14)
    stamp = first.stat().st_mtime_ns
    assert synthetic.default_dataset(n_train=14, n_public=14, n_private=14).stat().st_mtime_ns == stamp
    assert first.parent == tmp_path / "synthetic"
