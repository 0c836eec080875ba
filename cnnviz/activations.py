"""Activation based views: feature maps, and the inputs that excite a filter or class.

Like `cnnviz.explanations`, these read a model through a cached Functional
probe (`cnnviz.introspect`) that shares its layers; the model itself is never changed.
"""

from __future__ import annotations

import dataclasses

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


#: The square root of natural images' RGB colour covariance (its SVD square root, as Lucid measured it on
#: ImageNet): drawing colours through it makes the channels vary together as they do in photographs.
_COLOR_SQRT = np.array([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], np.float32)
_COLOR_SQRT /= np.max(np.linalg.norm(_COLOR_SQRT, axis=0))

#: How an image is drawn for activation maximization: "fourier" (the default) or "pixel" (plain gradient ascent).
PARAMETERIZATIONS = ("fourier", "pixel")


#: The spectrum's weights fall as 1/frequency**SPECTRUM_DECAY: steeper than natural images' 1/f, because
#: a small network's filters are easily excited by pixel-sized edges (bench/filters.py measured 1, 1.5 and 2).
SPECTRUM_DECAY = 2.0


def _spectrum_scale(height: int, width: int) -> NDArray[np.float32]:
    """The 1/f weight of each `rfft2` coefficient: white noise in these coordinates is natural-image-like (pink)."""
    frequencies = np.hypot(np.fft.fftfreq(height)[:, None], np.fft.rfftfreq(width)[None, :])
    scale = np.sqrt(height * width) / np.maximum(frequencies, 1.0 / max(height, width)) ** SPECTRUM_DECAY
    return scale.astype(np.float32)


def _random_transforms(rng, count: int, height: int, width: int) -> NDArray[np.float32]:
    """One small random scale, rotation and shift per image, as `ImageProjectiveTransformV3` rows.

    A pattern that still excites the filter after these is one the filter sees, not a
    pixel-exact adversarial texture (Lucid's "transformation robustness").
    """
    scale = rng.uniform(0.92, 1.08, count)
    angle = np.deg2rad(rng.uniform(-8.0, 8.0, count))
    shift = rng.uniform(-0.05, 0.05, (count, 2)) * np.array([width, height])
    # Output pixel (x, y) reads input pixel A @ (x, y) + b, about the centre.
    cos, sin = np.cos(angle) / scale, np.sin(angle) / scale
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    bx = cx - cos * cx + sin * cy + shift[:, 0]
    by = cy - sin * cx - cos * cy + shift[:, 1]
    zeros = np.zeros(count)
    return np.stack([cos, -sin, bx, sin, cos, by, zeros, zeros], axis=1).astype(np.float32)


