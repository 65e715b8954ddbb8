import json
from pathlib import Path

import numpy as np
import pytest

from fer_utils import CLASSES, DataError
from fer_utils.cli import main
from fer_utils.data import load_dataset
from fer_utils.faces import crop_faces, detect_faces, read_gray
from fer_utils.predict import load_model, predict_images
from fer_utils.quality import blank_mask
from fer_utils.scoring import evaluate_model

from .conftest import drawn_face_photo, face, png_bytes, write_zip


def test_read_gray_handles_colour_and_names_bad_files(tmp_path):
    photo = drawn_face_photo(tmp_path / "photo.jpg")
    gray = read_gray(photo)
    assert gray.shape == (300, 300) and gray.dtype == np.uint8
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match=r"notes\.txt: not a readable image"):
        read_gray(tmp_path / "notes.txt")
    with pytest.raises(DataError, match=r"missing\.png: cannot read"):
        read_gray(tmp_path / "missing.png")


def test_read_gray_turns_a_phone_photo_upright_and_reads_16_bit_and_alpha(tmp_path):
    import cv2
    from PIL import Image

    upright = np.pad(read_gray(drawn_face_photo(tmp_path / "face.png", colour=False)), ((0, 0), (0, 100)),
                     constant_values=200)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    Image.fromarray(np.rot90(upright)).save(tmp_path / "phone.jpg", exif=exif.tobytes(), quality=95)
    gray = read_gray(tmp_path / "phone.jpg")
    assert gray.shape == (300, 400) and len(detect_faces(gray)) == 1
    cv2.imwrite(str(tmp_path / "deep.png"), np.full((60, 50, 3), 257 * 100, np.uint16))
    transparent = np.dstack([np.full((60, 50, 3), 90, np.uint8), np.zeros((60, 50), np.uint8)])
    cv2.imwrite(str(tmp_path / "alpha.png"), transparent)
    for name in ("deep.png", "alpha.png"):
        assert read_gray(tmp_path / name).dtype == np.uint8 and read_gray(tmp_path / name).shape == (60, 50)
    assert abs(int(read_gray(tmp_path / "deep.png")[0, 0]) - 100) <= 1 and read_gray(tmp_path / "alpha.png")[0, 0] == 90


def test_annotate_draws_each_box_and_caption_on_a_copy(tmp_path):
    import cv2  # noqa: PLC0415

    from fer_utils.faces import annotate  # noqa: PLC0415

    photo = drawn_face_photo(tmp_path / "photo.png")
    before = cv2.imread(str(photo))
    out = annotate(photo, [(50, 60, 100, 120)], ["happy 0.91"], tmp_path / "out" / "annotated.png")
    drawn = cv2.imread(str(out))
    assert drawn.shape == before.shape and (cv2.imread(str(photo)) == before).all()  # the photo is untouched
    assert tuple(drawn[60, 100]) == (0, 200, 0) and tuple(drawn[120, 150]) == (0, 200, 0)  # top and right edges
    assert tuple(drawn[120, 100]) == tuple(before[120, 100])  # inside the box
    caption = drawn[40:54, 50:150] != before[40:54, 50:150]
    assert caption.any()  # the caption above the box


def test_detects_the_drawn_face_and_crops_it(tmp_path):
    gray = read_gray(drawn_face_photo(tmp_path / "photo.png", colour=False))
    boxes = detect_faces(gray)
    assert len(boxes) == 1
    x, y, w, h = boxes[0]
    assert 60 <= x + w / 2 <= 240 and w > 100
    assert crop_faces(gray, boxes).shape == (1, 48, 48)


def test_a_48x48_crop_is_classified_directly_and_a_blank_photo_has_no_face():
    assert detect_faces(face()) == [(0, 0, 48, 48)]
    assert detect_faces(np.full((200, 300), 128, np.uint8)) == []


