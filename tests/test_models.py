import keras
import numpy as np
import pytest

from fer_utils import OptionError
from fer_utils.cli import main
from fer_utils.models import MODELS, build_model, cost_table, flops_per_image, parameter_counts


def test_seed_cnn_has_the_reports_parameter_counts():
    model = build_model("seed_cnn", (48, 48, 3))
    assert parameter_counts(model) == (1_326_567, 2_176)


def test_seed_cnn_grayscale_variant_differs_only_in_the_first_convolution():
    trainable, frozen = parameter_counts(build_model("seed_cnn", (48, 48, 1)))
    assert trainable == 1_326_567 - 2 * 3 * 3 * 32 and frozen == 2_176


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_maps_pixels_to_float32_probabilities(name):
    model = build_model(name)
    x = np.random.default_rng(0).integers(0, 256, (3, *model.input_shape[1:])).astype("float32")
    proba = model.predict(x, verbose=0)
    assert proba.shape == (3, 7) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)


def test_softmax_stays_float32_under_mixed_bfloat16():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = build_model("vgg_gap")
        assert model.layers[1].compute_dtype == "bfloat16"
        assert model.output.dtype == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_same_seed_same_initial_weights():
    def weights(seed):
        keras.utils.set_random_seed(seed)
        return build_model("vgg_gap").get_weights()[0]
    np.testing.assert_array_equal(weights(4), weights(4))
    assert not np.array_equal(weights(4), weights(5))


def test_unknown_model_name():
    with pytest.raises(ValueError, match="unknown model 'resnet9000' .choose from seed_cnn"):
        build_model("resnet9000")


def test_vgg_lean_drops_one_full_resolution_convolution():
    lean, full = build_model("vgg_lean"), build_model("vgg_gap")
    convs_at_48 = lambda m: sum(isinstance(layer, keras.layers.Conv2D) and layer.output.shape[1] == 48  # noqa: E731
                                for layer in m.layers)
    assert (convs_at_48(lean), convs_at_48(full)) == (1, 2)
    assert flops_per_image(full) - flops_per_image(lean) == 2 * 48 * 48 * 3 * 3 * 32 * 32
    assert lean.name == "vgg_lean"


def test_vgg_fc_keeps_the_feature_map_layout_in_a_dense_head():
    trunk = dict(widths=(16, 32), convs=(1, 2), block_dropout=(0.0, 0.1))
    fc, gap = build_model("vgg_fc", **trunk, units=(64,)), build_model("vgg_gap", **trunk)
    dense = [layer for layer in fc.layers if isinstance(layer, keras.layers.Dense)]
    assert [layer.units for layer in dense] == [64, 7] and dense[0].kernel.shape == (12 * 12 * 32, 64)
    assert not any(isinstance(layer, keras.layers.GlobalAveragePooling2D) for layer in fc.layers)
    conv_weights = [w.shape for layer in gap.layers if isinstance(layer, keras.layers.Conv2D) for w in layer.weights]
    assert conv_weights == [w.shape for layer in fc.layers if isinstance(layer, keras.layers.Conv2D)
                            for w in layer.weights]  # the same trunk
    head = 12 * 12 * 32 * 64 + 2 * 64 + 64 * 7 + 7  # dense (no bias), its batch norm's scale and offset, softmax
    assert parameter_counts(fc)[0] - parameter_counts(gap)[0] == head - (32 * 7 + 7)
    assert [layer.rate for layer in fc.layers if isinstance(layer, keras.layers.Dropout)] == [0.1, 0.5]
    with pytest.raises(ValueError, match=r"model vgg_fc takes no option width"):
        build_model("vgg_fc", width=3)


def test_vgg_gap_needs_one_convolution_count_per_block():
    with pytest.raises(ValueError, match=r"convs \(2, 2\) must give one value per block of widths \(32, 64, 128\)"):
        build_model("vgg_gap", widths=(32, 64, 128), convs=(2, 2))


