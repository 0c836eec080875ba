"""Looking inside a CNN: attributions (heatmaps), activations and weights.

Every function takes a Keras classifier and images and returns numpy arrays
with a documented shape, dtype and range; `cnnviz.plotting` draws them. No
function changes the model it is given: inner outputs are read through a new
Functional model that shares the original layers (and so always sees their
current weights), built once per model and layer and cached.

Models may be Functional or Sequential, and may contain a nested model (a
`keras.applications` backbone used as a layer); a layer inside a nested model
is named `"backbone_name/layer_name"` or just by its own name.

Scores are taken before the softmax when the model has a layer named `logits`
(every cnnviz model does) or ends in a softmax, so no `ReplaceToLinear` step
is needed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import weakref
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cnnviz.errors import ConfigError
from cnnviz.images import prepare_batch, resize_image

#: The attribution methods `explain` accepts.
METHODS = (
    "gradcam",
    "gradcam++",
    "layercam",
    "scorecam",
    "saliency",
    "smoothgrad",
    "integrated_gradients",
    "occlusion",
)
CAM_METHODS = ("gradcam", "gradcam++", "layercam", "scorecam")
_CONV_CLASSES = ("Conv1D", "Conv2D", "Conv3D", "DepthwiseConv2D", "SeparableConv2D", "Conv2DTranspose")
# Layers that keep the conv's map as it is: the default CAM layer moves past them.
_SAME_MAP_CLASSES = ("BatchNormalization", "Activation", "ReLU", "LeakyReLU", "ELU", "PReLU")


# --------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LayerInfo:
    """One layer a UI can offer.

    Attributes:
        name: the name to pass to the functions here; nested layers read
            `"outer/inner"`.
        class_name: the Keras class, e.g. `"Conv2D"`.
        output_shape: output shape without the batch axis.
        is_conv: a convolution layer.
        has_map: its output is an image-like map `(H, W, C)` with `H * W > 1`.
        parameters: its number of weights.
    """

    name: str
    class_name: str
    output_shape: tuple
    is_conv: bool
    has_map: bool
    parameters: int


def _is_model(layer) -> bool:
    import keras

    return isinstance(layer, keras.Model)


def _output_shape(layer) -> tuple:
    try:
        shape = layer.output.shape
    except (AttributeError, ValueError):
        return ()
    return tuple(shape[1:])


_LAYER_LISTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def list_layers(model) -> list[LayerInfo]:
    """Every layer of `model` in order, nested models expanded.

    Args:
        model: a built Keras model.

    Returns:
        A list of `LayerInfo`, input layers left out.
    """
    try:
        cached = _LAYER_LISTS.get(model)
    except TypeError:  # not weakly referenceable
        cached = None
    if cached is not None:
        return list(cached)
    found = _walk_layers(model)
    with contextlib.suppress(TypeError):  # not weakly referenceable: no cache
        _LAYER_LISTS[model] = tuple(found)
    return found


def _walk_layers(model) -> list[LayerInfo]:
    model = _as_functional(model)
    found = []

    def walk(container, prefix: str) -> None:
        for layer in container.layers:
            if type(layer).__name__ == "InputLayer":
                continue
            name = f"{prefix}{layer.name}"
            if _is_model(layer):
                walk(_as_functional(layer), f"{name}/")
                continue
            shape = _output_shape(layer)
            has_map = len(shape) == 3 and None not in shape[:2] and shape[0] * shape[1] > 1
            found.append(
                LayerInfo(
                    name=name,
                    class_name=type(layer).__name__,
                    output_shape=shape,
                    is_conv=type(layer).__name__ in _CONV_CLASSES,
                    has_map=has_map,
                    parameters=int(layer.count_params()) if layer.built else 0,
                )
            )

    walk(model, "")
    return found


def default_cam_layer(model) -> str:
    """The layer Grad-CAM reads by default.

    The last convolution whose output still has spatial extent (never a 1x1
    "logits" conv), moved past the batch-norm and activation layers right
    after it, so the map is the rectified one the paper uses.

    Raises:
        ConfigError: the model has no such convolution.
    """
    layers = list_layers(model)
    conv_positions = [index for index, info in enumerate(layers) if info.is_conv and info.has_map]
    if not conv_positions:
        raise ConfigError(
            "the model has no convolution layer with a spatial output, so there is nothing to "
            "put a class activation map on; choose a gradient method such as 'saliency'."
        )
    position = conv_positions[-1]
    conv_shape = layers[position].output_shape
    while (
        position + 1 < len(layers)
        and layers[position + 1].class_name in _SAME_MAP_CLASSES
        and layers[position + 1].output_shape == conv_shape
    ):
        position += 1
    return layers[position].name


def _resolve_layer(model, name: str) -> tuple[str, ...]:
    """Turns `"inner"` or `"outer/inner"` into the path of layer names."""
    names = [info.name for info in list_layers(model)]
    if name in names:
        return tuple(name.split("/"))
    matches = [candidate for candidate in names if candidate.split("/")[-1] == name]
    if len(matches) == 1:
        return tuple(matches[0].split("/"))
    if len(matches) > 1:
        raise ConfigError(f"layer name {name!r} is ambiguous; use one of {', '.join(matches)}.")
    with_maps = [info.name for info in list_layers(model) if info.has_map]
    hint = ", ".join(with_maps[-8:]) or ", ".join(names[-8:])
    raise ConfigError(f"the model has no layer named {name!r}; layers with maps include: {hint}.")


# --------------------------------------------------------------------------
# Probes: Functional models that expose inner outputs and the class scores
# --------------------------------------------------------------------------


def _as_functional(model):
    """A Functional view of a Sequential model (same layers, same weights)."""
    import keras

    if isinstance(model, keras.Sequential):
        try:
            inputs, outputs = model.inputs, model.outputs
        except (AttributeError, ValueError) as error:
            raise ConfigError(
                "the Sequential model is not built; give it a keras.Input or call it on data first."
            ) from error
        return keras.Model(inputs[0], outputs[0], name=model.name)
    if not hasattr(model, "inputs") or not model.inputs:
        raise ConfigError("only Functional and built Sequential Keras models can be explained.")
    return model


def _is_softmax(activation) -> bool:
    return getattr(activation, "__name__", "") == "softmax"


def _build_tap_model(model, paths: list[tuple[str, ...]], with_logits: bool):
    """A Functional model returning `[*taps, scores]` (or `[*taps, output]`)."""
    import keras

    functional = _as_functional(model)
    nested = {}
    for path in paths:
        if len(path) > 1:
            nested.setdefault(path[0], []).append(path[1:])
    wanted = {path[0] for path in paths if len(path) == 1}
    top_names = {layer.name for layer in functional.layers}
    logits_name = "logits" if with_logits and "logits" in top_names else None
    last_layer = functional.layers[-1]
    records: dict[Any, Any] = {}

    def call(layer, *args, **kwargs):
        inner_paths = nested.get(layer.name)
        if inner_paths:
            inner = _build_tap_model(layer, inner_paths, with_logits=False)
            outputs = inner(*args, **kwargs)
            for path, tensor in zip(inner_paths, outputs[:-1]):
                records[(layer.name, *path)] = tensor
            output = outputs[-1]
        else:
            output = layer(*args, **kwargs)
        if layer.name in wanted:
            records[(layer.name,)] = output
        if with_logits and layer.name == logits_name:
            records["scores"] = output
        elif with_logits and layer is last_layer and "scores" not in records:
            records["scores"] = _pre_softmax(layer, args, output)
        return output

    clone = keras.models.clone_model(functional, clone_function=lambda layer: layer, call_function=call)
    outputs = [records[tuple(path)] for path in paths]
    outputs.append(records["scores"] if with_logits else clone.outputs[0])
    return keras.Model(clone.inputs[0], outputs, name=f"{functional.name}_probe")


def _pre_softmax(layer, args, output):
    """The class scores before a final softmax, or the output itself."""
    import keras

    class_name = type(layer).__name__
    if class_name == "Softmax" or (class_name == "Activation" and _is_softmax(layer.activation)):
        return args[0]
    if class_name == "Dense" and _is_softmax(layer.activation):
        scores = keras.ops.matmul(args[0], layer.kernel)
        return scores + layer.bias if layer.use_bias else scores
    return output


class _Probe:
    """Compiled gradient functions over one tap model."""

    def __init__(self, model, paths: list[tuple[str, ...]]):
        import tensorflow as tf

        self.tap_model = _build_tap_model(model, paths, with_logits=True)
        self.input_shape = tuple(int(side) for side in self.tap_model.input.shape[1:])
        self.num_taps = len(paths)
        image_spec = tf.TensorSpec((None, *self.input_shape), tf.float32)
        index_spec = tf.TensorSpec((None,), tf.int32)
        self.forward = tf.function(self._forward, input_signature=[image_spec])
        self.cam_gradients = tf.function(self._cam_gradients, input_signature=[image_spec, index_spec])
        self.input_gradients = tf.function(self._input_gradients, input_signature=[image_spec, index_spec])

    def _forward(self, images):
        outputs = self.tap_model(images, training=False)
        return outputs if isinstance(outputs, (list, tuple)) else [outputs]

    @staticmethod
    def _chosen(scores, class_index):
        import tensorflow as tf

        predicted = tf.argmax(scores, axis=1, output_type=tf.int32)
        return tf.where(class_index < 0, predicted, class_index)

    def _cam_gradients(self, images, class_index):
        import tensorflow as tf

        with tf.GradientTape() as tape:
            activations, scores = self.tap_model(images, training=False)
            chosen = self._chosen(scores, class_index)
            score = tf.gather(scores, chosen, axis=1, batch_dims=1)
        gradients = tape.gradient(score, activations)
        return activations, gradients, chosen

    def _input_gradients(self, images, class_index):
        import tensorflow as tf

        with tf.GradientTape() as tape:
            tape.watch(images)
            outputs = self.tap_model(images, training=False)
            scores = outputs[-1] if isinstance(outputs, (list, tuple)) else outputs
            chosen = self._chosen(scores, class_index)
            score = tf.gather(scores, chosen, axis=1, batch_dims=1)
        return tape.gradient(score, images), score, chosen


_PROBES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _probe(model, layer_names: tuple[str, ...] = ()) -> _Probe:
    paths = tuple(_resolve_layer(model, name) for name in layer_names)
    try:
        per_model = _PROBES.setdefault(model, {})
    except TypeError:  # a model that cannot be weakly referenced: no cache
        return _Probe(model, list(paths))
    if paths not in per_model:
        per_model[paths] = _Probe(model, list(paths))
    return per_model[paths]


# --------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------


def _input_shape(model) -> tuple:
    """The model's input shape without the batch axis (no Functional view is built: hot path)."""
    shape = model.input_shape
    if isinstance(shape, list):  # several inputs: only the first is an image
        shape = shape[0]
    return tuple(None if side is None else int(side) for side in shape[1:])


