import json
import subprocess
import sys

import pytest

from fer_utils import CLASSES
from fer_utils.cli import main

from .conftest import write_zip


def test_help_lists_the_commands():
    result = subprocess.run([sys.executable, "-m", "fer_utils", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for command in ("summary", "pipeline", "report", "synthetic", "evaluate", "predict", "train"):
        assert command in result.stdout


def test_summary_json_schema_and_counts(synthetic_zip, capsys):
    assert main(["summary", "--data", str(synthetic_zip), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert list(summary["usages"]) == ["Training", "PublicTest", "PrivateTest"]
    assert list(summary["usages"]["Training"]) == list(CLASSES)
    assert sum(summary["usages"]["PublicTest"].values()) == 35
    assert summary["blank"] == {"Training": 4, "PublicTest": 4, "PrivateTest": 4}
    assert summary["duplicates"]["across"]["Training/PublicTest"] == 4
    assert summary["synthetic"] is True and summary["skipped"] == []


def test_summary_text_says_synthetic(synthetic_zip, capsys):
    assert main(["summary", "--data", str(synthetic_zip)]) == 0
    out = capsys.readouterr().out
    assert "SYNTHETIC data" in out and "blank images: Training 4" in out


def test_bad_input_is_one_error_line_and_exit_2(tmp_path, good_files, capsys):
    source = tmp_path / "bad.zip"
    write_zip(source, {**good_files, "train/happy/Training_7.png": b"garbage"})
    assert main(["summary", "--data", str(source)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "bad.zip:train/happy/Training_7.png: not an image file" in err
    assert "Traceback" not in err


def test_skip_bad_lists_every_skipped_item(tmp_path, good_files, capsys):
    source = tmp_path / "bad.zip"
    write_zip(source, {**good_files, "train/happy/Training_7.png": b"garbage", "train/odd/Training_8.png": b"x"})
    assert main(["summary", "--data", str(source), "--skip-bad", "--json"]) == 0
    skipped = json.loads(capsys.readouterr().out)["skipped"]
    assert [s["item"].rsplit(":", 1)[1] for s in skipped] == ["train/happy/Training_7.png", "train/odd/Training_8.png"]


def test_synthetic_command_refuses_to_overwrite(tmp_path, capsys):
    target = tmp_path / "s.zip"
    assert main(["synthetic", str(target), "--train", "14", "--public", "7", "--private", "7"]) == 0
    assert main(["synthetic", str(target)]) == 2
    assert "never written over" in capsys.readouterr().err


def test_missing_data_argument_is_a_usage_error():
    with pytest.raises(SystemExit) as exit_info:
        main(["summary"])
    assert exit_info.value.code == 2


def test_report_command_rewrites_the_report_or_names_the_bad_folder(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert f"error: {tmp_path}: not a run folder (no manifest.json)" in capsys.readouterr().err
    (tmp_path / "manifest.json").write_text(json.dumps({"data": {"synthetic": True}}))
    assert main(["report", str(tmp_path)]) == 0
    assert (tmp_path / "report.md").read_text().startswith("# FER report (synthetic data, not FER2013)")
    assert "report.html" in capsys.readouterr().out
