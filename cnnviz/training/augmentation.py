"""Augmentation: the random changes each training batch goes through, and their preview."""

from __future__ import annotations

import functools

import numpy as np
from numpy.typing import NDArray

from cnnviz.training.config import TrainConfig


def make_augmentation(config: TrainConfig, seed: int = 0):
    """The augmentation pipeline of `config` as a `keras.Sequential` of preprocessing layers.

    Every layer has its own seed derived from `seed`, so nothing global is reseeded.

    Returns:
        The pipeline, or `None` when the config asks for no augmentation. The
        layers work on 0..255 float images, in a tf.data pipeline or on a numpy
        batch (previews).
    """
    import keras
    from keras import layers

    steps = []
    if config.flip != "none":
        mode = {"horizontal": "horizontal", "vertical": "vertical", "both": "horizontal_and_vertical"}
        steps.append(layers.RandomFlip(mode[config.flip], seed=seed, name="flip"))
    if config.rotate:
        steps.append(layers.RandomRotation(config.rotate, fill_mode="nearest", seed=seed + 1, name="rotate"))
    if config.zoom:
        steps.append(layers.RandomZoom(config.zoom, fill_mode="nearest", seed=seed + 2, name="zoom"))
    if config.translate:
        steps.append(
            layers.RandomTranslation(
                config.translate, config.translate, fill_mode="nearest", seed=seed + 3, name="translate"
            )
        )
    if config.contrast:
        steps.append(
            layers.RandomContrast(config.contrast, value_range=(0, 255), seed=seed + 4, name="contrast")
        )
    if config.noise:
        # float32 whatever the global policy: random draws come in float32.
        steps.append(
            _random_noise_layer()(config.noise * 255.0, seed=seed + 5, name="noise", dtype="float32")
        )
    if config.texture:
        steps.append(
            _random_texture_layer()(config.texture * 255.0, seed=seed + 6, name="texture", dtype="float32")
        )
    if not steps:
        return None
    return keras.Sequential(steps, name="augmentation")


# The two layers below run in the tf.data pipeline, outside the model, so no saved
# model holds them; `get_config` still describes them, as for any Keras layer.


@functools.cache
def _random_pixels_base():
    """`RandomPixels`: the base of the two, a seeded change of pixel values of at most `most`
    that only happens when training and keeps the shape; subclasses write `change(images)`."""
    import keras

    class RandomPixels(keras.layers.Layer):
        def __init__(self, most: float, seed: int = 0, **kwargs):
            super().__init__(**kwargs)
            self.most = float(most)
            self.seed = seed
            self.generator = keras.random.SeedGenerator(seed)

        def call(self, images, training=True):
            return self.change(images) if training else images

        def change(self, images):
            raise NotImplementedError

        def compute_output_shape(self, input_shape):
            return input_shape

        def get_config(self):
            return {**super().get_config(), "most": self.most, "seed": self.seed}

    return RandomPixels


def _random_noise_layer():
    """`RandomNoise`: Gaussian pixel noise whose standard deviation each image draws in [0, most]."""
    import keras

    class RandomNoise(_random_pixels_base()):
        def change(self, images):
            shape = keras.ops.shape(images)
            spread = keras.random.uniform((shape[0], 1, 1, 1), 0.0, self.most, seed=self.generator)
            noisy = images + keras.random.normal(shape, seed=self.generator) * spread
            return keras.ops.clip(noisy, 0.0, 255.0)

    return RandomNoise


def _random_texture_layer():
    """`RandomTexture`: stripes or a checkerboard added to a share of the images.

    Each image draws whether it gets one (`share`), which of the two, the angle,
    the period (3 to 14 pixels), a colour (each channel 0.3 to 1) and a strength
    in [0, most]. The pattern has two levels, +strength and -strength, over the
    whole picture, object included, like a printed fabric or tiles seen through
    the colours.
    """
    import math

    import keras
    from keras import ops

    class RandomTexture(_random_pixels_base()):
        def __init__(self, most: float, share: float = 0.7, seed: int = 0, **kwargs):
            super().__init__(most, seed=seed, **kwargs)
            self.share = float(share)

        def change(self, images):
            shape = ops.shape(images)
            count, height, width, channels = shape[0], shape[1], shape[2], shape[3]

            def draw(low, high, size=(count, 1, 1)):
                return keras.random.uniform(size, low, high, seed=self.generator)

            rows = ops.cast(ops.arange(height), "float32")[None, :, None]
            columns = ops.cast(ops.arange(width), "float32")[None, None, :]
            angle, period = draw(0.0, math.pi), draw(3.0, 14.0)
            along = (ops.cos(angle) * columns + ops.sin(angle) * rows) / period
            across = (ops.cos(angle) * rows - ops.sin(angle) * columns) / period
            stripes = ops.sin(2 * math.pi * along)
            checkerboard = ops.sin(math.pi * along) * ops.sin(math.pi * across)
            wave = ops.where(draw(0.0, 1.0) < 0.5, stripes, checkerboard)
            pattern = ops.where(wave >= 0, 1.0, -1.0)[..., None]
            chosen = ops.cast(draw(0.0, 1.0, (count, 1, 1, 1)) < self.share, "float32")
            strength = draw(0.0, self.most, (count, 1, 1, 1)) * chosen
            colour = draw(0.3, 1.0, (count, 1, 1, channels))
            textured = ops.clip(ops.cast(images, "float32") + pattern * strength * colour, 0.0, 255.0)
            if "int" in str(images.dtype):
                textured = ops.round(textured)
            return ops.cast(textured, images.dtype)

        def get_config(self):
            return {**super().get_config(), "share": self.share}

    return RandomTexture


def augment_preview(images: NDArray, config: TrainConfig, seed: int = 0) -> NDArray[np.uint8]:
    """Applies the augmentation of `config` to a uint8 batch, for previews.

    Returns:
        uint8 array of the same shape as `images`.
    """
    augmentation = make_augmentation(config, seed)
    if augmentation is None:
        return np.asarray(images, dtype=np.uint8).copy()
    result = augmentation(np.asarray(images, dtype=np.float32), training=True)
    return np.clip(np.rint(np.asarray(result)), 0, 255).astype(np.uint8)
