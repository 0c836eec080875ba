"""Which heatmap to trust on *your* model: a scoreboard of explanation methods and layers.

`score_explanations(model, data)` explains correctly classified test images
with every method (and, for the methods that read a layer, each candidate
layer) and scores each map for faithfulness, localization, sanity and cost. A
`random` row is the chance level. The board recommends the method and layer to
use, with its reason.

The faithfulness protocol is RISE's deletion and insertion (Petsiuk et al.
2018), as xplique's `Deletion` / `Insertion` implement it; `causal_curves` is
the one place it is computed.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cnnviz import introspect
from cnnviz.errors import ConfigError

__all__ = [
    "BLUR_SIGMA",
    "DELETION_FILLS",
    "SANITY_LIMIT",
    "STEPS",
    "Scoreboard",
    "ScoreRow",
    "auc",
    "blurred",
    "causal_curves",
    "perturbation_path",
    "score_explanations",
]

#: Perturbation steps of the deletion and insertion curves (17 points: 0, 1/16, ..., all pixels).
STEPS = 16
#: The insertion start's Gaussian blur, as a share of the image's longer side (RISE's 5-px sigma at 224 px
#: blurs a 64-px shape too little to hide it; 5 % of the side does).
BLUR_SIGMA = 0.05
#: What deletion puts in place of the pixels it removes: "blur" (the default) or "black" (RISE's paper).
#: On the shapes model black cannot tell methods apart: a black patch on these random-coloured
#: backgrounds reads as a shape itself, so removing 1/16 of the pixels in any order, a method's or
#: at random, drops the class probability from 0.98 to about 0.23 (deletion AUC 0.254-0.273 for every
#: method and 0.254 for random). Blurring removes the shape without drawing a new one: Grad-CAM 0.40
#: against random's 0.75 (docs/BENCHMARKS.md, "Trust the heatmap").
DELETION_FILLS = ("blur", "black")
#: A method passes the sanity check when its maps correlate less than this with a random model's.
SANITY_LIMIT = 0.5
#: The name of the chance-level row.
RANDOM = "random"


def blurred(images: NDArray, sigma: float = BLUR_SIGMA) -> NDArray[np.float32]:
    """Each `(H, W, C)` image blurred with a Gaussian of `sigma` times its longer side (insertion's start)."""
    from scipy.ndimage import gaussian_filter

    images = np.asarray(images, np.float32)
    pixels = sigma * max(images.shape[1:3])
    return np.stack([gaussian_filter(image, sigma=(pixels, pixels, 0), mode="nearest") for image in images])


def _step_counts(pixels: int, steps: int) -> NDArray[np.int64]:
    """How many pixels are changed at each of the `steps + 1` points (xplique's rule: floor of an even spacing)."""
    return np.floor(np.linspace(0, pixels, steps + 1)).astype(np.int64)


def _ranks(heatmaps: NDArray) -> NDArray[np.int64]:
    """Each pixel's place in its map's order, most important first; ties keep reading order."""
    flat = np.asarray(heatmaps, np.float32).reshape(len(heatmaps), -1)
    order = np.argsort(-flat, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(flat.shape[1])[None, :], axis=1)
    return ranks


def perturbation_path(
    images: NDArray,
    heatmaps: NDArray,
    mode: str,
    steps: int = STEPS,
    sigma: float = BLUR_SIGMA,
    deletion_fill: str = "blur",
) -> NDArray[np.float32]:
    """The images the deletion or insertion curve scores: `(N, steps + 1, H, W, C)` float32.

    Deletion starts from the image and replaces its most important pixels by
    those of the blurred image (or black), `1 / steps` of the pixels more at
    each step; insertion starts from the blurred image and puts back the
    image's most important pixels.
    """
    if mode not in ("deletion", "insertion"):
        raise ConfigError(f"mode must be 'deletion' or 'insertion', got {mode!r}.")
    if deletion_fill not in DELETION_FILLS:
        raise ConfigError(f"deletion_fill must be one of {', '.join(DELETION_FILLS)}, got {deletion_fill!r}.")
    images = np.asarray(images, np.float32)
    count, height, width, channels = images.shape
    if heatmaps.shape != (count, height, width):
        raise ConfigError(f"heatmaps of shape {heatmaps.shape} do not match images of shape {images.shape}.")
    flat = images.reshape(count, 1, height * width, channels)
    if mode == "deletion":
        start = flat
        end = np.zeros_like(flat) if deletion_fill == "black" else blurred(images, sigma).reshape(flat.shape)
    else:
        start, end = blurred(images, sigma).reshape(flat.shape), flat
    changed = _ranks(heatmaps)[:, None, :] < _step_counts(height * width, steps)[None, :, None]
    path = np.where(changed[..., None], end, start)
    return path.reshape(count, steps + 1, height, width, channels)


def _probabilities(model, batch: NDArray, classes: NDArray, batch_size: int) -> NDArray[np.float32]:
    probe = introspect.probe(model)
    step = introspect.scaled_batch(batch_size, *batch.shape[1:3])
    scores = np.concatenate(
        [
            np.asarray(probe.forward(batch[start : start + step])[-1], np.float32)
            for start in range(0, len(batch), step)
        ]
    )
    scores -= scores.max(axis=1, keepdims=True)
    probabilities = np.exp(scores)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    return probabilities[np.arange(len(batch)), classes]


def causal_curves(
    model,
    images: NDArray,
    heatmaps: NDArray,
    class_index: int | Sequence[int],
    steps: int = STEPS,
    sigma: float = BLUR_SIGMA,
    deletion_fill: str = "blur",
    batch_size: int = 256,
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """The deletion and insertion curves of heatmaps, RISE's protocol.

    Pixels are ordered by the heatmap, most important first (ties in reading
    order); at point `k` of `steps + 1`, `floor(k / steps * pixels)` of them are
    changed, every colour channel at once. Deletion replaces them by those of
    a Gaussian-blurred copy (sigma = `sigma` times the longer side), or by
    black with `deletion_fill="black"`; insertion starts from the blurred
    copy and puts back the original pixels. Each point is the softmax
    probability of the explained class.

    Args:
        model: a Keras classifier taking 0..255 images.
        images: `(N, H, W, C)` at the model's input size.
        heatmaps: `(N, H, W)`, larger = more important.
        class_index: the class each curve follows, one for all or one per image.

    Returns:
        `(deletion, insertion)`, each float32 `(N, steps + 1)`.
    """
    images, _ = introspect.model_batch(model, images)
    heatmaps = np.asarray(heatmaps, np.float32)
    classes = introspect.class_indices(class_index, len(images), int(model.output_shape[-1]))
    if np.any(classes < 0):
        raise ConfigError("causal curves follow a given class; pass class_index.")
    curves = []
    # At most ~2,048 model-sized images of 64x64 per chunk of paths, fewer for larger images: bounded memory.
    chunk = max(1, introspect.scaled_batch(2048, *images.shape[1:3]) // (steps + 1))
    for mode in ("deletion", "insertion"):
        parts = []
        for start in range(0, len(images), chunk):
            path = perturbation_path(
                images[start : start + chunk],
                heatmaps[start : start + chunk],
                mode,
                steps,
                sigma,
                deletion_fill,
            )
            flat = path.reshape(-1, *path.shape[2:])
            repeated = np.repeat(classes[start : start + chunk], steps + 1)
            parts.append(_probabilities(model, flat, repeated, batch_size).reshape(len(path), steps + 1))
        curves.append(np.concatenate(parts) if parts else np.zeros((0, steps + 1), np.float32))
    return curves[0], curves[1]


def auc(curves: NDArray) -> NDArray[np.float32]:
    """Area under evenly spaced curves on [0, 1] by the trapezoid rule, one per row."""
    curves = np.asarray(curves, np.float64)
    return ((curves[..., :-1] + curves[..., 1:]) / 2).mean(axis=-1).astype(np.float32)


def _pointing(heatmaps: NDArray, boxes: NDArray) -> tuple[float, float]:
    """Pointing game (hottest pixel inside the box) and energy inside the box; boxes are inclusive."""
    count, height, width = heatmaps.shape
    rows, columns = np.unravel_index(heatmaps.reshape(count, -1).argmax(axis=1), (height, width))
    x0, y0, x1, y1 = (boxes[:, side] for side in range(4))
    hits = (columns >= x0) & (columns <= x1) & (rows >= y0) & (rows <= y1)
    grid_rows, grid_columns = np.arange(height)[None, :, None], np.arange(width)[None, None, :]
    inside = (
        (grid_rows >= y0[:, None, None])
        & (grid_rows <= y1[:, None, None])
        & (grid_columns >= x0[:, None, None])
        & (grid_columns <= x1[:, None, None])
    )
    totals = heatmaps.reshape(count, -1).sum(axis=1)
    energy = np.where(
        totals > 0, (heatmaps * inside).reshape(count, -1).sum(axis=1) / np.where(totals > 0, totals, 1), 0
    )
    return float(hits.mean()), float(energy.mean())


def _sanity(trained: NDArray, randomized: NDArray) -> float:
    """Mean Spearman correlation of each pair of maps; a flat map shares nothing (0)."""
    from scipy.stats import spearmanr

    values = [
        float(spearmanr(a.ravel(), b.ravel())[0]) if np.ptp(a) > 0 and np.ptp(b) > 0 else 0.0
        for a, b in zip(trained, randomized)
    ]
    return float(np.mean(values)) if values else 0.0


@dataclasses.dataclass(frozen=True)
class ScoreRow:
    """One method at one layer on the scoreboard.

    Attributes:
        method: a `cnnviz.METHODS` name, or `"random"` (chance level).
        layer: the layer it read, or `None` for methods that read none.
        deletion_auc: lower is better (the class fades fast as its pixels go).
        insertion_auc: higher is better (the class comes back fast as its pixels return).
        pointing: share of maps whose hottest pixel lies in the object's box; `None` without boxes.
        energy: mean share of each map's total inside the box; `None` without boxes.
        sanity_correlation: mean Spearman correlation with the maps of the same
            design with random weights; below `SANITY_LIMIT` passes.
        ms_per_image: measured milliseconds per image to compute the maps.
    """

    method: str
    layer: str | None
    deletion_auc: float
    insertion_auc: float
    pointing: float | None
    energy: float | None
    sanity_correlation: float
    ms_per_image: float

    @property
    def faithfulness(self) -> float:
        """Insertion AUC minus deletion AUC: the higher, the more the map's order matters to the model."""
        return self.insertion_auc - self.deletion_auc

    @property
    def passes_sanity(self) -> bool:
        return self.sanity_correlation < SANITY_LIMIT

    @property
    def label(self) -> str:
        from cnnviz.explanations import METHODS

        name = METHODS[self.method].label if self.method in METHODS else "random (chance)"
        return f"{name} at {self.layer}" if self.layer else name

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Scoreboard:
    """What `score_explanations` returns.

    Attributes:
        rows: one `ScoreRow` per method and layer, then the `random` row.
        recommended: `{"method", "layer", "reason"}`; method and layer are
            `None` when no method passed the sanity check.
        n: images scored.
        indices: their positions in the test split.
        classes: the class each was explained for (its true, and predicted, class).
        steps: points of the deletion and insertion curves, minus one.
    """

    rows: tuple[ScoreRow, ...]
    recommended: dict[str, Any]
    n: int
    indices: NDArray[np.int64]
    classes: NDArray[np.int64]
    steps: int = STEPS

    def to_dict(self) -> dict[str, Any]:
        """The board as JSON-ready data: `{"methods": [...], "recommended": {...}, "n": N}`."""
        return {
            "methods": [row.to_dict() for row in self.rows],
            "recommended": dict(self.recommended),
            "n": self.n,
        }

    def row(self, method: str, layer: str | None = None) -> ScoreRow:
        """The row of `method` (at `layer`, or its first layer)."""
        for row in self.rows:
            if row.method == method and (layer is None or row.layer == layer):
                return row
        raise KeyError(f"no row for {method!r} at {layer!r}")


def recommend(rows: Sequence[ScoreRow]) -> dict[str, Any]:
    """The rule: the highest insertion minus deletion among the methods that pass the sanity check
    (correlation below `SANITY_LIMIT`); scores equal to three decimals go to the faster method."""
    candidates = [row for row in rows if row.method != RANDOM and row.passes_sanity]
    if not candidates:
        return {
            "method": None,
            "layer": None,
            "reason": f"no method passed the sanity check (every map correlates {SANITY_LIMIT} or more with a "
            "random model's), so no heatmap here can be trusted",
        }
    best = min(candidates, key=lambda row: (-round(row.faithfulness, 3), row.ms_per_image))
    return {
        "method": best.method,
        "layer": best.layer,
        "reason": f"{best.label}: the highest insertion minus deletion ({best.faithfulness:.3f}) of the "
        f"{len(candidates)} that pass the sanity check, at {best.ms_per_image:.1f} ms per image",
    }


def _test_split(data):
    from cnnviz.data import Dataset, Split

    if isinstance(data, Dataset):
        return data.test
    if isinstance(data, Split):
        return data
    raise ConfigError(
        "data must be a cnnviz Dataset (its test split is scored) or a Split; for a source name or path, "
        "load it with cnnviz.runs.evaluation_data(model, source) first."
    )


def _choose_images(model, test, count: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """The first `count` test images the model classifies correctly, and their classes."""
    from cnnviz.evaluation import predict_probabilities

    if len(test) == 0:
        raise ConfigError("the data has no test images to score explanations on.")
    predicted = predict_probabilities(model, test.images).argmax(axis=1)
    correct = np.flatnonzero(predicted == test.labels)
    if len(correct) == 0:
        raise ConfigError(
            f"the model gets none of the {len(test)} test images right, so no explanation can be scored."
        )
    chosen = correct[: int(count)]
    return chosen.astype(np.int64), test.labels[chosen].astype(np.int64)


def _plan(model, methods, layers) -> list[tuple[str, str | None]]:
    from cnnviz.explanations import METHODS

    everything = methods is None
    methods = list(METHODS) if everything else list(methods)
    unknown = [name for name in methods if name not in METHODS]
    if unknown or not methods:
        raise ConfigError(
            f"unknown method {unknown[0] if unknown else ''!r}; choose from {', '.join(METHODS)}."
        )
    needs_layer = any(METHODS[name].needs_layer for name in methods)
    if layers is None:
        layers = introspect.cam_layers(model, 3) if needs_layer else []
    else:
        layers = list(layers)
        known = {info.name for info in introspect.list_layers(model)}
        for layer in layers:
            if layer not in known:
                raise ConfigError(
                    f"no layer {layer!r} in the model; candidates are {', '.join(introspect.cam_layers(model, 3))}."
                )
    if everything and not layers:  # a model with no conv map: every method that reads none
        methods = [name for name in methods if not METHODS[name].needs_layer]
    plan = []
    for name in methods:
        if METHODS[name].needs_layer:
            if not layers:
                raise ConfigError(f"{name} reads a convolution map and the model has none; leave it out.")
            plan.extend((name, layer) for layer in layers)
        else:
            plan.append((name, None))
    return plan


def score_explanations(
    model,
    data,
    methods: Sequence[str] | None = None,
    layers: Sequence[str] | None = None,
    images: int = 100,
    steps: int = STEPS,
    sigma: float = BLUR_SIGMA,
    deletion_fill: str = "blur",
    sanity_seed: int = 1,
    seed: int = 0,
    progress: Callable[[int, int, str], None] | None = None,
) -> Scoreboard:
    """Scores explanation methods (and layers) on the model's own test images, and recommends one.

    Every map explains the image's true class, on the first `images` test
    images the model classifies correctly. Each method and layer gets:

    - **deletion AUC** (lower is better) and **insertion AUC** (higher is
      better), RISE's protocol (`causal_curves`): `steps` = 16 steps of 1/16 of
      the pixels each, most important first, all colour channels at once;
      deletion replaces them by a Gaussian-blurred copy's (sigma 5 % of the
      longer side; `deletion_fill="black"` for RISE's black), insertion starts
      from the blurred copy and restores them; each point is the
      softmax probability of the class; the area is the trapezoid rule on
      [0, 1], so 1.0 means the probability stayed 1 throughout.
    - **pointing** and **energy**: the share of maps whose hottest pixel lies in
      the object's box, and the mean share of each map's total inside it
      (Score-CAM's energy-based pointing game); `None` when the data has no boxes.
    - **sanity correlation**: the mean Spearman correlation between each map
      and the map of the same design with random weights (Adebayo et al. 2018);
      below 0.5 passes.
    - **ms per image**: measured wall time of the maps, after one warm-up image.

    A `random` row (uniform noise maps) is the chance level. The recommended
    method and layer: the highest insertion minus deletion among the methods
    that pass the sanity check; ties to three decimals go to the faster method.

    Where it differs from xplique's `Deletion` / `Insertion`: xplique's
    deletion and insertion both use one baseline (black by default); RISE's
    insertion and ours start from a blurred copy, and our deletion blurs too
    by default (see `DELETION_FILLS` for why black fails on shapes); xplique scores the model's output as it is (probabilities
    only with `activation="softmax"`), ours always the softmax probability;
    xplique averages the curves of all images before the area, ours averages
    the per-image areas (the same number: the area is linear); ties in a map
    keep reading order here (a stable sort), where xplique's reversed argsort
    takes them in reverse.

    Args:
        model: a Keras classifier taking 0..255 images with class names
            (from `cnnviz.load_model` or `cnnviz.train`).
        data: a `cnnviz.Dataset` (its test split is used, with labels on the
            model's classes: `cnnviz.runs.evaluation_data(model, source)` gives
            one for a source name or path, as `cnnviz evaluate` uses) or a `Split`.
        methods: names from `cnnviz.METHODS`; defaults to all (all that read
            no layer, for a model without a convolution map).
        layers: layers for the methods that read one (the CAM methods and
            Score-CAM); defaults to the last three convolution maps with
            spatial extent (`cnnviz.introspect.cam_layers`).
        images: int, most images to score. Defaults to `100`.
        steps: int, curve steps. Defaults to `16`.
        sigma: float, the blur as a share of the longer side. Defaults to `0.05`.
        deletion_fill: `"blur"` or `"black"`. Defaults to `"blur"`.
        sanity_seed: int, seed of the random-weights copy. Defaults to `1`.
        seed: int, seed of the random row's maps. Defaults to `0`.
        progress: called as `progress(done, total, label)` after each row.

    Returns:
        A `Scoreboard`.

    Example:

    >>> data = cnnviz.runs.evaluation_data(model, "shapes")
    >>> board = cnnviz.score_explanations(model, data, methods=["gradcam", "saliency"], layers=["act4"])
    >>> [(row.method, round(row.deletion_auc, 2)) for row in board.rows]
    [('gradcam', 0.4), ('saliency', 0.59), ('random', 0.75)]
    """
    from cnnviz.explanations import explain
    from cnnviz.weights import fresh_copy

    if isinstance(images, bool) or not isinstance(images, (int, np.integer)) or images < 1:
        raise ConfigError(f"images must be a whole number of at least 1, got {images!r}.")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or not 1 <= steps <= 256:
        raise ConfigError(f"steps must be a whole number from 1 to 256, got {steps!r}.")
    if deletion_fill not in DELETION_FILLS:
        raise ConfigError(f"deletion_fill must be one of {', '.join(DELETION_FILLS)}, got {deletion_fill!r}.")
    plan = _plan(model, methods, layers)
    test = _test_split(data)
    indices, classes = _choose_images(model, test, images)
    batch, _ = introspect.model_batch(model, test.images[indices])
    boxes = None if test.boxes is None else np.asarray(test.boxes)[indices]
    if boxes is not None and batch.shape[1:3] != test.images.shape[1:3]:
        # Inclusive pixel boxes: the first pixel scales down, the pixel past the last one scales up.
        scale = np.array(batch.shape[2:0:-1] * 2, np.float64) / np.array(test.images.shape[2:0:-1] * 2)
        corners = boxes.astype(np.float64) + np.array([0, 0, 1, 1])
        boxes = np.concatenate(
            [np.floor(corners[:, :2] * scale[:2] + 1e-9), np.ceil(corners[:, 2:] * scale[2:] - 1e-9) - 1],
            axis=1,
        ).astype(np.int64)
    randomized = fresh_copy(model, seed=sanity_seed)
    total = len(plan) + 1
    rows = []

    def scored(
        method: str, layer: str | None, maps: NDArray, random_maps: NDArray, seconds: float
    ) -> ScoreRow:
        deletion, insertion = causal_curves(model, batch, maps, classes, steps, sigma, deletion_fill)
        pointing, energy = (None, None) if boxes is None else _pointing(maps, boxes)
        return ScoreRow(
            method,
            layer,
            float(auc(deletion).mean()),
            float(auc(insertion).mean()),
            pointing,
            energy,
            _sanity(maps, random_maps),
            1000.0 * seconds / len(batch),
        )

    for done, (method, layer) in enumerate(plan, start=1):
        explain(model, batch[:1], method=method, layer=layer, class_index=int(classes[0]))  # warm-up
        begin = time.perf_counter()
        maps = explain(model, batch, method=method, layer=layer, class_index=classes)
        seconds = time.perf_counter() - begin
        random_maps = explain(randomized, batch, method=method, layer=layer, class_index=classes)
        rows.append(scored(method, layer, maps, random_maps, seconds))
        if progress is not None:
            progress(done, total, rows[-1].label)
    rng = np.random.default_rng(seed)
    begin = time.perf_counter()
    noise = rng.random(batch.shape[:3], dtype=np.float32)
    seconds = time.perf_counter() - begin
    rows.append(scored(RANDOM, None, noise, rng.random(batch.shape[:3], dtype=np.float32), seconds))
    if progress is not None:
        progress(total, total, rows[-1].label)
    return Scoreboard(tuple(rows), recommend(rows), len(batch), indices, classes, steps)
