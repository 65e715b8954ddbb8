"""Training-time augmentation as Keras 3 layers (``ImageDataGenerator`` is deprecated)."""

from __future__ import annotations

import math

import keras
from keras import ops

from fer_utils.config import SEED_AUGMENTATION


class RandomAffine(keras.layers.Layer):
    """Random flip, rotation, shift, shear and zoom as one affine resampling per image.

    The seed's five geometric transforms composed into one matrix per image and applied
    by ``keras.ops.image.affine_transform`` (``nearest`` fill): one interpolation instead
    of one per transform, so it is cheaper and blurs less. ``rotation`` in degrees;
    ``shift`` (of width/height), ``shear`` and ``zoom`` as fractions; ``flip`` horizontal.
    Identity outside training.
    """

    def __init__(self, rotation=0.0, shift=0.0, shear=0.0, zoom=0.0, flip=False, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rotation, self.shift, self.shear, self.zoom, self.flip = rotation, shift, shear, zoom, flip
        self.seed = seed
        self.generator = keras.random.SeedGenerator(seed)

    def transforms(self, batch, height, width):
        """(batch, 8) transforms mapping each output pixel (x, y) to the input pixel it reads."""
        def uniform(limit):
            return keras.random.uniform((batch,), -limit, limit, seed=self.generator)

        angle = uniform(self.rotation * math.pi / 180)
        shear_x, shear_y = uniform(self.shear), uniform(self.shear)
        zoom_x, zoom_y = 1 + uniform(self.zoom), 1 + uniform(self.zoom)
        flip = ops.where(uniform(1.0) < 0, -1.0, 1.0) if self.flip else ops.ones((batch,))
        cos, sin = ops.cos(angle), ops.sin(angle)
        # rotation @ [[1, shear_x], [shear_y, 1]] @ diag(zoom_x * flip, zoom_y), about the centre
        a0, a1 = (cos - sin * shear_y) * zoom_x * flip, (cos * shear_x - sin) * zoom_y
        b0, b1 = (sin + cos * shear_y) * zoom_x * flip, (sin * shear_x + cos) * zoom_y
        cx, cy = (width - 1) / 2, (height - 1) / 2
        a2 = cx - a0 * cx - a1 * cy + uniform(self.shift) * width
        b2 = cy - b0 * cx - b1 * cy + uniform(self.shift) * height
        zeros = ops.zeros((batch,))
        return ops.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)

    def call(self, images, training=True):
        if not training:
            return images
        shape = ops.shape(images)
        return ops.image.affine_transform(images, self.transforms(shape[0], shape[1], shape[2]),
                                          interpolation="bilinear", fill_mode="nearest")

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rotation": self.rotation, "shift": self.shift, "shear": self.shear,
                "zoom": self.zoom, "flip": self.flip, "seed": self.seed}


def build_augmentation(seed: int = 0, **options) -> keras.Sequential | None:
    """Augmentation layers for (batch, 48, 48, C) images with values 0-255: one
    :class:`RandomAffine` for the geometric transforms, then ``RandomErasing`` if asked.

    ``options`` override :data:`SEED_AUGMENTATION`: ``rotation`` (degrees), ``shift``,
    ``shear`` and ``zoom`` (fractions), ``flip`` (horizontal), ``erasing`` (probability
    of erasing a random patch; 0 disables it). None when every option is off.
    """
    unknown = set(options) - set(SEED_AUGMENTATION)
    if unknown:
        raise ValueError(f"unknown augmentation option(s): {', '.join(sorted(unknown))}")
    cfg = {**SEED_AUGMENTATION, **options}
    geometric = {k: cfg[k] for k in ("rotation", "shift", "shear", "zoom", "flip")}
    # float32 whatever the precision policy: the same copies under bfloat16 training
    layers = [RandomAffine(**geometric, seed=seed, dtype="float32")] if any(geometric.values()) else []
    if cfg["erasing"]:
        layers.append(keras.layers.RandomErasing(factor=cfg["erasing"], value_range=(0, 255), seed=seed + 5,
                                                 dtype="float32"))
    return keras.Sequential(layers, name="augmentation") if layers else None
