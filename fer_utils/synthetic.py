"""Seeded generator of synthetic, FER-like faces in the Kaggle FER2013 layout.

Each image is a procedurally drawn 48x48 grayscale face. Every class has its own
expression parameters (mouth curve, opening and width, brow slant and height, eye
opening); each face draws them around the class mean, so neighbouring classes overlap,
then gets a random pose, scale, lighting and noise. A CNN learns it well above chance
but not perfectly. Class sizes follow FER2013's skew (few ``disgust``). Like FER2013,
train/ holds PNG files and test/ JPEG files, a few images are blank and a few are exact
duplicates. The same arguments give byte-identical output.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from fer_utils import CLASSES, IMAGE_SIZE
from fer_utils.data import SYNTHETIC_MARKER, cache_dir

#: FER2013 Training images per class (README of the shared archive): the class skew.
FER2013_TRAIN_COUNTS = {"angry": 3995, "disgust": 436, "fear": 4097, "happy": 7215,
                        "neutral": 4965, "sad": 4830, "surprise": 3171}

# Class means of (mouth curve, mouth opening, mouth half-width, brow slant, brow lift,
# eye opening), in pixels of the 96x96 drawing canvas (slant: inner-end drop ratio).
EXPRESSIONS = {
    "angry":    (-2.0, 0.10, 11.0, 0.45, 3.0, 3.0),
    "disgust":  (-5.0, 0.25, 9.0, 0.30, 3.5, 2.5),
    "fear":     (-2.0, 0.55, 13.0, -0.35, 9.0, 6.0),
    "happy":    (7.0, 0.30, 14.0, 0.00, 6.0, 3.5),
    "neutral":  (0.0, 0.00, 11.0, 0.00, 6.0, 4.5),
    "sad":      (-5.0, 0.00, 10.0, -0.35, 6.0, 3.5),
    "surprise": (0.0, 0.95, 8.0, -0.10, 11.0, 6.5),
}
# Per-face spread of each parameter around its class mean (same units).
SPREAD = np.array([3.0, 0.20, 2.0, 0.22, 2.2, 1.3])
CANVAS = 96
#: Bump whenever the generator's output changes, so cached default datasets are remade.
GENERATOR_VERSION = 2

README = """# Synthetic FER-like data

Made by `fer_utils.synthetic.generate` (seed {seed}). These are procedurally drawn
faces, NOT FER2013: results computed from them say nothing about real facial
expressions. Layout: train/<class>/Training_*.png, test/<class>/PublicTest_*.jpg and
PrivateTest_*.jpg.
"""


def class_sizes(total: int) -> dict[str, int]:
    """Split ``total`` images over the classes in FER2013's proportions (at least 2 each)."""
    weights = np.array([FER2013_TRAIN_COUNTS[c] for c in CLASSES], dtype=float)
    sizes = np.maximum(2, np.floor(total * weights / weights.sum())).astype(int)
    sizes[np.argmax(weights)] += max(0, total - sizes.sum())
    return dict(zip(CLASSES, sizes.tolist()))


