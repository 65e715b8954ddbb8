import csv
import io
import logging
import shutil
import struct
import zipfile

import numpy as np
import pytest
from PIL import Image

from fer_utils import CLASSES, DataError
from fer_utils import data as fdata
from fer_utils.data import CSV_TO_LABEL, decode_image, load_dataset, usage_from_name

from .conftest import face, png_bytes, write_layout, write_zip


def test_zip_loads_images_labels_usages_and_names(synthetic_zip):
    ds = load_dataset(synthetic_zip)
    assert ds.images.shape == (210, 48, 48) and ds.images.dtype == np.uint8
    assert ds.labels.dtype == np.int64 and set(ds.labels) == set(range(7))
    assert ds.present_usages() == ["Training", "PublicTest", "PrivateTest"]
    assert (ds.usages == "Training").sum() == 140
    assert ds.names[0].startswith("test/angry/P")
    assert ds.synthetic and len(ds.source_hash) == 64


def test_folder_and_zip_of_the_same_data_give_the_same_arrays(synthetic_zip, synthetic_folder):
    a, b = load_dataset(synthetic_zip), load_dataset(synthetic_folder)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.names, b.names)


def test_counts_table_has_usages_classes_and_total(synthetic_zip):
    counts = load_dataset(synthetic_zip).counts()
    assert list(counts.columns) == [*CLASSES, "total"]
    assert counts.loc["PublicTest", "total"] == 35
    assert counts["total"].sum() == 210


def test_mixed_png_and_jpeg_and_prefix_usages(tmp_path, good_files):
    write_layout(tmp_path, good_files)
    ds = load_dataset(tmp_path, cache=False)
    assert sorted(ds.usages) == ["PrivateTest", "PublicTest", "Training", "Training"]
    assert [CLASSES[k] for k in ds.labels] == ["angry", "fear", "happy", "sad"]


def test_usage_comes_from_prefix_else_from_folder():
    assert usage_from_name("PrivateTest_9.jpg", "test") == "PrivateTest"
    assert usage_from_name("Training_9.png", "train") == "Training"
    assert usage_from_name("im0.png", "test") == "PublicTest"
    assert usage_from_name("im0.png", "train") == "Training"


def test_csv_label_order_is_mapped_to_class_order():
    # fer2013.csv numbers 0 angry ... 4 sad, 5 surprise, 6 neutral; CLASSES are alphabetical
    assert CSV_TO_LABEL.tolist() == [0, 1, 2, 3, 5, 6, 4]


def write_csv(path, rows, header=("emotion", "pixels", "Usage")):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def pixels(value=7, n=2304):
    return " ".join([str(value)] * (n - 1) + ["200"])


def test_csv_reads_labels_through_the_mapping(tmp_path):
    path = write_csv(tmp_path / "fer2013.csv", [(4, pixels(), "Training"), (6, pixels(9), "PrivateTest"),
                                                 (0, pixels(), "PublicTest")])
    ds = load_dataset(path, cache=False)
    assert [CLASSES[k] for k in ds.labels] == ["sad", "neutral", "angry"]
    assert list(ds.usages) == ["Training", "PrivateTest", "PublicTest"]
    assert ds.images[1, 0, 0] == 9 and ds.images[1, -1, -1] == 200
    assert list(ds.names) == ["row 1", "row 2", "row 3"]


@pytest.mark.parametrize("row, problem", [
    ((1, pixels(n=2303), "Training"), "row 2 (line 3): 2303 pixel values, expected 2304"),
    ((7, pixels(), "Training"), "row 2 (line 3): emotion 7 out of range 0-6"),
    (("", pixels(), "Training"), "row 2 (line 3): missing value for emotion"),
    ((1, pixels(), "Validation"), "row 2 (line 3): unknown Usage 'Validation'"),
    ((1, "1 2 x", "Training"), "row 2 (line 3): pixels must be integers"),
    ((1, pixels(300), "Training"), "row 2 (line 3): pixel values out of range 0-255"),
    ((1, "99999999999999999999 " * 2304, "Training"), "row 2 (line 3): pixel values out of range 0-255"),
    ((99999999999999999999, pixels(), "Training"), "row 2 (line 3): emotion 99999999999999999999 out of range"),
])
def test_bad_csv_rows_name_file_row_and_problem(tmp_path, row, problem):
    path = write_csv(tmp_path / "bad.csv", [(0, pixels(), "Training"), row])
    with pytest.raises(DataError, match=r"bad\.csv, " + problem.replace("(", r"\(").replace(")", r"\)")):
        load_dataset(path, cache=False)
    ds = load_dataset(path, cache=False, skip_bad=True)
    assert len(ds) == 1 and ds.skipped[0][0].endswith("bad.csv, row 2")


