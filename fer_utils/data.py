"""Read FER2013 from its three public forms into one in-memory :class:`Dataset`.

Supported sources
-----------------
* the Kaggle folder layout ``train/<class>/<image>``, ``test/<class>/<image>`` (JPEG or
  PNG, mixed freely);
* the same layout inside a ``.zip``, read without extracting it;
* the original ``fer2013.csv`` (columns ``emotion``, ``pixels``, ``Usage``).

The FER2013 usage of an image comes from its file-name prefix (``Training_``,
``PublicTest_``, ``PrivateTest_``) or the CSV ``Usage`` column. A file without a known
prefix takes the usage of its folder: ``train/`` -> Training, ``test/`` -> PublicTest.

Decoded arrays are cached on disk (``$FER_REPORT_CACHE`` or ``~/.cache/fer-report``),
keyed by the SHA-256 of the source's content, so a second load skips decoding.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import logging
import os
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from fer_utils import CLASSES, IMAGE_SIZE, USAGES, DataError

log = logging.getLogger("fer_utils")

#: Label order of the original fer2013.csv, mapped to :data:`fer_utils.CLASSES`.
CSV_EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
CSV_TO_LABEL = np.array([CLASSES.index(name) for name in CSV_EMOTIONS])

#: The Kaggle layout's top folders and the usage of an image whose name does not say it.
LAYOUT_FOLDERS = {"train": "Training", "test": "PublicTest"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
CSV_COLUMNS = ("emotion", "pixels", "Usage")
#: File at the root of every dataset written by :mod:`fer_utils.synthetic`.
SYNTHETIC_MARKER = "SYNTHETIC.md"
# Bump when the decoded arrays would change for the same source bytes.
CACHE_VERSION = 2  # 2: 16-bit, bilevel and CMYK images are read (were skipped or refused)


@dataclass
class Dataset:
    """FER2013 images with their labels, usages and source names.

    ``images`` is uint8 (N, 48, 48); ``labels`` indexes :data:`fer_utils.CLASSES`;
    ``usages`` holds ``Training``, ``PublicTest`` or ``PrivateTest``; ``names`` is each
    image's path inside the source (or ``row <n>`` for CSV). ``skipped`` lists the
    ``(name, problem)`` of every item left out by ``skip_bad``. ``synthetic`` is true for
    data made by :mod:`fer_utils.synthetic` (its marker file is in the source).
    """

    images: np.ndarray
    labels: np.ndarray
    usages: np.ndarray
    names: np.ndarray
    source: str
    source_hash: str
    skipped: list[tuple[str, str]] = field(default_factory=list)
    synthetic: bool = False

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index) -> Dataset:
        """The images selected by a boolean mask or an index array."""
        return Dataset(self.images[index], self.labels[index], self.usages[index],
                       self.names[index], self.source, self.source_hash, self.skipped,
                       self.synthetic)

    def usage(self, name: str) -> Dataset:
        """The images of one usage; a clear error when the source has none."""
        if name not in USAGES:
            raise DataError(f"{self.source}: unknown usage {name!r} (expected one of {', '.join(USAGES)})")
        mask = self.usages == name
        if not mask.any():
            present = ", ".join(self.present_usages()) or "none"
            raise DataError(f"{self.source}: no {name} images (usages present: {present})")
        return self.subset(mask)

    def captions(self, index) -> list[str]:
        """"usage\\nclass" of each image of ``index``: what grids of images show under each."""
        return [f"{self.usages[i]}\n{CLASSES[self.labels[i]]}" for i in index]

    def present_usages(self) -> list[str]:
        """The usages this dataset holds, in :data:`fer_utils.USAGES` order."""
        return [u for u in USAGES if (self.usages == u).any()]

    def counts(self) -> pd.DataFrame:
        """Images per usage (rows) and class (columns), with totals."""
        table = pd.crosstab(pd.Categorical(self.usages, categories=self.present_usages()),
                            pd.Categorical(np.asarray(CLASSES)[self.labels], categories=CLASSES),
                            dropna=False)
        table.index.name, table.columns.name = "usage", "class"
        table["total"] = table.sum(axis=1)
        return table


def load_dataset(source, *, skip_bad: bool = False, resize: bool = False,
                 cache: bool = True) -> Dataset:
    """Load FER2013 from a folder, a zip archive or ``fer2013.csv``.

    Parameters
    ----------
    source : path of the folder, ``.zip`` or ``.csv``.
    skip_bad : leave out unreadable or invalid items (each is logged and listed in
        ``Dataset.skipped``) instead of raising :class:`fer_utils.DataError`.
    resize : scale images that are not 48x48 instead of rejecting them.
    cache : read and write the decoded-array cache.
    """
    path = Path(source)
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    reader = _reader_for(path)
    try:
        digest = source_hash(path)
        cache_file = cache_dir() / f"{digest[:24]}-v{CACHE_VERSION}-skip{int(skip_bad)}-resize{int(resize)}.npz"
        dataset = _read_cache(cache_file, str(path), digest) if cache else None
        if dataset is None:
            out = reader(path, skip_bad, resize)
            _log_skipped(out.skipped)
            dataset = _decode(path, out, digest)
            if cache:
                _write_cache(cache_file, dataset)
        else:
            _log_skipped(dataset.skipped)  # a cached load says what it left out too
    except OSError as error:  # permissions, a file that vanished: name it
        raise DataError(f"{error.filename or path}: cannot read ({error.strerror or error}); "
                        f"check that it is readable") from None
    return dataset


def _log_skipped(skipped) -> None:
    for _, problem in skipped:
        log.warning("skipped %s", problem)


def _decode(path: Path, out, digest: str) -> Dataset:
    if not out.labels:
        raise DataError(f"{path}: no images could be loaded")
    return Dataset(np.stack(out.images).astype(np.uint8), np.asarray(out.labels, dtype=np.int64),
                   np.asarray(out.usages), np.asarray(out.names), str(path), digest, out.skipped, out.synthetic)


def cache_dir() -> Path:
    """Folder of the decoded-array cache: ``$FER_REPORT_CACHE`` or ``~/.cache/fer-report``."""
    return Path(os.environ.get("FER_REPORT_CACHE", Path.home() / ".cache" / "fer-report"))


def source_hash(path) -> str:
    """SHA-256 of a source's content (for a folder: every file's relative path and bytes)."""
    path = Path(path)
    digest = hashlib.sha256()
    if path.is_dir():
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
            digest.update(file.read_bytes())
    else:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def decode_image(data: bytes, name: str, *, resize: bool = False) -> np.ndarray:
    """Decode one image file's bytes to a uint8 (48, 48) array.

    Colour, bilevel and 16-bit images are converted to 8-bit grayscale; other sizes are rejected unless
    ``resize``. Raises :class:`fer_utils.DataError` naming ``name`` and the problem.
    """
    if not data:
        raise DataError(f"{name}: empty file (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            if image.mode.startswith("I;16"):  # 16-bit grayscale: scaled to 8 bits
                image = Image.fromarray((np.asarray(image, dtype=np.uint16) // 257).astype(np.uint8))
            elif image.mode not in ("L", "RGB", "RGBA", "LA", "P", "PA", "1", "CMYK", "YCbCr"):
                raise DataError(f"{name}: unsupported image mode {image.mode}")
            image = image.convert("L")
    except UnidentifiedImageError:
        raise DataError(f"{name}: not an image file (unrecognised format)") from None
    except Image.DecompressionBombError as error:
        raise DataError(f"{name}: image too large to decode safely ({error})") from None
    except (OSError, SyntaxError) as error:
        raise DataError(f"{name}: corrupt or truncated image ({error})") from None
    if image.size != (IMAGE_SIZE, IMAGE_SIZE):
        if not resize:
            raise DataError(f"{name}: image is {image.size[0]}x{image.size[1]}, expected "
                            f"{IMAGE_SIZE}x{IMAGE_SIZE} (pass resize=True / --resize to scale it)")
        image = image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def usage_from_name(filename: str, folder: str) -> str:
    """FER2013 usage from a file-name prefix, else from its layout folder (train/, test/)."""
    for usage in USAGES:
        if filename.startswith(usage + "_"):
            return usage
    return LAYOUT_FOLDERS[folder]


def _reader_for(path: Path):
    if path.is_dir():
        return _read_folder
    if path.suffix.lower() == ".csv":
        return _read_csv
    if path.suffix.lower() == ".zip" or zipfile.is_zipfile(path):
        return _read_zip
    raise DataError(f"{path}: unsupported data source (expected a folder, a .zip or a .csv)")


class _Collector:
    """Accumulates decoded items; raises or records problems depending on ``skip_bad``."""

    def __init__(self, skip_bad: bool):
        self.skip_bad = skip_bad
        self.images, self.labels, self.usages, self.names = [], [], [], []
        self.skipped: list[tuple[str, str]] = []
        self.synthetic = False

    def problem(self, name: str, message: str) -> None:
        if not self.skip_bad:
            raise DataError(message)
        self.skipped.append((name, message))

    def add(self, image, label, usage, name) -> None:
        self.images.append(image)
        self.labels.append(label)
        self.usages.append(usage)
        self.names.append(name)


def _layout_members(source: Path, files: list[str], folders: set[str], read, skip_bad, resize):
    """Decode the images of a Kaggle layout given its file list and a byte reader."""
    out = _Collector(skip_bad)
    out.synthetic = SYNTHETIC_MARKER in files
    per_folder = dict.fromkeys(LAYOUT_FOLDERS, 0)
    found_folders = set()
    for member in sorted(files):
        parts = PurePosixPath(member).parts
        if any(p.startswith(".") or p == "__MACOSX" for p in parts):
            continue
        where = next((i for i, p in enumerate(parts) if p in LAYOUT_FOLDERS), None)
        if where is None:
            continue  # files beside the layout (README, licence) are not images
        folder, rest = parts[where], parts[where + 1:]
        found_folders.add(folder)
        label = f"{source}:{member}" if not source.is_dir() else str(source / member)
        if len(rest) != 2:
            out.problem(label, f"{label}: unexpected location (expected {folder}/<class>/<image>)")
            continue
        cls, filename = rest
        if cls not in CLASSES:
            out.problem(label, f"{label}: unknown class folder {folder}/{cls} "
                               f"(expected one of {', '.join(CLASSES)})")
            continue
        if not filename.lower().endswith(IMAGE_SUFFIXES):
            out.problem(label, f"{label}: not an image file (expected .png, .jpg or .jpeg)")
            continue
        try:
            image = decode_image(read(member), label, resize=resize)
        except DataError as error:
            out.problem(label, str(error))
            continue
        out.add(image, CLASSES.index(cls), usage_from_name(filename, folder), member)
        per_folder[folder] += 1
    found_folders |= {p for f in folders for p in PurePosixPath(f).parts[-1:] if p in LAYOUT_FOLDERS}
    if not found_folders:
        raise DataError(f"{source}: no train/ or test/ folder (expected the Kaggle layout "
                        f"train/<class>/<image>, test/<class>/<image>)")
    for folder in sorted(found_folders):
        if per_folder[folder] == 0:
            raise DataError(f"{source}: empty folder {folder}/ (no loadable images)")
    return out


def _read_folder(path: Path, skip_bad: bool, resize: bool):
    items = list(path.rglob("*"))
    files = [p.relative_to(path).as_posix() for p in items if p.is_file()]
    folders = {p.relative_to(path).as_posix() for p in items if p.is_dir()}
    return _layout_members(path, files, folders, lambda m: (path / m).read_bytes(), skip_bad, resize)


def _read_zip(path: Path, skip_bad: bool, resize: bool):
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise DataError(f"{path}: not a zip archive, or a truncated one ({error})") from None
    with archive:
        entries = archive.infolist()
        files = [e.filename for e in entries if not e.is_dir()]
        folders = {e.filename.rstrip("/") for e in entries if e.is_dir()}

        def read(member):
            try:
                return archive.read(member)
            except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, OSError, EOFError,
                    RuntimeError, NotImplementedError) as error:  # the last two: encrypted, unknown method
                raise DataError(f"{path}:{member}: unreadable archive member ({error})") from None

        return _layout_members(path, files, folders, read, skip_bad, resize)


def _read_csv(path: Path, skip_bad: bool, resize: bool):
    out = _Collector(skip_bad)
    # utf-8-sig: Excel's "CSV UTF-8" starts with a byte-order mark
    with open(path, newline="", encoding="utf-8-sig") as handle:
        try:
            reader = csv.DictReader(handle)
            reader.fieldnames = [name.strip() for name in reader.fieldnames or []]  # "emotion, Usage, pixels"
            missing = [c for c in CSV_COLUMNS if c not in reader.fieldnames]
            if missing:
                raise DataError(f"{path}: missing column(s) {', '.join(missing)} "
                                f"(expected {', '.join(CSV_COLUMNS)})")
            for row_number, row in enumerate(reader, start=1):
                name = f"row {row_number}"
                where = f"{path}, row {row_number} (line {reader.line_num})"
                try:
                    image, label, usage = _parse_csv_row(row, where)
                except DataError as error:
                    out.problem(f"{path}, {name}", str(error))
                    continue
                out.add(image, label, usage, name)
        except (UnicodeDecodeError, csv.Error) as error:
            raise DataError(f"{path}: not a text CSV file ({type(error).__name__}: {error})") from None
    if not out.labels and not out.skipped:
        raise DataError(f"{path}: empty CSV (no data rows)")
    return out


def _parse_csv_row(row: dict, where: str):
    empty = [c for c in CSV_COLUMNS if not (row.get(c) or "").strip()]
    if empty:
        raise DataError(f"{where}: missing value for {', '.join(empty)}")
    try:
        emotion = int(row["emotion"])
    except ValueError:
        raise DataError(f"{where}: emotion {row['emotion']!r} is not an integer") from None
    if not 0 <= emotion < len(CSV_EMOTIONS):
        raise DataError(f"{where}: emotion {emotion} out of range 0-{len(CSV_EMOTIONS) - 1}")
    usage = row["Usage"].strip()
    if usage not in USAGES:
        raise DataError(f"{where}: unknown Usage {usage!r} (expected one of {', '.join(USAGES)})")
    try:
        pixels = np.array(row["pixels"].split(), dtype=np.int64)
    except OverflowError:  # beyond 64 bits
        raise DataError(f"{where}: pixel values out of range 0-255") from None
    except ValueError:
        raise DataError(f"{where}: pixels must be integers separated by spaces") from None
    if pixels.size != IMAGE_SIZE * IMAGE_SIZE:
        raise DataError(f"{where}: {pixels.size} pixel values, expected {IMAGE_SIZE * IMAGE_SIZE}")
    if pixels.min() < 0 or pixels.max() > 255:
        raise DataError(f"{where}: pixel values out of range 0-255")
    return pixels.reshape(IMAGE_SIZE, IMAGE_SIZE).astype(np.uint8), int(CSV_TO_LABEL[emotion]), usage


def _write_cache(cache_file: Path, dataset: Dataset) -> None:
    """Save the decoded arrays; a cache that cannot be written (read-only, full) is a warning."""
    tmp = cache_file.with_suffix(f".{os.getpid()}.tmp.npz")
    skipped = np.asarray(dataset.skipped, dtype=str).reshape(-1, 2)
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        np.savez(tmp, images=dataset.images, labels=dataset.labels, usages=dataset.usages,
                 names=dataset.names, skipped=skipped, synthetic=dataset.synthetic, source=dataset.source)
        os.replace(tmp, cache_file)
    except OSError as error:
        with contextlib.suppress(OSError):
            tmp.unlink()
        log.warning("%s: cache not written (%s); set FER_REPORT_CACHE to a writable folder", cache_file, error)


def _read_cache(cache_file: Path, source: str, digest: str) -> Dataset | None:
    """The cached arrays, or None when there are none or they cannot be read (then decoded anew).
    Skipped items are named from ``source``, whichever copy of the same bytes wrote the cache."""
    try:
        with np.load(cache_file) as data:
            written_from = str(data["source"]) if "source" in data.files else source
            skipped = [tuple(source + part.removeprefix(written_from) if part.startswith(written_from) else part
                             for part in item) for item in data["skipped"].tolist()]
            return Dataset(data["images"], data["labels"], data["usages"], data["names"],
                           source, digest, skipped, bool(data["synthetic"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        log.warning("%s: cache not read (%s); decoding the source (delete the file, or set FER_REPORT_CACHE)",
                    cache_file, error)
        return None