def draw_face(cls: str, rng: np.random.Generator) -> np.ndarray:
    """One synthetic face of class ``cls`` as a uint8 (48, 48) array."""
    curve, opening, half_width, slant, lift, eye = np.asarray(EXPRESSIONS[cls]) + rng.normal(0, SPREAD)
    opening, half_width, eye = max(opening, 0.0), max(half_width, 5.0), max(eye, 0.8)
    background = int(rng.integers(20, 235))
    skin = int(np.clip(background + rng.choice([-1, 1]) * rng.integers(50, 110), 60, 230))
    dark = int(np.clip(skin - rng.integers(70, 120), 0, 255))
    image = Image.new("L", (CANVAS, CANVAS), background)
    pen = ImageDraw.Draw(image)
    cx, cy = CANVAS / 2, CANVAS / 2 + 4
    pen.ellipse([cx - 30, cy - 38, cx + 30, cy + 38], fill=skin)
    for side in (-1, 1):
        ex, ey = cx + side * 13, cy - 9
        pen.ellipse([ex - 6, ey - eye / 2, ex + 6, ey + eye / 2], fill=dark)
        inner, outer = ex - side * 2, ex + side * 8
        brow_y = ey - eye / 2 - lift
        pen.line([(inner, brow_y + slant * 8), (outer, brow_y - slant * 2)], fill=dark, width=3)
    pen.line([(cx, cy - 4), (cx - 2, cy + 8)], fill=dark, width=2)
    xs = np.linspace(-half_width, half_width, 17)
    upper = cy + 20 + curve * (0.5 - (xs / half_width) ** 2)
    lower = upper + opening * 14 * (1 - (xs / half_width) ** 2)
    outline = [(cx + x, y) for x, y in zip(xs, upper)] + [(cx + x, y) for x, y in zip(xs[::-1], lower[::-1])]
    pen.polygon(outline, fill=dark)
    pen.line([(cx + x, y) for x, y in zip(xs, upper)], fill=dark, width=2)
    angle, scale = np.deg2rad(rng.normal(0, 7)), rng.uniform(0.85, 1.15)
    shift_x, shift_y = rng.normal(0, 3, size=2)
    cos, sin = np.cos(angle) / scale, np.sin(angle) / scale
    centre = CANVAS / 2
    matrix = (cos, sin, centre - cos * (centre + shift_x) - sin * (centre + shift_y),
              -sin, cos, centre + sin * (centre + shift_x) - cos * (centre + shift_y))
    image = image.transform((CANVAS, CANVAS), Image.Transform.AFFINE, matrix,
                            resample=Image.Resampling.BILINEAR, fillcolor=background)
    image = image.filter(ImageFilter.GaussianBlur(1.0))
    pixels = np.asarray(image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BOX), dtype=float)
    ramp = np.linspace(-1, 1, IMAGE_SIZE)
    light = 1 + rng.uniform(-0.25, 0.25) * ramp[None, :] + rng.uniform(-0.25, 0.25) * ramp[:, None]
    pixels = pixels * light * rng.uniform(0.75, 1.2) + rng.normal(0, rng.uniform(3, 12), pixels.shape)
    return np.clip(pixels, 0, 255).astype(np.uint8)


def generate(out, *, n_train: int = 1200, n_public: int = 300, n_private: int = 300,
             seed: int = 0, n_blank: int = 4, n_duplicates: int = 4) -> Path:
    """Write a synthetic dataset in the Kaggle layout to ``out`` (a folder, or a ``.zip``).

    ``n_blank`` blank (constant) images go into each split; ``n_duplicates`` Training
    images are exact copies of test images and as many duplicate other Training images.
    Returns ``out`` as a Path. Refuses to overwrite an existing path.
    """
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out}: already exists; synthetic data is never written over")
    rng = np.random.default_rng(seed)
    files = {SYNTHETIC_MARKER: README.format(seed=seed).encode()}
    test_pixels = []
    next_id = 100000
    for usage, total, suffix in (("PublicTest", n_public, ".jpg"), ("PrivateTest", n_private, ".jpg"),
                                 ("Training", n_train, ".png")):
        split = "train" if usage == "Training" else "test"
        faces = [(cls, draw_face(cls, rng)) for cls, n in class_sizes(total).items() for _ in range(n)]
        # blanks go between the first images (copied as duplicates) and the second half
        slots = np.arange(n_duplicates, max(n_duplicates, len(faces) // 2))
        for k, i in enumerate(rng.choice(slots, size=min(n_blank, len(slots)), replace=False)):
            faces[i] = (faces[i][0], np.full((IMAGE_SIZE, IMAGE_SIZE), 255 * (k % 2), np.uint8))
        if usage == "Training":
            for k in range(min(n_duplicates, len(test_pixels))):
                faces[-1 - k] = test_pixels[k]
                faces[-1 - n_duplicates - k] = faces[k]
        for cls, pixels in faces:
            data = _encode(pixels, suffix)
            files[f"{split}/{cls}/{usage}_{next_id:08d}{suffix}"] = data
            if split == "test" and len(test_pixels) < n_duplicates:
                test_pixels.append((cls, np.asarray(Image.open(io.BytesIO(data)))))
            next_id += 1
    _write(out, files)
    return out


def default_dataset(*, n_train: int = 1200, n_public: int = 300, n_private: int = 300,
                    seed: int = 0) -> Path:
    """Path of a cached synthetic zip for these arguments, generated on first use."""
    path = cache_dir() / "synthetic" / f"synthetic-v{GENERATOR_VERSION}-{n_train}-{n_public}-{n_private}-seed{seed}.zip"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.stem + ".partial.zip")
        tmp.unlink(missing_ok=True)
        generate(tmp, n_train=n_train, n_public=n_public, n_private=n_private, seed=seed)
        tmp.replace(path)
    return path


def _encode(pixels: np.ndarray, suffix: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG" if suffix == ".png" else "JPEG", quality=95)
    return buffer.getvalue()


def _write(out: Path, files: dict[str, bytes]) -> None:
    if out.suffix.lower() == ".zip":
        out.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
            for name, data in files.items():
                archive.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)
        return
    for name, data in files.items():
        target = out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