def _model_batch(model, images) -> tuple[NDArray[np.float32], list[tuple[int, int]] | None]:
    """The model-sized float batch and the original sizes (None when equal)."""
    input_shape = _input_shape(model)
    if len(input_shape) != 3:
        raise ConfigError(f"the model's input shape {input_shape} is not (height, width, channels).")
    if isinstance(images, np.ndarray) and images.ndim == 4 and images.shape[1:] == input_shape:
        return images.astype(np.float32, copy=False), None
    if isinstance(images, np.ndarray) and images.ndim in (2, 3):
        images = [images]
    sizes = [tuple(np.asarray(image).shape[:2]) for image in images]
    batch = prepare_batch(list(images), input_shape).astype(np.float32)
    if all(size == input_shape[:2] for size in sizes):
        return batch, None
    return batch, sizes


def _class_indices(class_index, count: int, num_classes: int) -> NDArray[np.int32]:
    if class_index is None:
        return np.full(count, -1, dtype=np.int32)
    indices = np.broadcast_to(np.asarray(class_index, dtype=np.int64), (count,)).astype(np.int32)
    bad = indices[(indices < 0) | (indices >= num_classes)]
    if bad.size:
        raise ConfigError(f"class_index must be in 0..{num_classes - 1}, got {int(bad[0])}.")
    return indices


