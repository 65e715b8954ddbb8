"""Grad-CAM (Selvaraju et al. 2017): where in the image the last convolution layer found
the evidence for a class."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from fer_utils.inference import model_input


def last_conv_layer(model: keras.Model) -> keras.layers.Layer:
    """The model's last Conv2D layer."""
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    if not convs:
        raise ValueError(f"model {model.name} has no Conv2D layer for Grad-CAM")
    return convs[-1]


def _probe(model: keras.Model, conv) -> keras.Model:
    """A model giving ``(conv output, class probabilities)``. A loaded Sequential model has
    no symbolic graph, so its layers are chained anew on a fresh input."""
    if not isinstance(model, keras.Sequential):
        return keras.Model(model.inputs, [conv.output, model.output])
    x = inputs = keras.Input(model.input_shape[1:])
    features = None
    for layer in model.layers:
        x = layer(x)
        if layer is conv:
            features = x
    return keras.Model(inputs, [features, x])


def gradcam(model: keras.Model, images: np.ndarray, classes=None) -> np.ndarray:
    """Heatmaps (N, 48, 48) in [0, 1] for ``classes`` (default: the predicted class)."""
    conv = last_conv_layer(model)
    probe = _probe(model, conv)
    x = tf.constant(model_input(images, model.input_shape[-1]))
    with tf.GradientTape() as tape:
        features, proba = probe(x, training=False)
        target = tf.argmax(proba, axis=1) if classes is None else tf.constant(classes)
        chosen = tf.gather(proba, target, axis=1, batch_dims=1)
    grads = tape.gradient(chosen, features)
    weights = tf.reduce_mean(tf.cast(grads, tf.float32), axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * tf.cast(features, tf.float32), axis=-1))
    cam = tf.image.resize(cam[..., None], images.shape[1:3])[..., 0].numpy()
    peak = cam.max(axis=(1, 2), keepdims=True)
    return np.divide(cam, peak, out=np.zeros_like(cam), where=peak > 0)


def sample_per_class(labels, per_class: int, seed: int = 0) -> np.ndarray:
    """Indices of ``per_class`` random images of each class present (all of a class with
    fewer), class by class: the images a Grad-CAM figure shows."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.choice(np.flatnonzero(labels == k), size=min(per_class, (labels == k).sum()),
                                      replace=False) for k in np.unique(labels)])
