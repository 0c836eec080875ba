"""Activation based views: feature maps, and the inputs that excite a filter or class.

Like `cnnviz.explanations`, these read a model through a cached Functional
probe (`cnnviz.introspect`) that shares its layers; the model itself is never changed.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from cnnviz.errors import ConfigError
from cnnviz.introspect import list_layers, model_batch, probe


def feature_maps(model, image, layers: list[str] | None = None) -> dict[str, NDArray[np.float32]]:
    """The activations of one image at each chosen layer, in one forward pass.

    Args:
        model: a Keras classifier taking 0..255 images.
        image: one image as `cnnviz.load_image` returns it (resized to the model).
        layers: layer names (see `cnnviz.list_layers`); defaults to every layer
            whose output is an image-like map.

    Returns:
        `{layer name: float32 (H, W, C) map}` in model order (a dense layer
        gives `(units,)`).
    """
    if layers is None:
        layers = [info.name for info in list_layers(model) if info.has_map]
    if not layers:
        raise ConfigError("the model has no layers with image-like outputs to show.")
    tap = probe(model, tuple(layers))
    batch, _ = model_batch(model, image)
    if len(batch) != 1:
        raise ConfigError(f"feature_maps takes one image, got {len(batch)}.")
    outputs = tap.forward(batch)[: len(layers)]
    return {name: np.asarray(output[0], dtype=np.float32) for name, output in zip(layers, outputs)}


def _maximize(model, layer: str | None, units: list[int], steps: int, learning_rate: float, seed: int):
    """Gradient ascent on the input, one image per unit, all in one batch.

    Regularized the usual way (keras.io "Visualizing what convnets learn",
    Olah et al. 2017): random jitter each step, a slight pull to grey (L2
    decay), a small blur every few steps, pixels kept in 0..255; the gradient
    is normalized so the step size is independent of the layer's scale.
    """
    import tensorflow as tf

    tap = probe(model, (layer,) if layer else ())
    height, width, channels = tap.input_shape
    # A model that takes any size: draw its features on a 128-pixel square.
    height, width = height or 128, width or 128
    units_tensor = tf.constant(units, dtype=tf.int32)
    rng = np.random.default_rng(seed)
    start = 128.0 + rng.normal(0, 8.0, (len(units), height, width, channels))
    images = tf.Variable(start.astype(np.float32))
    blur = tf.constant(np.outer([1, 2, 1], [1, 2, 1]).astype(np.float32) / 16.0)
    blur = tf.tile(blur[:, :, None, None], [1, 1, channels, 1])

    @tf.function
    def step(jitter, smooth):
        with tf.GradientTape() as tape:
            shifted = tf.roll(images, shift=jitter, axis=[1, 2])
            outputs = tap.tap_model(shifted, training=False)
            outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
            # A class is maximized through its log-probability, not its raw
            # score: raising one score can raise a rival's more.
            target = outputs[0] if layer else tf.nn.log_softmax(outputs[-1], axis=-1)
            chosen = tf.gather(target, units_tensor, axis=-1, batch_dims=1)
            axes = list(range(1, len(chosen.shape)))
            loss = tf.reduce_sum(tf.reduce_mean(chosen, axis=axes) if axes else chosen)
        gradients = tape.gradient(loss, images)
        gradients /= tf.math.reduce_std(gradients, axis=[1, 2, 3], keepdims=True) + 1e-8
        updated = 128.0 + (images + learning_rate * gradients - 128.0) * 0.995
        if smooth:
            updated = tf.nn.depthwise_conv2d(updated, blur, [1, 1, 1, 1], "SAME")
        images.assign(tf.clip_by_value(updated, 0.0, 255.0))

    for index in range(int(steps)):
        jitter = rng.integers(-2, 3, size=2).astype(np.int32)
        step(tf.constant(jitter), tf.constant(index % 4 == 3 and index < steps - 4))
    return np.clip(np.rint(images.numpy()), 0, 255).astype(np.uint8)


def filter_images(
    model,
    layer: str,
    filters: list[int] | None = None,
    steps: int = 60,
    learning_rate: float = 6.0,
    seed: int = 0,
) -> NDArray[np.uint8]:
    """Activation maximization: for each filter, the image that excites it most.

    Args:
        model: a Keras classifier taking 0..255 images.
        layer: a layer name (usually a conv or activation layer).
        filters: channel indices; defaults to the first 16.
        steps: int, gradient-ascent steps. Defaults to `60`.
        learning_rate: float, step size in 0..255 pixel units.
        seed: int, for the starting noise and jitter.

    Returns:
        uint8 `(len(filters), H, W, C)` images at the model's input size.
    """
    infos = {info.name: info for info in list_layers(model)}
    info = infos.get(layer) or next((i for n, i in infos.items() if n.split("/")[-1] == layer), None)
    if info is None:
        raise ConfigError(f"the model has no layer named {layer!r}.")
    channels = int(info.output_shape[-1]) if info.output_shape else 0
    filters = list(range(min(16, channels))) if filters is None else [int(f) for f in filters]
    if not filters or any(not 0 <= f < channels for f in filters):
        raise ConfigError(f"filters of layer {layer!r} must be in 0..{channels - 1}, got {filters}.")
    return _maximize(model, info.name, filters, steps, learning_rate, seed)


def class_images(
    model,
    classes: list[int] | None = None,
    steps: int = 150,
    learning_rate: float = 2.0,
    seed: int = 0,
) -> NDArray[np.uint8]:
    """Activation maximization of classes: what each class "looks like" to the model.

    Each image climbs its class's log-probability, so it ends up confidently
    that class rather than merely high-scoring for every class.

    Args:
        classes: class indices; defaults to all.
        steps, learning_rate, seed: as for `filter_images`.

    Returns:
        uint8 `(len(classes), H, W, C)` images.
    """
    num_classes = int(model.output_shape[-1])
    classes = list(range(num_classes)) if classes is None else [int(c) for c in classes]
    if not classes or any(not 0 <= c < num_classes for c in classes):
        raise ConfigError(f"classes must be in 0..{num_classes - 1}, got {classes}.")
    return _maximize(model, None, classes, steps, learning_rate, seed)
