"""Faces in ordinary photos: OpenCV's bundled Haar cascade finds them, each is cropped and
scaled to the model's 48x48 grayscale input. Nothing is downloaded at run time."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from fer_utils import IMAGE_SIZE, DataError

CASCADE_FILE = "haarcascade_frontalface_default.xml"


@lru_cache(maxsize=1)
def _cascade() -> cv2.CascadeClassifier:
    cascade = cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / CASCADE_FILE))
    if cascade.empty():
        raise RuntimeError(f"OpenCV's {CASCADE_FILE} is missing: install opencv-python-headless<5")
    return cascade


def read_gray(path) -> np.ndarray:
    """Any JPEG/PNG (colour, grayscale, with alpha, 16-bit) as uint8 grayscale, turned upright
    by its EXIF orientation (as :func:`annotate` draws it); a named error otherwise."""
    path = Path(path)
    try:
        data = np.frombuffer(path.read_bytes(), np.uint8)
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error.strerror})") from None
    image = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE | cv2.IMREAD_ANYDEPTH) if data.size else None
    if image is None:
        raise DataError(f"{path}: not a readable image (expected JPEG or PNG)")
    return (image // 257).astype(np.uint8) if image.dtype == np.uint16 else image


#: Smallest face side, in pixels, the detector looks for in a photo.
MIN_FACE = 40


def detect_faces(gray: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Face boxes ``(x, y, width, height)``, largest first. A 48x48 image is one face crop."""
    if gray.shape == (IMAGE_SIZE, IMAGE_SIZE):
        return [(0, 0, IMAGE_SIZE, IMAGE_SIZE)]
    boxes = _cascade().detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(MIN_FACE, MIN_FACE))
    return sorted((tuple(int(v) for v in box) for box in boxes), key=lambda b: -b[2] * b[3])


def crop_faces(gray: np.ndarray, boxes) -> np.ndarray:
    """The boxes cut out and scaled to (len(boxes), 48, 48) uint8."""
    crops = [cv2.resize(gray[y:y + h, x:x + w], (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_AREA)
             for x, y, w, h in boxes]
    return np.stack(crops) if crops else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8)


def annotate(path, boxes, captions, out_path) -> Path:
    """Write a copy of the photo at ``path`` with each box and its caption drawn on it."""
    image = cv2.imdecode(np.frombuffer(Path(path).read_bytes(), np.uint8), cv2.IMREAD_COLOR)
    for (x, y, w, h), caption in zip(boxes, captions):
        cv2.rectangle(image, (x, y), (x + w, y + h), (0, 200, 0), 2)
        cv2.putText(image, caption, (x, max(12, y - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 200, 0), 1, cv2.LINE_AA)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out_path), image)
    return out_path
