"""Turning maps into pictures: normalizing, bilinear resizing, colour maps, overlays and mosaics.

Needs no TensorFlow (numpy and Pillow; plotly's colour scales for the colour
maps), so a path that answers before TensorFlow has loaded can draw heatmaps
exactly as the rest of cnnviz does.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

from cnnviz.errors import ConfigError
from cnnviz.images import resize_image


def normalize_maps(maps: NDArray) -> NDArray[np.float32]:
    """Each `(h, w)` map of `(N, h, w)` divided by its maximum, negatives clipped: values in [0, 1]."""
    maps = np.maximum(np.asarray(maps), 0).astype(np.float32)
    peaks = maps.reshape(len(maps), -1).max(axis=1) if maps.size else np.zeros(len(maps), np.float32)
    scale = np.where(peaks > 0, peaks, 1.0).astype(np.float32)
    return maps / scale[:, None, None]


def _bilinear_taps(in_size: int, out_size: int) -> tuple[NDArray, NDArray, NDArray]:
    """For each output row (or column): the two input rows it mixes and the weight of the second.

    Half-pixel centres, no antialiasing: what `tf.image.resize(..., "bilinear")` does.
    """
    centres = (np.arange(out_size, dtype=np.float64) + 0.5) * (in_size / out_size) - 0.5
    low = np.floor(centres)
    weight = (centres - low).astype(np.float32)
    first = np.clip(low, 0, in_size - 1).astype(np.int64)
    second = np.clip(low + 1, 0, in_size - 1).astype(np.int64)
    return first, second, weight


def resize_maps(maps: NDArray, size: tuple[int, int]) -> NDArray[np.float32]:
    """Bilinear resize of `(N, h, w)` maps to `size` `(height, width)`.

    Matches `tf.image.resize(maps[..., None], size, "bilinear")` within 1e-5.
    """
    maps = np.asarray(maps, dtype=np.float32)
    height, width = (int(side) for side in size)
    if maps.shape[1:] == (height, width):
        return maps
    top, bottom, down = _bilinear_taps(maps.shape[1], height)
    left, right, across = _bilinear_taps(maps.shape[2], width)
    rows = maps[:, top, :] * (1 - down)[None, :, None] + maps[:, bottom, :] * down[None, :, None]
    return (rows[:, :, left] * (1 - across) + rows[:, :, right] * across).astype(np.float32)


@lru_cache(maxsize=32)
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
    lut = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    lut.flags.writeable = False  # shared by every caller through the cache
    return lut


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
    heat = resize_maps(np.clip(heat, 0, 1)[None], rgb.shape[:2])[0]
    colours = colormap_lut(colormap)[np.clip(np.rint(heat * 255), 0, 255).astype(np.uint8)]
    blended = (1 - opacity) * rgb + opacity * colours.astype(np.float32)
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def tile(images: NDArray, columns: int | None = None, padding: int = 1, fill: float = 0.0) -> NDArray:
    """Tiles `(N, h, w[, C])` arrays into one mosaic `(rows*h', columns*w'[, C])`."""
    images = np.asarray(images)
    count = len(images)
    if count == 0:
        raise ConfigError("there are no images to tile.")
    columns = int(columns or int(np.ceil(np.sqrt(count))))
    rows = int(np.ceil(count / columns))
    height, width = images.shape[1:3]
    shape = (rows * (height + padding) - padding, columns * (width + padding) - padding, *images.shape[3:])
    mosaic = np.full(shape, fill, dtype=images.dtype)
    for index, image in enumerate(images):
        row, column = divmod(index, columns)
        top, left = row * (height + padding), column * (width + padding)
        mosaic[top : top + height, left : left + width] = image
    return mosaic