def _num_classes(probe: _Probe) -> int:
    return int(probe.tap_model.outputs[-1].shape[-1])


def _normalize(maps: NDArray[np.float32]) -> NDArray[np.float32]:
    """Each map divided by its maximum, negatives clipped: values in [0, 1]."""
    maps = np.maximum(maps, 0).astype(np.float32)
    peaks = maps.reshape(len(maps), -1).max(axis=1)
    scale = np.where(peaks > 0, peaks, 1.0).astype(np.float32)
    return maps / scale[:, None, None]


def _resize_maps(maps: NDArray[np.float32], size: tuple[int, int]) -> NDArray[np.float32]:
    """Bilinear resize of `(N, h, w)` maps to `size`."""
    import tensorflow as tf

    if maps.shape[1:] == tuple(size):
        return maps
    resized = tf.image.resize(maps[..., None], size, method="bilinear")
    return np.asarray(resized[..., 0], dtype=np.float32)


# --------------------------------------------------------------------------
# Class activation maps
# --------------------------------------------------------------------------


def _combine_cam(method: str, activations, gradients) -> NDArray[np.float32]:
    """Grad-CAM / Grad-CAM++ / LayerCAM from activations and their gradients."""
    activations = np.asarray(activations, dtype=np.float32)
    gradients = np.asarray(gradients, dtype=np.float32)
    if method == "gradcam":
        weights = gradients.mean(axis=(1, 2))
        cam = np.einsum("nhwc,nc->nhw", activations, weights)
    elif method == "gradcam++":
        squared = gradients**2
        denominator = 2 * squared + activations.sum(axis=(1, 2), keepdims=True) * gradients**3
        alpha = squared / np.where(denominator != 0, denominator, 1.0)
        weights = (alpha * np.maximum(gradients, 0)).sum(axis=(1, 2))
        cam = np.einsum("nhwc,nc->nhw", activations, weights)
    elif method == "layercam":
        cam = (np.maximum(gradients, 0) * activations).sum(axis=-1)
    else:  # pragma: no cover - callers check
        raise ConfigError(f"unknown CAM method {method!r}.")
    return np.maximum(cam, 0).astype(np.float32)


