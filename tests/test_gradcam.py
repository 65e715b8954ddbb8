import keras
import numpy as np
import pytest

from fer_utils.gradcam import gradcam, last_conv_layer, sample_per_class
from fer_utils.models import build_model

IMAGES = np.random.default_rng(0).integers(0, 256, (3, 48, 48)).astype(np.uint8)


@pytest.mark.parametrize("name", ["seed_cnn", "res_gap"])
def test_heatmaps_for_sequential_and_functional_models_after_reloading(name, tmp_path):
    keras.utils.set_random_seed(0)
    build_model(name).save(tmp_path / "m.keras")
    model = keras.models.load_model(tmp_path / "m.keras")
    maps = gradcam(model, IMAGES)
    assert maps.shape == (3, 48, 48) and maps.min() >= 0 and maps.max() <= 1
    assert last_conv_layer(model).filters == 256


def test_explicit_classes_change_the_map():
    keras.utils.set_random_seed(1)
    model = build_model("vgg_gap")
    assert not np.allclose(gradcam(model, IMAGES[:1], [0]), gradcam(model, IMAGES[:1], [6]))


def test_model_without_convolution():
    inputs = keras.Input((48, 48, 1))
    model = keras.Model(inputs, keras.layers.Dense(7)(keras.layers.Flatten()(inputs)))
    with pytest.raises(ValueError, match="has no Conv2D layer"):
        gradcam(model, IMAGES)


def test_sample_per_class_takes_each_class_in_turn_and_all_of_a_small_one():
    labels = np.array([0, 0, 0, 2, 2, 2, 2, 5])
    picked = sample_per_class(labels, 2, seed=1)
    assert labels[picked].tolist() == [0, 0, 2, 2, 5] and len(set(picked.tolist())) == 5
    np.testing.assert_array_equal(picked, sample_per_class(labels, 2, seed=1))
    assert not np.array_equal(sample_per_class(labels, 2, seed=1), sample_per_class(labels, 2, seed=4))
