"""Fixtures: small synthetic datasets in every supported form."""

import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from fer_utils import synthetic

SMALL = dict(n_train=140, n_public=35, n_private=35, seed=3)


@pytest.fixture(scope="session")
def synthetic_zip(tmp_path_factory):
    return synthetic.generate(tmp_path_factory.mktemp("syn") / "small.zip", **SMALL)


@pytest.fixture(scope="session")
def synthetic_folder(tmp_path_factory):
    return synthetic.generate(tmp_path_factory.mktemp("syn") / "small", **SMALL)


def png_bytes(pixels: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def face(value: int = 0, size: int = 48) -> np.ndarray:
    """A non-blank test image: a gradient plus ``value``."""
    ramp = np.add.outer(np.arange(size), np.arange(size)) % 200
    return (ramp + value).astype(np.uint8)


def write_layout(root, files: dict) -> None:
    """Write ``{relative path: bytes}`` as a folder."""
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def write_zip(path, files: dict) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)


@pytest.fixture
def good_files():
    """A minimal valid Kaggle layout: two images per split."""
    return {
        "train/happy/Training_1.png": png_bytes(face(1)),
        "train/sad/Training_2.png": png_bytes(face(2)),
        "test/angry/PublicTest_3.jpg": png_bytes(face(3), "JPEG"),
        "test/fear/PrivateTest_4.jpg": png_bytes(face(4), "JPEG"),
    }
