import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from fer_utils import CLASSES
from fer_utils.cli import main

from .conftest import png_bytes, write_zip


def test_help_lists_the_commands():
    result = subprocess.run([sys.executable, "-m", "fer_utils", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    listed = result.stdout.split("COMMAND\n")[-1]
    assert re.findall(r"^    (\S+)", listed, re.M) == ["summary", "pipeline", "report", "synthetic", "evaluate",
                                                       "predict", "train", "export", "long-runs"]


def test_train_help_names_the_choices_units_and_models(capsys):
    from fer_utils.models import MODELS  # noqa: PLC0415

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for shown in ("{adam,adamw,sgd}", "{cosine,plateau,constant}", "{val_loss,val_accuracy}",
                  "minutes of training not to exceed; 0: no limit", "patience in epochs", "--init-from INIT_FROM",
                  "default: none", *MODELS):
        assert shown in text, shown


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


def small_model(path, input_shape, outputs):
    import keras  # noqa: PLC0415

    keras.Sequential([keras.Input(input_shape), keras.layers.Flatten(), keras.layers.Dense(outputs)]).save(path)
    return path


def bad_inputs(tmp_path, synthetic_zip, good_files):
    """(arguments, what the error line must name) for each bad input of the table test."""
    bomb = tmp_path / "bomb.zip"
    write_zip(bomb, {**good_files, "train/happy/Training_9.png": png_bytes(np.zeros((5000, 5000), np.uint8))})
    binary = tmp_path / "binary.csv"
    binary.write_bytes(bytes(range(256)) * 8)
    all_bad = tmp_path / "all-bad.csv"
    all_bad.write_text("emotion,pixels,Usage\n9,1 2,Training\n")
    test_only = tmp_path / "test-only.zip"
    write_zip(test_only, {name: data for name, data in good_files.items() if name.startswith("test/")})
    not_keras = tmp_path / "not-keras.keras"
    write_zip(not_keras, {"notes.txt": b"a zip, not a model"})
    model = small_model(tmp_path / "model.keras", (48, 48, 1), 7)
    data = ["--data", str(synthetic_zip)]
    return [
        (["evaluate", *data, "--tta", "abc"], "argument --tta: 'abc' is not a whole number"),
        (["train", *data, "--out", str(tmp_path / "out"), "--val-fraction", "abc"],
         "argument --val-fraction: 'abc' is not a number"),
        (["train", "--data", str(test_only), "--out", str(tmp_path / "out")],
         "test-only.zip: no Training images left to train on"),
        (["summary", "--data", str(all_bad), "--skip-bad"], "all-bad.csv: no images could be loaded"),
        (["evaluate", *data, "--model", str(not_keras)], "not-keras.keras: not a loadable Keras model"),
        (["export", str(model), str(tmp_path / "model.h5")],
         "model.h5: the exported model's file name must end in .keras"),
        (["export", str(model), str(model)], "model.keras: exists; pass --force to replace it"),
        (["export", str(model), str(model), "--force"], "model.keras: is one of the models to export"),
        (["evaluate", *data, "--model", str(small_model(tmp_path / "in32.keras", (32, 32, 1), 7))],
         "in32.keras: the model takes input of shape (32, 32, 1)"),
        (["evaluate", *data, "--model", str(small_model(tmp_path / "out5.keras", (48, 48, 1), 5))],
         "out5.keras: the model has 5 outputs"),
        (["evaluate", *data, "--tta", "-1"], "argument --tta: -1 is negative"),
        (["evaluate", *data, "--tta", "11", "--tta-mode", "deterministic"],
         "--tta 11: deterministic TTA has 10 views"),
        (["train", *data, "--out", str(tmp_path / "out"), "--val-fraction", "1"],
         "argument --val-fraction: 1.0 is outside [0, 1)"),
        (["train", *data, "--out", str(tmp_path / "out"), "--optimizer", "foo"],
         "argument --optimizer: invalid choice: 'foo'"),
        (["train", *data, "--out", str(tmp_path / "out"), "--teachers", '"t.keras"'],
         "argument --teachers: expected a JSON list, got a string"),
        (["train", *data, "--out", str(tmp_path / "out"), "--model-options", "{widths: 2}"],
         "argument --model-options: not valid JSON (Expecting property name"),
        (["train", *data, "--out", str(tmp_path / "out"), "--augmentation", "[1]"],
         "argument --augmentation: expected a JSON object, got a JSON list"),
        (["train", *data, "--out", str(tmp_path / "out"), "--model", "foo"], "unknown model 'foo'"),
        (["train", *data, "--out", str(tmp_path / "out"), "--model-options", '{"depth": 3}'],
         "model vgg_gap takes no option depth"),
        (["train", *data, "--out", str(tmp_path / "out"), "--augmentation", '{"blur": 1}'],
         "unknown augmentation option(s): blur"),
        (["train", *data, "--out", str(tmp_path / "out"), "--epochs", "0"], "epochs must be at least 1"),
        (["train", *data, "--out", str(tmp_path / "out"), "--distill", "0.5"], "distill 0.5 needs teachers"),
        (["train", *data, "--out", str(tmp_path / "out"), "--distill", "0.5", "--teachers", '["t.keras"]'],
         "t.keras: no such model (teachers)"),
        (["summary", "--data", str(bomb)], "bomb.zip:train/happy/Training_9.png: image too large"),
        (["summary", "--data", str(binary)], "binary.csv: not a text CSV file"),
    ]


def test_bad_inputs_are_one_named_error_line_exit_2_and_touch_nothing(tmp_path, synthetic_zip, good_files,
                                                                       monkeypatch, capsys):
    from PIL import Image  # noqa: PLC0415

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000_000)  # a 25-megapixel PNG is then a bomb
    for args, named in bad_inputs(tmp_path, synthetic_zip, good_files):
        before = sorted(p.name for p in tmp_path.rglob("*"))
        try:
            code = main(args)
        except SystemExit as usage_error:  # argparse's own refusal
            code = usage_error.code
        err = capsys.readouterr().err
        assert code == 2 and named in err, (args, err)
        assert [line for line in err.splitlines() if "error:" in line][0].count("error:") == 1
        assert "Traceback" not in err and sorted(p.name for p in tmp_path.rglob("*")) == before, args
    assert main(["summary", "--data", str(tmp_path / "bomb.zip"), "--skip-bad", "--json"]) == 0
    skipped = json.loads(capsys.readouterr().out)["skipped"]
    assert len(skipped) == 1 and "image too large to decode safely" in skipped[0]["problem"]


def test_tensorflow_start_up_lines_stay_out_of_the_terminal_unless_asked(synthetic_zip, tmp_path):
    def run(*flags):
        return subprocess.run([sys.executable, "-m", "fer_utils", *flags, "train", "--data", str(synthetic_zip),
                               "--out", str(tmp_path / "run"), "--model", "foo"], capture_output=True, text=True,
                              timeout=120, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": ""})
    quiet, loud = run(), run("--tf-log")
    assert quiet.stderr == ("error: train: unknown model 'foo' (choose from seed_cnn, vgg_gap, vgg_fc, vgg_lean, "
                            "res_gap)\n")
    # which start-up lines TensorFlow writes depends on the CPU (oneDNN's only where it has AVX-512)
    assert loud.stderr.endswith(quiet.stderr) and loud.stderr.count("\n") > 1
    assert quiet.returncode == loud.returncode == 2


def test_the_notebooks_helper_keeps_tensorflow_start_up_lines_out_of_cell_outputs():
    def imports(first):
        return subprocess.run([sys.executable, "-c", f"{first}import keras; print('ok')"], capture_output=True,
                              text=True, timeout=120, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": ""})
    assert "absl" in imports("").stderr  # what a notebook's import cell showed
    quiet = imports("import fer_utils.notebook; ")
    assert quiet.stdout == "ok\n" and quiet.stderr == ""