def test_csv_missing_column(tmp_path):
    path = write_csv(tmp_path / "nocol.csv", [(0, pixels())], header=("emotion", "pixels"))
    with pytest.raises(DataError, match=r"nocol\.csv: missing column\(s\) Usage"):
        load_dataset(path, cache=False)


def test_kaggle_icml_csv_with_spaces_after_the_commas_is_read(tmp_path):
    path = tmp_path / "icml_face_data.csv"
    path.write_text(f"emotion, Usage, pixels\n3, Training, {pixels()}\n0, PublicTest, {pixels(9)}\n")
    ds = load_dataset(path, cache=False)
    assert [CLASSES[k] for k in ds.labels] == ["happy", "angry"] and list(ds.usages) == ["Training", "PublicTest"]


def test_csv_without_rows_is_an_empty_split(tmp_path):
    with pytest.raises(DataError, match=r"empty\.csv: empty CSV \(no data rows\)"):
        load_dataset(write_csv(tmp_path / "empty.csv", []), cache=False)


BAD_ITEMS = {
    "corrupt jpeg": ("test/angry/PublicTest_9.jpg", lambda: png_bytes(face(), "JPEG")[:200],
                     "corrupt or truncated image"),
    "text file as png": ("train/happy/Training_9.png", lambda: b"hello, not an image",
                         "not an image file"),
    "wrong extension": ("train/happy/notes.txt", lambda: b"text", "not an image file"),
    "wrong size": ("train/happy/Training_9.png", lambda: png_bytes(face(size=64)),
                   "image is 64x64, expected 48x48"),
    "unknown class": ("train/happyy/Training_9.png", lambda: png_bytes(face()),
                      "unknown class folder train/happyy"),
    "too deep": ("train/happy/extra/Training_9.png", lambda: png_bytes(face()),
                 "unexpected location"),
    "zero bytes": ("train/happy/Training_9.png", lambda: b"", "empty file (0 bytes)"),
    "decompression bomb": ("train/happy/Training_9.png", lambda: png_bytes(np.zeros((5000, 5000), np.uint8)),
                           "image too large to decode safely"),
}


@pytest.mark.parametrize("case", BAD_ITEMS)
@pytest.mark.parametrize("form", ["folder", "zip"])
def test_bad_items_raise_named_errors_or_are_skipped(tmp_path, good_files, case, form, monkeypatch, caplog):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000_000)  # a 25-megapixel PNG is then a bomb
    name, make, problem = BAD_ITEMS[case]
    files = {**good_files, name: make()}
    source = tmp_path / "data"
    if form == "zip":
        source = tmp_path / "data.zip"
        write_zip(source, files)
    else:
        write_layout(source, files)
    with pytest.raises(DataError) as error:
        load_dataset(source, cache=False)
    assert name in str(error.value) and problem in str(error.value)
    with caplog.at_level(logging.WARNING):
        ds = load_dataset(source, cache=False, skip_bad=True)
    assert len(ds) == 4
    assert len(ds.skipped) == 1 and name in ds.skipped[0][0] and problem in ds.skipped[0][1]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].count(name) == 1


def test_csv_with_a_byte_order_mark_is_read(tmp_path):
    path = write_csv(tmp_path / "excel.csv", [(3, pixels(), "Training")])
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert [CLASSES[k] for k in load_dataset(path, cache=False).labels] == ["happy"]


def test_binary_file_named_csv_is_a_named_error(tmp_path):
    path = tmp_path / "binary.csv"
    path.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(DataError, match=r"binary\.csv: not a text CSV file"):
        load_dataset(path, cache=False)