def class_activation_maps(
    model,
    images,
    method: str = "gradcam",
    class_index: int | list[int] | None = None,
    layer: str | None = None,
    batch_size: int = 64,
) -> NDArray[np.float32]:
    """Raw Grad-CAM, Grad-CAM++ or LayerCAM maps at the layer's resolution.

    Args:
        model: a Keras classifier taking 0..255 images.
        images: as `cnnviz.load_image` returns them (one, a list or a batch).
        method: `"gradcam"`, `"gradcam++"` or `"layercam"`.
        class_index: the class to explain, one per image, or `None` for the
            predicted class.
        layer: the layer to read; defaults to `default_cam_layer(model)`.
        batch_size: int, images per pass. Defaults to `64`.

    Returns:
        float32 `(N, h, w)`, non-negative, not normalized.
    """
    if method not in ("gradcam", "gradcam++", "layercam"):
        raise ConfigError(f"method must be gradcam, gradcam++ or layercam, got {method!r}.")
    layer = layer or default_cam_layer(model)
    probe = _probe(model, (layer,))
    batch, _ = _model_batch(model, images)
    indices = _class_indices(class_index, len(batch), _num_classes(probe))
    maps = []
    for start in range(0, len(batch), batch_size):
        activations, gradients, _ = probe.cam_gradients(
            batch[start : start + batch_size], indices[start : start + batch_size]
        )
        if len(activations.shape) != 4:
            raise ConfigError(f"layer {layer!r} has no spatial map (output shape {activations.shape}).")
        maps.append(_combine_cam(method, activations, gradients))
    return np.concatenate(maps) if maps else np.zeros((0, 1, 1), np.float32)


def score_cam(
    model,
    images,
    class_index: int | list[int] | None = None,
    layer: str | None = None,
    max_channels: int | None = 32,
    batch_size: int = 128,
) -> NDArray[np.float32]:
    """Score-CAM: channels weighted by the class probability of the image they mask.

    Args:
        model, images, class_index, layer: as for `class_activation_maps`.
        max_channels: keep only the channels with the highest mean activation
            (the fast variant); `None` uses every channel. Defaults to `32`.
        batch_size: int, masked images per pass.

    Returns:
        float32 `(N, H, W)` at the model's input size, non-negative.
    """
    layer = layer or default_cam_layer(model)
    probe = _probe(model, (layer,))
    batch, _ = _model_batch(model, images)
    indices = _class_indices(class_index, len(batch), _num_classes(probe))
    height, width = probe.input_shape[:2]
    results = []
    for image, index in zip(batch, indices):
        activations, scores = probe.forward(image[None])
        activations = np.asarray(activations[0], dtype=np.float32)
        if index < 0:
            index = int(np.argmax(scores[0]))
        channel_order = np.argsort(-activations.mean(axis=(0, 1)))
        if max_channels:
            channel_order = channel_order[: int(max_channels)]
        chosen = activations[..., channel_order]
        masks = _resize_maps(np.moveaxis(chosen, -1, 0), (height, width))
        low = masks.min(axis=(1, 2), keepdims=True)
        span = masks.max(axis=(1, 2), keepdims=True) - low
        masks = np.where(span > 0, (masks - low) / np.where(span > 0, span, 1), 0).astype(np.float32)
        weights = []
        for start in range(0, len(masks), batch_size):
            masked = image[None] * masks[start : start + batch_size, :, :, None]
            scores = np.asarray(probe.forward(masked)[-1], dtype=np.float32)
            weights.append(_softmax(scores)[:, index])
        weights = np.concatenate(weights)
        results.append(np.maximum(np.einsum("khw,k->hw", masks, weights), 0))
    return np.stack(results).astype(np.float32) if results else np.zeros((0, height, width), np.float32)


