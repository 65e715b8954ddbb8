import keras
import numpy as np
import pytest
import tensorflow as tf

from fer_utils.augment import RandomAffine, build_augmentation

IMAGES = np.random.default_rng(0).integers(0, 256, (64, 48, 48, 1)).astype(np.float32)


def test_no_transform_is_the_identity_and_inference_leaves_images_alone():
    np.testing.assert_array_equal(np.asarray(RandomAffine(seed=1)(IMAGES)), IMAGES)
    layer = RandomAffine(rotation=10, shift=0.1, shear=0.1, zoom=0.1, flip=True, seed=1)
    np.testing.assert_array_equal(np.asarray(layer(IMAGES, training=False)), IMAGES)


def test_flip_mirrors_about_half_the_images_exactly():
    out = np.asarray(RandomAffine(flip=True, seed=3)(IMAGES))
    mirrored = [np.array_equal(o, i[:, ::-1]) for o, i in zip(out, IMAGES)]
    unchanged = [np.array_equal(o, i) for o, i in zip(out, IMAGES)]
    assert all(m or u for m, u in zip(mirrored, unchanged))
    assert 16 <= sum(mirrored) <= 48


def test_transforms_stay_within_their_ranges():
    t = np.asarray(RandomAffine(shift=0.1, seed=0).transforms(256, 48, 48))
    assert t.shape == (256, 8)
    np.testing.assert_array_equal(t[:, [0, 4]], 1)  # shift only: no scaling
    np.testing.assert_array_equal(t[:, [1, 3, 6, 7]], 0)
    assert np.abs(t[:, [2, 5]]).max() <= 4.8 and np.abs(t[:, [2, 5]]).max() > 3
    zoom = np.asarray(RandomAffine(zoom=0.1, seed=0).transforms(256, 48, 48))
    assert 0.9 <= zoom[:, [0, 4]].min() and zoom[:, [0, 4]].max() <= 1.1


def test_seeded_repeatable_new_draws_per_call_values_in_range():
    options = dict(rotation=10, shift=0.1, shear=0.1, zoom=0.1, flip=True)
    first = np.asarray(RandomAffine(**options, seed=5)(IMAGES))
    np.testing.assert_array_equal(first, np.asarray(RandomAffine(**options, seed=5)(IMAGES)))
    layer = RandomAffine(**options, seed=5)
    assert not np.array_equal(np.asarray(layer(IMAGES)), np.asarray(layer(IMAGES)))
    assert first.min() >= 0 and first.max() <= 255 and first.shape == IMAGES.shape


def test_works_inside_tf_data():
    layer = RandomAffine(rotation=10, zoom=0.1, seed=0)
    ds = tf.data.Dataset.from_tensor_slices(IMAGES).batch(16).map(lambda x: layer(x, training=True))
    batches = [np.asarray(b) for b in ds]
    assert len(batches) == 4 and batches[0].shape == (16, 48, 48, 1)
    assert not np.array_equal(batches[0], IMAGES[:16])


def test_build_augmentation_options():
    seed_layers = build_augmentation(0).layers
    assert [type(layer) for layer in seed_layers] == [RandomAffine]
    assert (seed_layers[0].rotation, seed_layers[0].flip) == (10.0, True)
    layers = build_augmentation(0, rotation=0, shift=0, shear=0, zoom=0, flip=False, erasing=0.5).layers
    assert [type(layer) for layer in layers] == [keras.layers.RandomErasing]
    assert build_augmentation(0, rotation=0, shift=0, shear=0, zoom=0, flip=False) is None
    with pytest.raises(ValueError, match="unknown augmentation option.*: brightness"):
        build_augmentation(0, brightness=0.2)