def test_16_bit_bilevel_and_cmyk_images_are_read_and_float_images_named():
    import cv2  # noqa: PLC0415

    def encoded(mode, fmt, value):
        buffer = io.BytesIO()
        Image.new(mode, (48, 48), value).save(buffer, fmt)
        return buffer.getvalue()

    deep = cv2.imencode(".png", np.full((48, 48), 257 * 100, np.uint16))[1].tobytes()
    assert decode_image(deep, "deep.png")[0, 0] == 100  # scaled, not clipped to 255
    assert decode_image(encoded("1", "PNG", 1), "bilevel.png")[0, 0] == 255
    assert decode_image(encoded("CMYK", "JPEG", (0, 0, 0, 100)), "print.jpg")[0, 0] == pytest.approx(155, abs=2)
    with pytest.raises(DataError, match=r"float\.png: unsupported image mode F"):
        decode_image(encoded("F", "TIFF", 0.5), "float.png")


def test_rgb_is_converted_and_other_sizes_resized_on_request():
    rgb = np.stack([face(), face(5), face(9)], axis=-1)
    gray = decode_image(png_bytes(rgb), "rgb.png")
    assert gray.shape == (48, 48) and gray.dtype == np.uint8
    big = decode_image(png_bytes(face(size=96)), "big.png", resize=True)
    assert big.shape == (48, 48)


def test_empty_split_is_an_error(tmp_path, good_files):
    write_layout(tmp_path, {k: v for k, v in good_files.items() if k.startswith("train/")})
    (tmp_path / "test" / "angry").mkdir(parents=True)
    with pytest.raises(DataError, match=r"empty folder test/ \(no loadable images\)"):
        load_dataset(tmp_path, cache=False)


def test_source_without_layout_is_an_error(tmp_path):
    write_layout(tmp_path, {"images/a.png": png_bytes(face())})
    with pytest.raises(DataError, match=r"no train/ or test/ folder"):
        load_dataset(tmp_path, cache=False)