def _softmax(scores: NDArray[np.float32]) -> NDArray[np.float32]:
    shifted = scores - scores.max(axis=1, keepdims=True)
    exponentials = np.exp(shifted)
    return exponentials / exponentials.sum(axis=1, keepdims=True)


# --------------------------------------------------------------------------
# Gradient attributions
# --------------------------------------------------------------------------


def _gradients(probe: _Probe, batch, indices, batch_size: int = 64) -> tuple[NDArray, NDArray]:
    gradients, chosen = [], []
    for start in range(0, len(batch), batch_size):
        grads, _, picked = probe.input_gradients(
            batch[start : start + batch_size], indices[start : start + batch_size]
        )
        gradients.append(np.asarray(grads, dtype=np.float32))
        chosen.append(np.asarray(picked))
    return np.concatenate(gradients), np.concatenate(chosen).astype(np.int32)


def saliency(model, images, class_index: int | list[int] | None = None) -> NDArray[np.float32]:
    """Vanilla saliency: |d class score / d pixel|, maximum over colour channels.

    Returns:
        float32 `(N, H, W)` at the model's input size, non-negative.
    """
    probe = _probe(model)
    batch, _ = _model_batch(model, images)
    indices = _class_indices(class_index, len(batch), _num_classes(probe))
    gradients, _ = _gradients(probe, batch, indices)
    return np.abs(gradients).max(axis=-1)


def smoothgrad(
    model,
    images,
    class_index: int | list[int] | None = None,
    samples: int = 20,
    noise: float = 0.15,
    seed: int = 0,
) -> NDArray[np.float32]:
    """SmoothGrad: saliency averaged over noisy copies of each image.

    Args:
        samples: int, noisy copies per image. Defaults to `20`.
        noise: float, noise standard deviation as a fraction of 0..255.
        seed: int, for the noise.

    Returns:
        float32 `(N, H, W)` at the model's input size, non-negative.
    """
    probe = _probe(model)
    batch, _ = _model_batch(model, images)
    indices = _class_indices(class_index, len(batch), _num_classes(probe))
    # Explain the class predicted for the clean image, not each noisy copy's.
    _, indices = _gradients(probe, batch, indices)
    rng = np.random.default_rng(seed)
    total = np.zeros(batch.shape, dtype=np.float32)
    for _ in range(int(samples)):
        noisy = batch + rng.normal(0, noise * 255.0, batch.shape).astype(np.float32)
        gradients, _ = _gradients(probe, noisy, indices)
        total += gradients
    return np.abs(total / max(int(samples), 1)).max(axis=-1)


def integrated_gradients(
    model,
    images,
    class_index: int | list[int] | None = None,
    steps: int = 64,
    baseline: float | NDArray = 0.0,
) -> NDArray[np.float32]:
    """Integrated gradients along the straight path from a baseline image.

    Completeness: the attributions of an image sum to (nearly) the class score
    of the image minus that of the baseline (trapezoid rule over `steps`).

    Args:
        steps: int, integration steps. Defaults to `64`.
        baseline: a value or image (model-sized, 0..255) to start from;
            defaults to black.

    Returns:
        float32 `(N, H, W, C)` signed attributions at the model's input size.
    """
    probe = _probe(model)
    batch, _ = _model_batch(model, images)
    indices = _class_indices(class_index, len(batch), _num_classes(probe))
    _, indices = _gradients(probe, batch, indices)
    alphas = np.linspace(0.0, 1.0, int(steps) + 1, dtype=np.float32)
    weights = np.full(len(alphas), 1.0 / steps, dtype=np.float32)
    weights[[0, -1]] /= 2  # trapezoid rule
    base = np.broadcast_to(np.asarray(baseline, dtype=np.float32), batch.shape[1:])
    attributions = np.empty(batch.shape, dtype=np.float32)
    for position, (image, index) in enumerate(zip(batch, indices)):
        path = base[None] + alphas[:, None, None, None] * (image - base)[None]
        gradients, _ = _gradients(probe, path, np.full(len(path), index, np.int32))
        attributions[position] = (image - base) * np.tensordot(weights, gradients, axes=1)
    return attributions