def test_predict_images_reports_faces_and_errors(saved_model, tmp_path):
    photo = drawn_face_photo(tmp_path / "photo.jpg")
    crop = tmp_path / "crop.png"
    crop.write_bytes(png_bytes(face()))
    (tmp_path / "garbage.jpg").write_bytes(b"\xff\xd8 garbage")
    results, errors = predict_images(load_model(saved_model), [photo, tmp_path / "garbage.jpg", crop],
                                     annotate_dir=tmp_path / "out")
    assert [len(r["faces"]) for r in results] == [1, 1]
    probabilities = results[0]["faces"][0]["probabilities"]
    assert list(probabilities) == list(CLASSES) and sum(probabilities.values()) == pytest.approx(1, abs=1e-4)
    assert errors == [{"image": str(tmp_path / "garbage.jpg"),
                       "error": f"{tmp_path / 'garbage.jpg'}: not a readable image (expected JPEG or PNG)"}]
    assert (tmp_path / "out" / "photo_annotated.png").exists()


def test_predict_cli_json_and_exit_codes(saved_model, tmp_path, capsys):
    photo = drawn_face_photo(tmp_path / "photo.jpg")
    empty = tmp_path / "wall.png"
    empty.write_bytes(png_bytes(np.full((120, 160), 90, np.uint8)))
    assert main(["predict", str(photo), str(empty), "--model", str(saved_model), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [len(i["faces"]) for i in out["images"]] == [1, 0] and out["errors"] == []
    assert main(["predict", str(empty), "--model", str(saved_model)]) == 0
    assert "wall.png: no face found" in capsys.readouterr().out
    (tmp_path / "notes.txt").write_text("hello")
    assert main(["predict", str(tmp_path / "notes.txt"), str(photo), "--model", str(saved_model)]) == 2
    captured = capsys.readouterr()
    assert "notes.txt: not a readable image" in captured.err and "photo.jpg: face at" in captured.out


@pytest.mark.parametrize("bf16_cpu", [False, True])
def test_a_bfloat16_model_computes_in_float32_only_where_the_cpu_lacks_bf16(saved_model, synthetic_zip, tmp_path,
                                                                           monkeypatch, capsys, bf16_cpu):
    from fer_utils import train
    from fer_utils.models import export_for_inference

    export_for_inference(load_model(saved_model), "bfloat16").save(tmp_path / "bf16.keras")
    monkeypatch.setattr(train, "cpu_supports_bf16", lambda: bf16_cpu)
    monkeypatch.setattr(train, "accelerator_present", lambda: False)
    model = load_model(tmp_path / "bf16.keras")
    convolution = next(layer for layer in model.layers if layer.weights)
    assert (convolution.compute_dtype, convolution.weights[0].dtype) == (("bfloat16",) * 2 if bf16_cpu
                                                                        else ("float32",) * 2)
    assert load_model(saved_model).layers[1].compute_dtype == "float32"  # a float32 model stays as it is
    computed = "bfloat16" if bf16_cpu else "float32"  # scores say under which arithmetic they were computed
    assert main(["evaluate", "--model", str(tmp_path / "bf16.keras"), "--data", str(synthetic_zip), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["compute_dtype"] == computed
    assert main(["evaluate", "--model", str(tmp_path / "bf16.keras"), "--model", str(saved_model),
                 "--data", str(synthetic_zip)]) == 0
    assert f"blank left out, computed in {'bfloat16 and float32' if bf16_cpu else 'float32'}\n" in (
        capsys.readouterr().out)


def test_missing_model_is_a_named_error(tmp_path, capsys):
    with pytest.raises(DataError, match=r"nope\.keras: model file not found"):
        load_model(tmp_path / "nope.keras")
    for name in ("bad.keras", "notes.txt"):
        (tmp_path / name).write_text("not a model")
        assert main(["predict", "x.png", "--model", str(tmp_path / name)]) == 2
        assert f"{name}: not a Keras model file (expected a .keras archive" in capsys.readouterr().err


def test_two_inputs_of_one_file_name_get_two_annotations(saved_model, tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
    photos = [drawn_face_photo(tmp_path / folder / "face.jpg") for folder in ("a", "b")]
    results, _ = predict_images(load_model(saved_model), photos, annotate_dir=tmp_path / "out")
    written = [r["annotated"] for r in results]
    assert written == [str(tmp_path / "out" / "face_annotated.png"), str(tmp_path / "out" / "face_annotated-2.png")]
    assert all(Path(w).stat().st_size > 1000 for w in written)


EVALUATE_KEYS = {"usage", "n", "accuracy", "accuracy_ci", "macro_f1", "macro_f1_ci", "per_class", "confusion",
                 "tta", "blank_removed", "synthetic", "model"}


def test_evaluate_cli_json_schema_per_usage_with_tta(saved_model, synthetic_zip, capsys):
    assert main(["evaluate", "--model", str(saved_model), "--data", str(synthetic_zip), "--usage", "PrivateTest",
                 "--tta", "3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert EVALUATE_KEYS <= set(result)
    assert result["usage"] == "PrivateTest" and result["n"] == 31 and result["blank_removed"] == 4
    assert set(result["per_class"]["sad"]) == {"precision", "recall", "f1", "support"}
    assert np.array(result["confusion"]).shape == (7, 7) and np.array(result["confusion"]).sum() == 31
    assert result["tta"]["n"] == 3 and 0 <= result["tta"]["accuracy"] <= 1
    assert result["tta"]["gain"] == pytest.approx(result["tta"]["accuracy"] - result["accuracy"])
    assert result["tta"]["gain_ci"][0] <= result["tta"]["gain"] <= result["tta"]["gain_ci"][1]


def test_evaluate_defaults_to_public_test_and_reports_missing_usages(saved_model, synthetic_zip, capsys):
    assert main(["evaluate", "--model", str(saved_model), "--data", str(synthetic_zip)]) == 0
    assert "PublicTest: 31 images, 4 blank left out" in capsys.readouterr().out
    result = evaluate_model(load_model(saved_model), load_dataset(synthetic_zip), "PublicTest", keep_blank=True)
    assert result["n"] == 35 and result["tta"] is None


def test_evaluate_warns_when_only_training_is_left_to_score(saved_model, tmp_path, good_files, caplog, capsys):
    train_only = {name: data for name, data in good_files.items() if name.startswith("train/")}
    write_zip(tmp_path / "train-only.zip", train_only)
    assert main(["evaluate", "--model", str(saved_model), "--data", str(tmp_path / "train-only.zip")]) == 0
    assert "Training: 2 images" in capsys.readouterr().out
    assert "train-only.zip has no test usage: scoring Training" in caplog.text
    caplog.clear()
    assert main(["evaluate", "--model", str(saved_model), "--data", str(tmp_path / "train-only.zip"),
                 "--usage", "Training"]) == 0
    assert "no test usage" not in caplog.text


def test_shipped_default_model_is_used_without_model(synthetic_zip, tmp_path, capsys):
    from fer_utils.predict import DEFAULT_MODEL

    assert DEFAULT_MODEL.exists() and DEFAULT_MODEL.stat().st_size < 20_000_000
    assert (DEFAULT_MODEL.parent / "MODEL_CARD.md").exists()
    assert main(["evaluate", "--data", str(synthetic_zip), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"] == "default" and result["usage"] == "PublicTest"
    assert main(["predict", str(drawn_face_photo(tmp_path / "p.jpg")), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["images"][0]["faces"]) == 1


def test_ensemble_averages_member_probabilities_and_reports_its_gain_over_the_best(saved_model, synthetic_zip,
                                                                                  tmp_path, capsys):
    import keras  # noqa: PLC0415

    from fer_utils.inference import predict_proba  # noqa: PLC0415
    from fer_utils.models import build_model  # noqa: PLC0415

    keras.utils.set_random_seed(1)
    other = tmp_path / "other.keras"
    build_model("vgg_gap", widths=(8, 16), convs=(1, 1)).save(other)
    dataset = load_dataset(synthetic_zip)
    members = [load_model(saved_model), load_model(other)]
    result = evaluate_model(members, dataset, "PublicTest", tta=2)
    public = dataset.usage("PublicTest")
    public = public.subset(~blank_mask(public.images))
    ensemble = np.mean([predict_proba(m, public.images) for m in members], axis=0)
    assert result["accuracy"] == pytest.approx((ensemble.argmax(axis=1) == public.labels).mean())
    best = max(m["accuracy"] for m in result["members"])
    assert result["gain_over_best_member"]["gain"] == pytest.approx(result["accuracy"] - best)
    assert {"accuracy", "macro_f1", "tta_accuracy", "tta_macro_f1"} == set(result["members"][0])
    best_tta = max(m["tta_accuracy"] for m in result["members"])
    assert result["tta"]["gain_over_best_member"]["gain"] == pytest.approx(result["tta"]["accuracy"] - best_tta)
    single = evaluate_model(members[0], dataset, "PublicTest")
    assert evaluate_model([members[0]] * 2, dataset, "PublicTest")["accuracy"] == single["accuracy"]
    assert "members" not in single
    assert main(["evaluate", "--model", str(saved_model), "--model", str(other), "--data", str(synthetic_zip)]) == 0
    out = capsys.readouterr().out
    assert f"member {other}: accuracy" in out and "ensemble of 2: " in out and "over its best member" in out
    assert "with TTA" not in out
    assert main(["evaluate", "--model", str(saved_model), "--model", str(other), "--data", str(synthetic_zip),
                 "--tta", "2"]) == 0
    assert "ensemble of 2 with TTA: " in capsys.readouterr().out


def test_predict_averages_an_ensemble_and_test_time_augmentation(saved_model, tmp_path, capsys):
    import keras  # noqa: PLC0415

    from fer_utils.inference import predict_proba  # noqa: PLC0415
    from fer_utils.models import build_model  # noqa: PLC0415
    from fer_utils.predict import face_probabilities  # noqa: PLC0415
    from fer_utils.tta import tta_predict  # noqa: PLC0415

    keras.utils.set_random_seed(1)
    other = tmp_path / "other.keras"
    build_model("vgg_gap", widths=(8, 16), convs=(1, 1)).save(other)
    members, faces = [load_model(saved_model), load_model(other)], np.stack([face(), face()[::-1]])
    plain = [predict_proba(m, faces) for m in members]
    assert np.allclose(face_probabilities(members, faces), np.mean(plain, axis=0), atol=1e-6)
    with_tta = face_probabilities(members, faces, tta=3)
    assert np.allclose(with_tta, np.mean([tta_predict(m, faces, 3) for m in members], axis=0), atol=1e-6)
    assert not np.allclose(with_tta, np.mean(plain, axis=0), atol=1e-4)  # the copies are augmented
    assert np.allclose(face_probabilities(members, faces, tta=3), with_tta)  # seeded
    photo = drawn_face_photo(tmp_path / "photo.jpg")
    args = ["predict", str(photo), "--model", str(saved_model), "--model", str(other), "--tta", "2", "--json"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["models"] == [str(saved_model), str(other)] and out["tta"] == {"n": 2, "mode": "random"}
    box = out["images"][0]["faces"][0]["box"]
    crop = crop_faces(read_gray(photo), [tuple(box)])
    expected = face_probabilities(members, crop, tta=2)[0]
    assert list(out["images"][0]["faces"][0]["probabilities"].values()) == pytest.approx(expected, abs=1e-5)
    assert main(["predict", str(photo), "--model", str(saved_model), "--tta", "11", "--tta-mode",
                 "deterministic"]) == 2
    assert "--tta 11: deterministic TTA has 10 views" in capsys.readouterr().err