def test_truncated_and_non_zip_archives(tmp_path, synthetic_zip):
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(synthetic_zip.read_bytes()[: synthetic_zip.stat().st_size // 2])
    with pytest.raises(DataError, match=r"truncated\.zip: not a zip archive, or a truncated one"):
        load_dataset(truncated, cache=False)
    fake = tmp_path / "fake.zip"
    fake.write_text("not a zip")
    with pytest.raises(DataError, match=r"fake\.zip: not a zip archive"):
        load_dataset(fake, cache=False)


def corrupt_deflate_zip(path, files, member):
    """A zip whose ``member`` has an invalid deflate stream (zlib's "invalid block type")."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(member)
    raw = bytearray(path.read_bytes())
    name_length, extra_length = struct.unpack("<HH", raw[info.header_offset + 26:info.header_offset + 30])
    raw[info.header_offset + 30 + name_length + extra_length] = 0x07  # final block of reserved type 3
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("failure", ["corrupt deflate", "encrypted", "unsupported compression"])
def test_unreadable_zip_members_are_named_and_skippable(tmp_path, good_files, failure, monkeypatch):
    source, member = tmp_path / "data.zip", "train/sad/Training_2.png"
    corrupt_deflate_zip(source, good_files, member)
    if failure != "corrupt deflate":
        error = (RuntimeError(f"File {member!r} is encrypted, password required") if failure == "encrypted"
                 else NotImplementedError("That compression method is not supported"))
        read = zipfile.ZipFile.read

        def failing(self, name, pwd=None):
            if name == member:
                raise error
            return read(self, name, pwd)

        monkeypatch.setattr(zipfile.ZipFile, "read", failing)
    with pytest.raises(DataError, match=rf"data\.zip:{member}: unreadable archive member"):
        load_dataset(source, cache=False)
    assert len(load_dataset(source, cache=False, skip_bad=True)) == 3


def test_an_unreadable_source_is_a_named_error(tmp_path, good_files, monkeypatch):
    write_layout(tmp_path / "data", good_files)
    locked = tmp_path / "data" / "train" / "sad" / "Training_2.png"

    def denied(path):
        raise PermissionError(13, "Permission denied", str(locked))

    monkeypatch.setattr(fdata, "source_hash", denied)
    with pytest.raises(DataError, match=r"Training_2\.png: cannot read \(Permission denied\)"):
        load_dataset(tmp_path / "data", cache=False)


def test_a_cache_that_cannot_be_written_is_a_warning_not_a_failure(tmp_path, good_files, monkeypatch, caplog):
    (tmp_path / "file").write_text("a file where the cache folder should be")
    monkeypatch.setenv("FER_REPORT_CACHE", str(tmp_path / "file" / "cache"))
    write_zip(tmp_path / "data.zip", good_files)
    with caplog.at_level(logging.WARNING):
        assert len(load_dataset(tmp_path / "data.zip")) == 4
    assert any("cache not written" in r.getMessage() and "FER_REPORT_CACHE" in r.getMessage()
               for r in caplog.records)


def test_a_cached_load_logs_its_skipped_items_and_a_corrupt_cache_is_decoded_anew(tmp_path, good_files,
                                                                                    monkeypatch, caplog):
    monkeypatch.setenv("FER_REPORT_CACHE", str(tmp_path / "cache"))
    write_zip(tmp_path / "data.zip", {**good_files, "train/happy/Training_9.png": b"not an image"})
    load_dataset(tmp_path / "data.zip", skip_bad=True)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert len(load_dataset(tmp_path / "data.zip", skip_bad=True)) == 4  # from the cache
    assert ["Training_9.png" in r.getMessage() for r in caplog.records] == [True]
    moved = tmp_path / "moved" / "copy.zip"  # the same bytes elsewhere: the cache's skipped items name this copy
    moved.parent.mkdir()
    shutil.copy(tmp_path / "data.zip", moved)
    assert load_dataset(moved, skip_bad=True).skipped[0][1].startswith(f"{moved}:train/happy/Training_9.png: ")
    (cached,) = (tmp_path / "cache").glob("*.npz")
    cached.write_bytes(b"truncated")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert len(load_dataset(tmp_path / "data.zip", skip_bad=True)) == 4
    assert any("cache not read" in r.getMessage() for r in caplog.records)


def test_missing_and_unsupported_sources(tmp_path):
    with pytest.raises(DataError, match=r"nothing\.zip: no such file or directory"):
        load_dataset(tmp_path / "nothing.zip")
    odd = tmp_path / "data.parquet"
    odd.write_bytes(b"PAR1")
    with pytest.raises(DataError, match=r"data\.parquet: unsupported data source"):
        load_dataset(odd)


def test_cache_is_used_on_second_load_and_keyed_by_content(tmp_path, monkeypatch, good_files):
    monkeypatch.setenv("FER_REPORT_CACHE", str(tmp_path / "cache"))
    source = tmp_path / "data.zip"
    write_zip(source, good_files)
    first = load_dataset(source)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1

    def no_decoding(*args):
        raise AssertionError("decoded again instead of reading the cache")

    monkeypatch.setattr(fdata, "_read_zip", no_decoding)
    second = load_dataset(source)
    np.testing.assert_array_equal(first.images, second.images)
    assert list(second.usages) == list(first.usages)
    write_zip(source, {**good_files, "train/happy/Training_5.png": png_bytes(face(5))})
    with pytest.raises(AssertionError, match="decoded again"):
        load_dataset(source)


def test_usage_selection_and_errors(synthetic_zip):
    ds = load_dataset(synthetic_zip)
    assert len(ds.usage("PrivateTest")) == 35
    with pytest.raises(DataError, match="unknown usage 'Test'"):
        ds.usage("Test")
    with pytest.raises(DataError, match=r"no PrivateTest images \(usages present: Training\)"):
        ds.usage("Training").usage("PrivateTest")


def test_captions_name_the_usage_and_class_of_each_image(synthetic_zip):
    dataset = load_dataset(synthetic_zip)
    happy = np.flatnonzero((dataset.usages == "Training") & (dataset.labels == CLASSES.index("happy")))[0]
    fear = np.flatnonzero((dataset.usages == "PublicTest") & (dataset.labels == CLASSES.index("fear")))[0]
    assert dataset.captions([happy, fear]) == ["Training\nhappy", "PublicTest\nfear"]