def class_scores(model, images, class_index: int | list[int] | None = None) -> NDArray[np.float32]:
    """The score (before softmax) of the explained class, one per image."""
    probe = _probe(model)
    batch, _ = _model_batch(model, images)
    scores = np.asarray(probe.forward(batch)[-1], dtype=np.float32)
    indices = _class_indices(class_index, len(batch), scores.shape[1])
    indices = np.where(indices < 0, scores.argmax(axis=1), indices)
    return scores[np.arange(len(scores)), indices]


def occlusion_map(
    model,
    images,
    class_index: int | list[int] | None = None,
    patch_size: int = 8,
    stride: int = 4,
    fill: float | str = "mean",
    batch_size: int = 256,
) -> NDArray[np.float32]:
    """The tutorial's occlusion map: how much the class probability drops when
    a square patch covers each part of the image.

    Args:
        patch_size: int, side of the covering patch in model pixels. Defaults to `8`.
        stride: int, step between patches. Defaults to `4`.
        fill: the patch's value: a number in 0..255 or `"mean"` (each image's
            mean colour). Defaults to `"mean"`.
        batch_size: int, occluded images per pass.

    Returns:
        float32 `(N, H, W)` at the model's input size: the mean probability
        drop over the patches covering each pixel (negative = covering helps).
    """
    probe = _probe(model)
    batch, _ = _model_batch(model, images)
    height, width = probe.input_shape[:2]
    patch_size, stride = int(patch_size), int(stride)
    if not 1 <= patch_size <= min(height, width) or stride < 1:
        raise ConfigError(
            f"patch_size must be 1..{min(height, width)} and stride at least 1, got {patch_size} and {stride}."
        )
    if not (fill == "mean" or isinstance(fill, (int, float))):
        raise ConfigError(f"fill must be a number in 0..255 or 'mean', got {fill!r}.")
    indices = _class_indices(class_index, len(batch), _num_classes(probe))

    def starts(size: int) -> list[int]:
        positions = list(range(0, size - patch_size + 1, stride))
        if positions[-1] != size - patch_size:
            positions.append(size - patch_size)
        return positions

    corners = [(top, left) for top in starts(height) for left in starts(width)]
    results = np.zeros((len(batch), height, width), dtype=np.float32)
    coverage = np.zeros((height, width), dtype=np.float32)
    for top, left in corners:
        coverage[top : top + patch_size, left : left + patch_size] += 1
    for position, (image, index) in enumerate(zip(batch, indices)):
        clean = _softmax(np.asarray(probe.forward(image[None])[-1], dtype=np.float32))[0]
        if index < 0:
            index = int(np.argmax(clean))
        value = image.mean(axis=(0, 1)) if fill == "mean" else np.float32(fill)
        drops = []
        for start in range(0, len(corners), batch_size):
            chunk = corners[start : start + batch_size]
            occluded = np.repeat(image[None], len(chunk), axis=0)
            for row, (top, left) in enumerate(chunk):
                occluded[row, top : top + patch_size, left : left + patch_size] = value
            scores = np.asarray(probe.forward(occluded)[-1], dtype=np.float32)
            drops.append(clean[index] - _softmax(scores)[:, index])
        drops = np.concatenate(drops)
        for drop, (top, left) in zip(drops, corners):
            results[position, top : top + patch_size, left : left + patch_size] += drop
    return results / coverage[None]


# --------------------------------------------------------------------------
# One entry point
# --------------------------------------------------------------------------


