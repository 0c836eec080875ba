"""Attributions: heatmaps of where a classifier looks, by eight methods in one registry.

`METHODS` maps a name to a `Method`: its label, whether it reads a layer,
its options and its function. `explain(model, images, method=...)` runs any of
them and returns normalized heatmaps at the images' own size; the CLI's
`--method` and the studio's method choice are read from `METHODS`, so a new
method is one registry entry and its function.

Reading the model (layers, probes) lives in `cnnviz.introspect`, drawing
(resizing, colour maps, overlays) in `cnnviz.render`. No function changes the
model it is given.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cnnviz import introspect
from cnnviz.errors import ConfigError
from cnnviz.images import by_reading_size, image_sizes, reading_size
from cnnviz.introspect import default_cam_layer, list_layers
from cnnviz.render import normalize_maps, overlay, resize_maps

__all__ = [
    "METHODS",
    "Method",
    "class_activation_maps",
    "contrastive_gradients",
    "contrastive_map",
    "default_cam_layer",
    "explain",
    "explain_each",
    "integrated_gradients",
    "list_layers",
    "occlusion_map",
    "overlay",
    "saliency",
    "score_cam",
    "smoothgrad",
]


def _prepare(model, images, class_index, layers: tuple[str, ...]):
    """The probe over `layers`, the model-sized float batch and the class index per image (-1: predicted)."""
    probe = introspect.probe(model, layers)
    batch, _ = introspect.model_batch(model, images)
    return probe, batch, introspect.class_indices(class_index, len(batch), introspect.num_classes_of(probe))


def gradcam_weights(activations: NDArray, gradients: NDArray) -> NDArray[np.float32]:
    """Grad-CAM: each channel weighted by its mean gradient."""
    return np.einsum("nhwc,nc->nhw", activations, gradients.mean(axis=(1, 2)))


def gradcam_plus_plus_weights(activations: NDArray, gradients: NDArray) -> NDArray[np.float32]:
    """Grad-CAM++: each channel weighted by its positive gradients, scaled by the closed-form alphas."""
    squared = gradients**2
    denominator = 2 * squared + activations.sum(axis=(1, 2), keepdims=True) * gradients**3
    alpha = squared / np.where(denominator != 0, denominator, 1.0)
    return np.einsum("nhwc,nc->nhw", activations, (alpha * np.maximum(gradients, 0)).sum(axis=(1, 2)))


def layercam_weights(activations: NDArray, gradients: NDArray) -> NDArray[np.float32]:
    """LayerCAM: every position weighted by its own positive gradient."""
    return (np.maximum(gradients, 0) * activations).sum(axis=-1)


def class_activation_maps(
    model,
    images,
    method: str = "gradcam",
    class_index: int | list[int] | None = None,
    layer: str | None = None,
    batch_size: int = 64,
) -> NDArray[np.float32]:
    """Raw class activation maps (Grad-CAM, Grad-CAM++, LayerCAM, ...) at the layer's resolution.

    Args:
        model: a Keras classifier taking 0..255 images.
        images: as `cnnviz.load_image` returns them (one, a list or a batch).
        method: a `METHODS` entry with a `cam_weights` function.
        class_index: the class to explain, one per image, or `None` for the
            predicted class.
        layer: the layer to read; defaults to `default_cam_layer(model)`.
        batch_size: int, images per pass. Defaults to `64`.

    Returns:
        float32 `(N, h, w)`, non-negative, not normalized.
    """
    combine = METHODS[method].cam_weights if method in METHODS else None
    if combine is None:
        names = ", ".join(name for name, entry in METHODS.items() if entry.cam_weights is not None)
        raise ConfigError(f"method must be one of {names}, got {method!r}.")
    layer = layer or default_cam_layer(model)
    probe, batch, indices = _prepare(model, images, class_index, (layer,))
    maps = []
    batch_size = introspect.scaled_batch(batch_size, *batch.shape[1:3])
    for start in range(0, len(batch), batch_size):
        activations, gradients, _ = probe.cam_gradients(
            batch[start : start + batch_size], indices[start : start + batch_size]
        )
        if len(activations.shape) != 4:
            raise ConfigError(f"layer {layer!r} has no spatial map (output shape {activations.shape}).")
        if gradients is None:  # e.g. the rescaled input: Keras gives no gradient of the scores at it
            raise ConfigError(
                f"the class scores give no gradient at layer {layer!r}; choose a later layer "
                f"(the default is {default_cam_layer(model)!r}) or Score-CAM."
            )
        activations, gradients = np.asarray(activations, np.float32), np.asarray(gradients, np.float32)
        maps.append(np.maximum(combine(activations, gradients), 0).astype(np.float32))
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
    probe, batch, indices = _prepare(model, images, class_index, (layer,))
    height, width = batch.shape[1:3]
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
        masks = resize_maps(np.moveaxis(chosen, -1, 0), (height, width))
        low = masks.min(axis=(1, 2), keepdims=True)
        span = masks.max(axis=(1, 2), keepdims=True) - low
        masks = np.where(span > 0, (masks - low) / np.where(span > 0, span, 1), 0).astype(np.float32)
        weights = []
        step = introspect.scaled_batch(batch_size, height, width)
        for start in range(0, len(masks), step):
            masked = image[None] * masks[start : start + step, :, :, None]
            scores = np.asarray(probe.forward(masked)[-1], dtype=np.float32)
            weights.append(_softmax(scores)[:, index])
        weights = np.concatenate(weights)
        results.append(np.maximum(np.einsum("khw,k->hw", masks, weights), 0))
    return np.stack(results).astype(np.float32) if results else np.zeros((0, height, width), np.float32)


def _softmax(scores: NDArray[np.float32]) -> NDArray[np.float32]:
    shifted = scores - scores.max(axis=1, keepdims=True)
    exponentials = np.exp(shifted)
    return exponentials / exponentials.sum(axis=1, keepdims=True)


def _gradients(probe: introspect.Probe, batch, indices, batch_size: int = 64) -> tuple[NDArray, NDArray]:
    gradients, chosen = [], []
    batch_size = introspect.scaled_batch(batch_size, *batch.shape[1:3])
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
    probe, batch, indices = _prepare(model, images, class_index, ())
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
    probe, batch, indices = _prepare(model, images, class_index, ())
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
    probe, batch, indices = _prepare(model, images, class_index, ())
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


def contrastive_gradients(model, images, target, foil) -> NDArray[np.float32]:
    """d(logit `target` - logit `foil`) / d pixel, signed, summed over colour channels.

    Positive where raising the pixel (every channel of it) would raise the
    target's score over the foil's, to first order: what would have to change
    for `target` to win over `foil`.

    Args:
        target, foil: class indices, one for all images or one per image.

    Returns:
        float32 `(N, H, W)` at the model's input size.
    """
    probe, batch, targets = _prepare(model, images, target, ())
    foils = introspect.class_indices(foil, len(batch), introspect.num_classes_of(probe))
    if np.any(targets < 0) or np.any(foils < 0):
        raise ConfigError("a contrast needs both classes: the one to explain and the one it is set against.")
    if np.any(targets == foils):
        raise ConfigError("a contrast needs two different classes.")
    # Gradients are linear: the gradient of a difference is the difference of the gradients.
    return (_gradients(probe, batch, targets)[0] - _gradients(probe, batch, foils)[0]).sum(axis=-1)


def contrastive_map(model, images, target, foil) -> NDArray[np.float32]:
    """Why `target` and not `foil`: where raising the pixels raises logit `target` - logit `foil`.

    The positive part of `contrastive_gradients`, normalized to [0, 1] at the
    images' own size (1 = where a change helps `target` over `foil` most).
    """
    sizes = image_sizes(images)
    maps = normalize_maps(contrastive_gradients(model, images, target, foil))
    if sizes and len(set(sizes)) == 1 and sizes[0] != maps.shape[1:]:
        maps = normalize_maps(resize_maps(maps, sizes[0]))
    return maps


def class_scores(model, images, class_index: int | list[int] | None = None) -> NDArray[np.float32]:
    """The score (before softmax) of the explained class, one per image."""
    probe = introspect.probe(model)
    batch, _ = introspect.model_batch(model, images)
    scores = np.asarray(probe.forward(batch)[-1], dtype=np.float32)
    indices = introspect.class_indices(class_index, len(batch), scores.shape[1])
    indices = np.where(indices < 0, scores.argmax(axis=1), indices)
    return scores[np.arange(len(scores)), indices]


#: Most patch positions occlusion tries per image (a 224x224 input at the default stride of 4 needs 3,025).
MAX_OCCLUSION_PATCHES = 4096


def occlusion_map(
    model,
    images,
    class_index: int | list[int] | None = None,
    patch_size: int | None = None,
    stride: int | None = None,
    fill: float | str = "mean",
    batch_size: int = 256,
) -> NDArray[np.float32]:
    """The tutorial's occlusion map: how much the class probability drops when
    a square patch covers each part of the image.

    Args:
        patch_size: int, side of the covering patch in model pixels. Defaults
            to 8, times `scale` = 1 + (longest side - 1) // 256 (so 16 for a
            512-pixel image read by a model that takes any size).
        stride: int, step between patches. Defaults to 4 times `scale`.
        fill: the patch's value: a number in 0..255 or `"mean"` (each image's
            mean colour). Defaults to `"mean"`.
        batch_size: int, occluded images per pass.

    Returns:
        float32 `(N, H, W)` at the model's input size: the mean probability
        drop over the patches covering each pixel (negative = covering helps).
    """
    probe, batch, indices = _prepare(model, images, class_index, ())
    height, width = batch.shape[1:3]
    scale = 1 + (max(height, width) - 1) // 256
    patch_size = 8 * scale if patch_size is None else int(patch_size)
    stride = 4 * scale if stride is None else int(stride)
    if not 1 <= patch_size <= min(height, width) or stride < 1:
        raise ConfigError(
            f"patch_size must be 1..{min(height, width)} and stride at least 1, got {patch_size} and {stride}."
        )
    if not (fill == "mean" or isinstance(fill, (int, float))):
        raise ConfigError(f"fill must be a number in 0..255 or 'mean', got {fill!r}.")

    def starts(size: int) -> list[int]:
        positions = list(range(0, size - patch_size + 1, stride))
        if positions[-1] != size - patch_size:
            positions.append(size - patch_size)
        return positions

    corners = [(top, left) for top in starts(height) for left in starts(width)]
    if len(corners) > MAX_OCCLUSION_PATCHES:
        # e.g. a model that takes any size, reading a photo at 512x384: 12,000 passes at the default stride.
        needed = int(np.ceil(max(height, width) / np.sqrt(MAX_OCCLUSION_PATCHES)))
        raise ConfigError(
            f"occlusion at {height}x{width} with a stride of {stride} needs {len(corners):,} passes per image, "
            f"over {MAX_OCCLUSION_PATCHES:,}; use a stride (and patch_size) of at least {needed}."
        )
    results = np.zeros((len(batch), height, width), dtype=np.float32)
    coverage = np.zeros((height, width), dtype=np.float32)
    for top, left in corners:
        coverage[top : top + patch_size, left : left + patch_size] += 1
    step = introspect.scaled_batch(batch_size, height, width)
    for position, (image, index) in enumerate(zip(batch, indices)):
        clean = _softmax(np.asarray(probe.forward(image[None])[-1], dtype=np.float32))[0]
        if index < 0:
            index = int(np.argmax(clean))
        value = image.mean(axis=(0, 1)) if fill == "mean" else np.float32(fill)
        drops = []
        for start in range(0, len(corners), step):
            chunk = corners[start : start + step]
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
# The registry and the one entry point
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Method:
    """One attribution method.

    Attributes:
        name: its key in `METHODS` (the CLI's `--method`).
        label: what people read.
        compute: `(model, images, class_index, layer, **options) -> (N, h, w)`
            maps, larger = more important, at any resolution (`explain`
            resizes and normalizes them).
        needs_layer: whether it reads a layer (`layer=`, defaulting to
            `default_cam_layer`); the others ignore `layer`.
        options: every option it takes, with its default, passed by `explain(**options)`;
            `explain` refuses any other.
        cam_weights: for class activation map methods, how a layer's
            activations and gradients `(N, h, w, C)` combine into maps.
    """

    name: str
    label: str
    compute: Callable[..., NDArray]
    needs_layer: bool = False
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    cam_weights: Callable[[NDArray, NDArray], NDArray] | None = None


def _cam_method(name: str, label: str, weights) -> Method:
    def compute(model, images, class_index, layer, **options):
        return class_activation_maps(model, images, name, class_index, layer, **options)

    return Method(name, label, compute, needs_layer=True, options={"batch_size": 64}, cam_weights=weights)


def _integrated_gradient_maps(model, images, class_index, layer, **options):
    return np.abs(integrated_gradients(model, images, class_index, **options)).sum(axis=-1)


#: The attribution methods `explain` accepts, by name.
METHODS: dict[str, Method] = {
    method.name: method
    for method in (
        _cam_method("gradcam", "Grad-CAM", gradcam_weights),
        _cam_method("gradcam++", "Grad-CAM++", gradcam_plus_plus_weights),
        _cam_method("layercam", "LayerCAM", layercam_weights),
        Method(
            "scorecam",
            "Score-CAM",
            lambda model, images, class_index, layer, **options: score_cam(
                model, images, class_index, layer, **options
            ),
            needs_layer=True,
            options={"max_channels": 32, "batch_size": 128},
        ),
        Method(
            "saliency",
            "Saliency",
            lambda model, images, class_index, layer: saliency(model, images, class_index),
        ),
        Method(
            "smoothgrad",
            "SmoothGrad",
            lambda model, images, class_index, layer, **options: smoothgrad(
                model, images, class_index, **options
            ),
            options={"samples": 20, "noise": 0.15, "seed": 0},
        ),
        Method(
            "integrated_gradients",
            "Integrated gradients",
            _integrated_gradient_maps,
            options={"steps": 64, "baseline": 0.0},
        ),
        Method(
            "occlusion",
            "Occlusion",
            lambda model, images, class_index, layer, **options: occlusion_map(
                model, images, class_index, **options
            ),
            options={"patch_size": None, "stride": None, "fill": "mean", "batch_size": 256},
        ),
    )
}


def _read_sized_maps(model, images, method, class_index, layer, options) -> NDArray[np.float32]:
    """The method's maps, normalized to [0, 1] at the size the model reads the images at."""
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}.")
    unknown = sorted(set(options) - set(METHODS[method].options))
    if unknown:
        takes = ", ".join(METHODS[method].options) or "no options"
        raise ConfigError(f"{method} does not take {', '.join(unknown)}; it takes {takes}.")
    maps = METHODS[method].compute(model, images, class_index, layer, **options)
    sizes = image_sizes(images)
    input_size = reading_size(introspect.input_shape_of(model), sizes[0]) if sizes else maps.shape[1:]
    return normalize_maps(resize_maps(maps, input_size))