def _maximize(
    model,
    layer: str | None,
    units: list[int],
    steps: int,
    learning_rate: float,
    seed: int,
    parameterization: str = "fourier",
):
    """Gradient ascent on the input, one image per unit, all in one batch.

    "fourier" (Olah et al. 2017, "Feature Visualization"; Lucid, xplique): the image is
    drawn from a Fourier spectrum scaled by 1/frequency, through natural images' colour
    correlations and a sigmoid, and each step sees it under a small random scale,
    rotation and shift. Adam climbs the spectrum. High-frequency noise, which fools a
    filter without looking like anything, then costs as much to make as a smooth
    pattern, and the result is a readable one.

    "pixel" (keras.io "Visualizing what convnets learn"): the pixels themselves climb,
    with random jitter, a slight pull to grey and a small blur every few steps; the
    gradient is normalized so the step size is independent of the layer's scale.
    """
    import keras
    import tensorflow as tf

    if parameterization not in PARAMETERIZATIONS:
        raise ConfigError(
            f"parameterization must be one of {', '.join(PARAMETERIZATIONS)}, got {parameterization!r}."
        )
    tap = probe(model, (layer,) if layer else ())
    height, width, channels = tap.input_shape
    # A model that takes any size: draw its features on a 128-pixel square.
    height, width = height or 128, width or 128
    units_tensor = tf.constant(units, dtype=tf.int32)
    rng = np.random.default_rng(seed)

    def objective(images):
        outputs = tap.tap_model(images, training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        # A class is maximized through its log-probability, not its raw
        # score: raising one score can raise a rival's more.
        target = outputs[0] if layer else tf.nn.log_softmax(outputs[-1], axis=-1)
        chosen = tf.gather(target, units_tensor, axis=-1, batch_dims=1)
        axes = list(range(1, len(chosen.shape)))
        return tf.reduce_sum(tf.reduce_mean(chosen, axis=axes) if axes else chosen)

    if parameterization == "pixel":
        return _maximize_pixels(
            tf, objective, rng, (len(units), height, width, channels), steps, learning_rate
        )

    scale = tf.constant(_spectrum_scale(height, width))
    shape = (len(units), channels, height, width // 2 + 1)
    spectrum = tf.Variable(rng.normal(0.0, 0.01, (2, *shape)).astype(np.float32))
    color = tf.constant(_COLOR_SQRT.T if channels == 3 else np.eye(channels, dtype=np.float32))
    optimizer = keras.optimizers.Adam(learning_rate)

    def draw():
        coefficients = tf.complex(spectrum[0] * scale, spectrum[1] * scale)
        # (N, C, H, W) -> (N, H, W, C), in units where the sigmoid below spans its range.
        spatial = (
            tf.transpose(tf.signal.irfft2d(coefficients, fft_length=[height, width]), [0, 2, 3, 1]) / 4.0
        )
        return 255.0 * tf.sigmoid(tf.tensordot(spatial, color, axes=1))

    @tf.function
    def step(transforms):
        with tf.GradientTape() as tape:
            images = draw()
            moved = tf.raw_ops.ImageProjectiveTransformV3(
                images=images,
                transforms=transforms,
                output_shape=tf.constant([height, width]),
                fill_value=0.0,
                interpolation="BILINEAR",
                fill_mode="REFLECT",
            )
            loss = -objective(moved)
        optimizer.apply_gradients([(tape.gradient(loss, spectrum), spectrum)])

    for _ in range(int(steps)):
        step(tf.constant(_random_transforms(rng, len(units), height, width)))
    return np.clip(np.rint(draw().numpy()), 0, 255).astype(np.uint8)


def _maximize_pixels(tf, objective, rng, shape, steps: int, learning_rate: float):
    start = 128.0 + rng.normal(0, 8.0, shape)
    images = tf.Variable(start.astype(np.float32))
    channels = shape[-1]
    blur = tf.constant(np.outer([1, 2, 1], [1, 2, 1]).astype(np.float32) / 16.0)
    blur = tf.tile(blur[:, :, None, None], [1, 1, channels, 1])

    @tf.function
    def step(jitter, smooth):
        with tf.GradientTape() as tape:
            loss = objective(tf.roll(images, shift=jitter, axis=[1, 2]))
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


def high_frequency_share(images) -> NDArray[np.float64]:
    """Each image's share of spectral energy above half the Nyquist frequency.

    The power spectrum of the image's grey level, mean removed; "above half Nyquist"
    is a radial frequency over 0.25 cycles per pixel. Photographs put a few percent
    there; per-pixel noise about 80 %.

    Args:
        images: `(N, H, W, C)` or `(N, H, W)` images.

    Returns:
        float64 `(N,)` in [0, 1] (0 for a flat image).
    """
    images = np.asarray(images, np.float64)
    images = images if images.ndim == 4 else images[..., None]
    images = images - images.mean(axis=(1, 2), keepdims=True)
    # Summed over the channels: colour noise counts, not only the grey level's.
    power = (np.abs(np.fft.fft2(images, axes=(1, 2))) ** 2).sum(axis=-1)
    height, width = images.shape[1:3]
    radius = np.hypot(np.fft.fftfreq(height)[:, None], np.fft.fftfreq(width)[None, :])
    total = power.sum(axis=(1, 2))
    high = power[:, radius > 0.25].sum(axis=1)
    return np.divide(high, total, out=np.zeros_like(total), where=total > 0)


#: Activation layers whose filters are climbed through the value before them (Lucid's "pre-ReLU"):
#: a ReLU at zero for a grey start passes no gradient, so its filter would never move.
_RECTIFIERS = ("Activation", "ReLU", "LeakyReLU", "ELU", "PReLU")

#: The functions of an `Activation` layer that count as rectifiers (zero, or nearly, for negative inputs).
_RECTIFYING_FUNCTIONS = ("relu", "relu6", "leaky_relu", "elu", "selu", "gelu", "silu", "swish", "mish")

#: Defaults per parameterization: (steps, learning rate). A pixel step is in 0..255 units; a Fourier one is Adam's.
_DEFAULTS = {"fourier": (128, 0.02), "pixel": (60, 6.0)}


def _climbed_layer(model, info) -> str:
    """The layer whose output is climbed for `info`'s filters: the one before a rectifying activation."""
    from cnnviz.introspect import as_functional

    if info.class_name not in _RECTIFIERS or "/" in info.name:
        return info.name
    functional = as_functional(model)
    layer = functional.get_layer(info.name)
    activation = getattr(getattr(layer, "activation", None), "__name__", "")
    if info.class_name == "Activation" and activation not in _RECTIFYING_FUNCTIONS:
        return info.name  # a softmax or a sigmoid is climbed as it is
    inbound = getattr(layer.input, "_keras_history", None)
    if inbound is None or inbound.operation.name == functional.inputs[0]._keras_history.operation.name:
        return info.name
    names = {candidate.name for candidate in functional.layers}
    return inbound.operation.name if inbound.operation.name in names else info.name


def filter_images(
    model,
    layer: str,
    filters: list[int] | None = None,
    steps: int | None = None,
    learning_rate: float | None = None,
    seed: int = 0,
    parameterization: str = "fourier",
) -> NDArray[np.uint8]:
    """Activation maximization: for each filter, the image that excites it most.

    With the default Fourier parameterization the images are smooth, readable
    patterns; `parameterization="pixel"` is plain gradient ascent on the pixels
    (mostly grey, with faint edges). A filter behind a ReLU is climbed through
    the value before the ReLU, which also passes gradient where the filter is
    still silent. Put `top_patches` beside these: for a small CNN the training
    patches that excite a filter most are often the clearer answer.

    Args:
        model: a Keras classifier taking 0..255 images.
        layer: a layer name (usually a conv or activation layer).
        filters: channel indices; defaults to the first 16.
        steps: int, gradient-ascent steps. Defaults to `128` (Fourier) or `60` (pixel).
        learning_rate: float, Adam's step on the spectrum (default `0.02`), or a pixel step
            in 0..255 units (default `6.0`).
        seed: int, for the starting noise and the random transformations.
        parameterization: `"fourier"` (the default) or `"pixel"`.

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
    if parameterization not in PARAMETERIZATIONS:
        raise ConfigError(
            f"parameterization must be one of {', '.join(PARAMETERIZATIONS)}, got {parameterization!r}."
        )
    default_steps, default_rate = _DEFAULTS[parameterization]
    return _maximize(
        model,
        _climbed_layer(model, info),
        filters,
        default_steps if steps is None else steps,
        default_rate if learning_rate is None else learning_rate,
        seed,
        parameterization,
    )


def class_images(
    model,
    classes: list[int] | None = None,
    steps: int | None = None,
    learning_rate: float | None = None,
    seed: int = 0,
    parameterization: str = "fourier",
) -> NDArray[np.uint8]:
    """Activation maximization of classes: what each class "looks like" to the model.

    Each image climbs its class's log-probability, so it ends up confidently
    that class rather than merely high-scoring for every class.

    Args:
        classes: class indices; defaults to all.
        steps, learning_rate, seed, parameterization: as for `filter_images`
            (pixel ascent defaults to 150 steps of 2.0).

    Returns:
        uint8 `(len(classes), H, W, C)` images.
    """
    num_classes = int(model.output_shape[-1])
    classes = list(range(num_classes)) if classes is None else [int(c) for c in classes]
    if not classes or any(not 0 <= c < num_classes for c in classes):
        raise ConfigError(f"classes must be in 0..{num_classes - 1}, got {classes}.")
    if parameterization not in PARAMETERIZATIONS:
        raise ConfigError(
            f"parameterization must be one of {', '.join(PARAMETERIZATIONS)}, got {parameterization!r}."
        )
    default_steps, default_rate = {"fourier": _DEFAULTS["fourier"], "pixel": (150, 2.0)}[parameterization]
    steps = default_steps if steps is None else steps
    learning_rate = default_rate if learning_rate is None else learning_rate
    return _maximize(model, None, classes, steps, learning_rate, seed, parameterization)


@dataclasses.dataclass(frozen=True)
class ReceptiveField:
    """Where a layer's map unit looks in the input image, per axis (height, width).

    Unit `(i, j)` of the map is centred on input pixel `(start[0] + i * stride[0], start[1] + j * stride[1])`
    and sees a `size` window around it (padding included, so it may reach past the image).
    """

    size: tuple[int, int]
    stride: tuple[int, int]
    start: tuple[float, float]

    def window(self, row: int, column: int) -> tuple[int, int, int, int]:
        """`(top, left, bottom, right)` of unit `(row, column)`'s window, in input pixels (may overhang)."""
        top = int(np.floor(self.start[0] + row * self.stride[0] - (self.size[0] - 1) / 2 + 0.5))
        left = int(np.floor(self.start[1] + column * self.stride[1] - (self.size[1] - 1) / 2 + 0.5))
        return top, left, top + self.size[0], left + self.size[1]


def _axis_field(size, stride, start, kernel, step, padding, before, dilation=1):
    """One layer's effect on one axis's (size, stride, start); `before` is the input side length."""
    kernel = dilation * (kernel - 1) + 1
    if padding == "same":
        after = -(-before // step)
        left = max((after - 1) * step + kernel - before, 0) // 2
    else:
        left = 0
    return size + (kernel - 1) * stride, stride * step, start + stride * ((kernel - 1) / 2 - left)


def receptive_field(model, layer: str) -> ReceptiveField | None:
    """The receptive field of a layer's map units, from the kernels, strides and padding on the way to it.

    Convolutions (plain, depthwise, separable, dilated), pooling, zero padding and
    cropping are followed; any layer that keeps the map's size is passed through;
    where branches meet (a residual `Add`), the field covers every branch's.

    Returns:
        A `ReceptiveField`, or `None` where it is not known (a layer inside a
        nested model, a model that takes any image size, or a layer whose effect
        on position is not understood).
    """
    import keras

    from cnnviz.introspect import as_functional, resolve_layer

    path = resolve_layer(model, layer)
    if len(path) != 1:
        return None
    functional = as_functional(model)
    if any(side is None for side in tuple(functional.inputs[0].shape)[1:3]):
        return None  # 'same' padding depends on the size the image is read at
    fields: dict[str, tuple] = {}
    root = functional.inputs[0]._keras_history.operation.name
    fields[root] = ((1, 1), (1, 1), (0.0, 0.0))
    for current in functional.layers:
        if current.name == root:
            continue
        inbound = [tensor._keras_history.operation.name for tensor in keras.tree.flatten(current.input)]
        known = [fields[name] for name in inbound if name in fields]
        if not known or len(known) != len(inbound):
            fields[current.name] = None
            if current.name == path[0]:
                return None
            continue
        if any(field is None for field in known):
            fields[current.name] = None
        else:
            merged = _merged(known)
            fields[current.name] = None if merged is None else _layer_field(current, merged)
        if current.name == path[0]:
            field = fields[current.name]
            return None if field is None else ReceptiveField(*field)
    return None


def _merged(fields: list[tuple]) -> tuple | None:
    """Where branches meet: per axis, the window that holds every branch's window of unit 0."""
    if len(fields) == 1:
        return fields[0]
    if len({field[1] for field in fields}) != 1:
        return None  # branches at different strides: not followed
    size, start = [], []
    for axis in (0, 1):
        low = min(field[2][axis] - (field[0][axis] - 1) / 2 for field in fields)
        high = max(field[2][axis] + (field[0][axis] - 1) / 2 for field in fields)
        size.append(int(round(high - low)) + 1)
        start.append((low + high) / 2)
    return tuple(size), fields[0][1], tuple(start)


def _layer_field(layer, field):
    """`field` after `layer`, or `None` where the layer moves positions in a way not followed here."""
    import keras

    size, stride, start = field
    input_shape = tuple(keras.tree.flatten(layer.input)[0].shape)
    output_shape = tuple(layer.output.shape)
    if len(input_shape) != 4 or len(output_shape) != 4:
        return field if len(output_shape) == 4 else None
    kernel = getattr(layer, "kernel_size", None) or getattr(layer, "pool_size", None)
    if kernel is not None and hasattr(layer, "strides") and hasattr(layer, "padding"):
        if type(layer).__name__.endswith("Transpose"):
            return None
        dilation = getattr(layer, "dilation_rate", (1, 1))
        axes = [
            _axis_field(
                size[axis],
                stride[axis],
                start[axis],
                int(kernel[axis]),
                int(layer.strides[axis]),
                layer.padding,
                int(input_shape[1 + axis] or 0),
                int(dilation[axis]),
            )
            for axis in (0, 1)
        ]
        return tuple(tuple(axis[part] for axis in axes) for part in range(3))
    name = type(layer).__name__
    if name in ("ZeroPadding2D", "Cropping2D"):
        amounts = layer.padding if name == "ZeroPadding2D" else layer.cropping
        sign = -1 if name == "ZeroPadding2D" else 1
        return size, stride, tuple(start[axis] + sign * amounts[axis][0] * stride[axis] for axis in (0, 1))
    if tuple(input_shape[1:3]) == tuple(output_shape[1:3]):
        return field
    return None


@dataclasses.dataclass(frozen=True)
class TopPatches:
    """The image patches that excite each filter most (Deep Visualization Toolbox's view).

    Attributes:
        filters: the channel indices, in order.
        patches: uint8 `(F, k, h, w, C)`: per filter, the `k` patches, strongest first, cut
            to the receptive field (white where the field overhangs the image); the whole image as
            the model reads it where the field is unknown or holds the whole image.
        image_indices: int64 `(F, k)`: which image each patch came from (one patch per image).
        positions: int64 `(F, k, 2)`: the map unit (row, column) of each.
        activations: float32 `(F, k)`: the filter's value there.
        field: the layer's `ReceptiveField`, or `None` (then each patch is the whole image).
    """

    filters: tuple[int, ...]
    patches: NDArray[np.uint8]
    image_indices: NDArray[np.int64]
    positions: NDArray[np.int64]
    activations: NDArray[np.float32]
    field: ReceptiveField | None


def top_patches(
    model, layer: str, images, filters: list[int] | None = None, k: int = 9, batch_size: int = 256
) -> TopPatches:
    """For each filter, the `k` images that excite it most, cut to the receptive field of their strongest unit.

    Beside `filter_images` this is the other answer to "what does this filter look
    for": not an image made for it, but the training or test patches it fires on.
    For a small CNN it is often the clearer one.

    Args:
        model: a Keras classifier taking 0..255 images.
        layer: a layer with an image-like map.
        images: uint8 `(N, H, W, C)` images (the test split, say), as for `cnnviz.explain`.
        filters: channel indices; defaults to the first 16.
        k: int, patches per filter (at most `N`). Defaults to `9`.
        batch_size: int, images per forward pass.

    Returns:
        A `TopPatches`.
    """
    from cnnviz.introspect import model_batch, scaled_batch

    infos = {info.name: info for info in list_layers(model)}
    info = infos.get(layer) or next((i for n, i in infos.items() if n.split("/")[-1] == layer), None)
    if info is None or not info.has_map:
        raise ConfigError(f"the model has no layer named {layer!r} with an image-like map.")
    channels = int(info.output_shape[-1])
    filters = list(range(min(16, channels))) if filters is None else [int(f) for f in filters]
    if not filters or any(not 0 <= f < channels for f in filters):
        raise ConfigError(f"filters of layer {layer!r} must be in 0..{channels - 1}, got {filters}.")
    batch, _ = model_batch(model, images)
    if len(batch) == 0:
        raise ConfigError("top_patches needs at least one image.")
    k = max(1, min(int(k), len(batch)))
    tap = probe(model, (info.name,))
    step = scaled_batch(batch_size, *batch.shape[1:3])
    chosen = np.asarray(filters)
    best = []
    where = []
    for begin in range(0, len(batch), step):
        maps = np.asarray(tap.forward(batch[begin : begin + step])[0], np.float32)[..., chosen]
        flat = maps.reshape(len(maps), -1, len(filters))
        where.append(flat.argmax(axis=1))
        best.append(flat.max(axis=1))
    best, where = np.concatenate(best), np.concatenate(where)  # (N, F)
    map_width = int(maps.shape[2])
    order = np.argsort(-best, axis=0, kind="stable")[:k].T  # (F, k)
    flat_positions = np.take_along_axis(where.T, order, axis=1)
    positions = np.stack([flat_positions // map_width, flat_positions % map_width], axis=-1)
    activations = np.take_along_axis(best.T, order, axis=1).astype(np.float32)
    field = receptive_field(model, info.name)
    pixels = np.clip(np.rint(batch), 0, 255).astype(np.uint8)
    height, width = pixels.shape[1:3]
    if field is not None and field.size[0] >= height and field.size[1] >= width:
        field = None  # it sees the whole image: the patch is the image, not a mostly white square
    if field is None:
        patches = pixels[order]
    else:
        patch_height, patch_width = field.size
        patches = np.full((*order.shape, patch_height, patch_width, pixels.shape[-1]), 255, np.uint8)
        for row in range(order.shape[0]):
            for column in range(order.shape[1]):
                top, left, bottom, right = field.window(*positions[row, column])
                source = pixels[order[row, column], max(top, 0) : bottom, max(left, 0) : right]
                offset_top, offset_left = max(top, 0) - top, max(left, 0) - left
                patches[
                    row,
                    column,
                    offset_top : offset_top + source.shape[0],
                    offset_left : offset_left + source.shape[1],
                ] = source
    return TopPatches(
        tuple(filters), patches, order.astype(np.int64), positions.astype(np.int64), activations, field
    )