def explain(
    model,
    images,
    method: str = "gradcam",
    class_index: int | list[int] | None = None,
    layer: str | None = None,
    **options: Any,
) -> NDArray[np.float32] | list[NDArray[np.float32]]:
    """Heatmaps of where the model looks, by any method in `METHODS`.

    Args:
        model: a Keras classifier taking 0..255 images (every cnnviz model does).
        images: as `cnnviz.load_image` returns them: one uint8 `(H, W, C)`
            image, a list of them (any sizes) or an `(N, H, W, C)` batch.
        method: one of `METHODS`. Defaults to `"gradcam"`.
        class_index: the class to explain (one for all, or one per image);
            `None` explains each image's predicted class.
        layer: for the CAM methods, the layer to read; defaults to
            `default_cam_layer(model)`. Ignored by the other methods.
        **options: method options, e.g. `max_channels` (scorecam), `samples`
            (smoothgrad), `steps` (integrated_gradients), `patch_size` and
            `stride` (occlusion).

    Returns:
        float32 heatmaps in [0, 1], 1 = most important: `(N, H, W)` at the
        images' own resolution, or a list of `(H, W)` maps when the images
        have different sizes.

    Example:

    >>> heatmaps = cnnviz.explain(model, cnnviz.load_image("cat.png"))
    >>> heatmaps.shape, heatmaps.max()
    ((1, 64, 64), 1.0)
    """
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}.")
    if method in ("gradcam", "gradcam++", "layercam"):
        maps = class_activation_maps(model, images, method, class_index, layer, **options)
    elif method == "scorecam":
        maps = score_cam(model, images, class_index, layer, **options)
    elif method == "saliency":
        maps = saliency(model, images, class_index, **options)
    elif method == "smoothgrad":
        maps = smoothgrad(model, images, class_index, **options)
    elif method == "integrated_gradients":
        maps = np.abs(integrated_gradients(model, images, class_index, **options)).sum(axis=-1)
    else:
        maps = occlusion_map(model, images, class_index, **options)
    input_size = _input_shape(model)[:2]
    maps = _normalize(_resize_maps(maps, input_size))
    sizes = _original_sizes(images)
    if sizes is None or all(size == input_size for size in sizes):
        return maps
    if len(set(sizes)) == 1:
        return _normalize(_resize_maps(maps, sizes[0]))
    return [_normalize(_resize_maps(single[None], size))[0] for single, size in zip(maps, sizes)]


def _original_sizes(images) -> list[tuple[int, int]] | None:
    if isinstance(images, np.ndarray):
        if images.ndim == 4:
            return [tuple(images.shape[1:3])] * len(images)
        return [tuple(images.shape[:2])]
    return [tuple(np.asarray(image).shape[:2]) for image in images]


def overlay(
    image: NDArray,
    heatmap: NDArray,
    colormap: str = "Jet",
    opacity: float = 0.45,
) -> NDArray[np.uint8]:
    """Blends a heatmap over an image.

    Args:
        image: uint8 `(H, W)` or `(H, W, C)` image.
        heatmap: `(h, w)` map in [0, 1]; resized to the image.
        colormap: a plotly colorscale name (e.g. `"Jet"`, `"Viridis"`, `"Inferno"`).
        opacity: float in [0, 1], the heatmap's weight. Defaults to `0.45`.

    Returns:
        uint8 RGB `(H, W, 3)`.
    """
    if not 0.0 <= float(opacity) <= 1.0:
        raise ConfigError(f"opacity must be in [0, 1], got {opacity}.")
    rgb = resize_image(np.asarray(image), np.asarray(image).shape[:2], channels=3).astype(np.float32)
    heat = np.asarray(heatmap, dtype=np.float32)
    if heat.ndim != 2:
        raise ConfigError(f"heatmap must be 2-D (H, W), got shape {heat.shape}.")
    heat = _resize_maps(np.clip(heat, 0, 1)[None], rgb.shape[:2])[0]
    colours = colormap_lut(colormap)[np.clip(np.rint(heat * 255), 0, 255).astype(np.uint8)]
    blended = (1 - opacity) * rgb + opacity * colours.astype(np.float32)
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def colormap_lut(name: str = "Jet") -> NDArray[np.uint8]:
    """A `(256, 3)` uint8 lookup table from a plotly colorscale name."""
    import plotly.colors

    try:
        scale = plotly.colors.get_colorscale(name)
    except Exception as error:  # plotly raises PlotlyError with its own list
        raise ConfigError(f"unknown colormap {name!r}; try Jet, Viridis, Inferno or Turbo.") from error
    samples = plotly.colors.sample_colorscale(scale, list(np.linspace(0, 1, 256)), colortype="tuple")
    values = np.asarray(samples, dtype=np.float64)
    if values.max() <= 1.0:  # plotly gives 0..1 tuples for some scales, 0..255 for others
        values = values * 255.0
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)