@pytest.mark.parametrize("precision, tolerance", [("float32", 1e-3), ("bfloat16", 2e-2)])
def test_export_for_inference_keeps_predictions_options_and_a_float32_softmax(tmp_path, precision, tolerance):
    keras.utils.set_random_seed(0)
    model = build_model("vgg_gap", widths=(16, 32), convs=(1, 1), block_dropout=0.1)
    path = tmp_path / "model.keras"
    model.save(path)
    assert main(["export", str(path), str(tmp_path / "out.keras"), "--precision", precision]) == 0
    exported = keras.models.load_model(tmp_path / "out.keras")
    x = np.random.default_rng(0).uniform(0, 255, (8, 48, 48, 1)).astype("float32")
    np.testing.assert_allclose(exported.predict(x, verbose=0), model.predict(x, verbose=0), atol=tolerance)
    assert getattr(exported, "optimizer", None) is None and exported.layers[-1].dtype_policy.name == "float32"
    assert {layer.dtype_policy.name for layer in exported.layers[1:-1]} == {precision}
    assert [w.shape for w in exported.get_weights()] == [w.shape for w in model.get_weights()]
    assert main(["export", str(path), str(tmp_path / "out.keras")]) == 2  # never written over without --force


def test_export_of_several_models_writes_their_weight_average_and_refuses_other_architectures(tmp_path, capsys):
    paths = []
    for seed in (0, 1):
        keras.utils.set_random_seed(seed)
        paths.append(tmp_path / f"m{seed}.keras")
        build_model("vgg_gap", widths=(16, 32), convs=(1, 1)).save(paths[-1])
    assert main(["export", *map(str, paths), str(tmp_path / "soup.keras")]) == 0
    assert "the weight average of 2 models" in capsys.readouterr().out
    members = [keras.models.load_model(p).get_weights() for p in paths]
    soup = keras.models.load_model(tmp_path / "soup.keras").get_weights()
    assert len(soup) == len(members[0]) and any(not np.allclose(a, b) for a, b in zip(*members))
    for averaged, a, b in zip(soup, *members):
        np.testing.assert_allclose(averaged, (a + b) / 2, rtol=1e-6)
    build_model("vgg_gap", widths=(16, 64), convs=(1, 1)).save(tmp_path / "wider.keras")
    assert main(["export", str(paths[0]), str(tmp_path / "wider.keras"), str(tmp_path / "bad.keras")]) == 2
    assert "wider.keras: not the layers of" in capsys.readouterr().err
    assert not (tmp_path / "bad.keras").exists()
    before = paths[1].read_bytes()
    assert main(["export", str(paths[0]), str(paths[1]), str(paths[1]), "--force"]) == 2
    assert "m1.keras: is one of the models to export" in capsys.readouterr().err and paths[1].read_bytes() == before


def test_cost_table_lists_parameters_and_compute_per_model():
    table = cost_table(["seed_cnn", "vgg_gap"])
    assert list(table.index) == ["seed_cnn", "vgg_gap"]
    assert table.loc["seed_cnn", "trainable"] == 1_326_567 and table.loc["seed_cnn", "non-trainable"] == 2_176
    assert table.loc["seed_cnn", "input"] == "(48, 48, 3)" and table.loc["vgg_gap", "input"] == "(48, 48, 1)"
    assert table.loc["seed_cnn", "MFLOPs per image"] > table.loc["vgg_gap", "MFLOPs per image"] > 0
    wide = {"model": "vgg_gap", "widths": [64, 128, 256, 512], "convs": [1, 2, 2, 2]}
    table = cost_table(["vgg_gap"], {"vgg-wide": wide})
    assert list(table.index) == ["vgg_gap", "vgg-wide"]
    built = build_model("vgg_gap", widths=[64, 128, 256, 512], convs=[1, 2, 2, 2])
    assert table.loc["vgg-wide", "trainable"] == parameter_counts(built)[0]
    assert table.loc["vgg-wide", "trainable"] > 3.5 * table.loc["vgg_gap", "trainable"]
    for bad in ({"vgg_gap": wide}, {"wide": {"widths": [8]}}):
        with pytest.raises(OptionError, match="model_variants: .*: needs a 'model'"):
            cost_table(["vgg_gap"], bad)



