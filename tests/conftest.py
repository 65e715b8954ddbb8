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


@pytest.fixture(scope="session")
def saved_model(tmp_path_factory):
    """An untrained grayscale vgg_gap saved as .keras (enough for schemas and shapes)."""
    import keras

    from fer_utils.models import build_model

    keras.utils.set_random_seed(0)
    path = tmp_path_factory.mktemp("model") / "model.keras"
    build_model("vgg_gap").save(path)
    return path


def drawn_face_photo(path, *, colour: bool = True, size: int = 300):
    """A drawn frontal face that OpenCV's Haar cascade detects, saved as an ordinary photo."""
    import cv2

    img = np.full((size, size), 200, np.uint8)
    cv2.ellipse(img, (150, 160), (80, 105), 0, 0, 360, 150, -1)
    for x in (115, 185):
        cv2.ellipse(img, (x, 135), (18, 9), 0, 0, 360, 40, -1)
        cv2.line(img, (x - 22, 112), (x + 22, 112), 60, 6)
    cv2.line(img, (150, 140), (150, 185), 110, 6)
    cv2.ellipse(img, (150, 210), (35, 12), 0, 0, 180, 50, 5)
    img = cv2.GaussianBlur(img, (7, 7), 2)
    if colour:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
        img[..., 2] = np.clip(img[..., 2].astype(int) + 30, 0, 255)
    cv2.imwrite(str(path), img)
    return path