def explain(
    model,
    images,
    method: str = "gradcam",
    class_index: int | list[int] | None = None,
    layer: str | None = None,
    **options: Any,
) -> NDArray[np.float32]:
    """Heatmaps of where the model looks, by any method in `METHODS`.

    Args:
        model: a Keras classifier taking 0..255 images (every cnnviz model does).
        images: as `cnnviz.load_image` returns them: one uint8 `(H, W, C)`
            image, a list of same-size images or an `(N, H, W, C)` batch.
            Images of different sizes go to `explain_each`.
        method: one of `METHODS`. Defaults to `"gradcam"`.
        class_index: the class to explain (one for all, or one per image);
            `None` explains each image's predicted class.
        layer: for the methods that read a layer (`METHODS[method].needs_layer`),
            the layer; defaults to `default_cam_layer(model)`. Ignored by the others.
        **options: method options (`METHODS[method].options`), e.g.
            `max_channels` (scorecam), `samples` (smoothgrad), `steps`
            (integrated_gradients), `patch_size` and `stride` (occlusion).

    Returns:
        float32 `(N, H, W)` heatmaps in [0, 1], 1 = most important, at the
        images' own size.

    Raises:
        ConfigError: unknown method, layer or class, bad options, or images of
            different sizes.

    Example:

    >>> heatmaps = cnnviz.explain(model, cnnviz.load_image("cat.png"))
    >>> heatmaps.shape, heatmaps.max()
    ((1, 64, 64), 1.0)
    """
    sizes = image_sizes(images)
    if len(set(sizes)) > 1:
        raise ConfigError(
            "the images have different sizes; use cnnviz.explain_each for one heatmap per image."
        )
    maps = _read_sized_maps(model, images, method, class_index, layer, options)
    if not sizes or sizes[0] == maps.shape[1:]:
        return maps
    return normalize_maps(resize_maps(maps, sizes[0]))


def explain_each(
    model,
    images,
    method: str = "gradcam",
    class_index: int | list[int] | None = None,
    layer: str | None = None,
    **options: Any,
) -> list[NDArray[np.float32]]:
    """Like `explain`, for images of any sizes: a list of `(H, W)` heatmaps, each at its image's size.

    A model that takes any size reads each group of same-sized images at its own size.
    """
    if isinstance(images, np.ndarray) and images.ndim in (2, 3):
        images = [images]
    images = list(images)
    sizes = image_sizes(images)
    heatmaps: list = [None] * len(images)
    if class_index is not None:  # one per image from here on, checked against the model's classes
        class_index = introspect.class_indices(class_index, len(images), int(model.output_shape[-1]))
    for members in by_reading_size(introspect.input_shape_of(model), images).values():
        chosen = None if class_index is None else class_index[members]
        maps = _read_sized_maps(model, [images[index] for index in members], method, chosen, layer, options)
        for index, single in zip(members, maps):
            heatmaps[index] = normalize_maps(resize_maps(single[None], sizes[index]))[0]
    return heatmaps
