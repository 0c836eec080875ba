"""Cached wrappers around cnnviz: every computation a page shows goes through here.

Models are passed with a leading underscore (not hashed) next to a string key
that identifies them (see `ui.models.ModelChoice.key`); images and settings
are hashed by value. Arrays come back from `st.cache_data` (a copy per call,
so a page can never change a cached result).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st

import cnnviz
from cnnviz import runs
from cnnviz.introspect import LayerInfo
from cnnviz.training.config import TrainConfig
from ui import ASSETS


@st.cache_data(max_entries=256, show_spinner=False)
def explain(
    _model, model_key: str, image: np.ndarray, method: str, layer: str | None, class_index: int | None
):
    return cnnviz.explain(_model, image, method=method, layer=layer, class_index=class_index)[0]


@st.cache_data(max_entries=256, show_spinner=False)
def explain_batch(_model, model_key: str, images: np.ndarray, method: str):
    return cnnviz.explain(_model, images, method=method)


@st.cache_data(max_entries=64, show_spinner=False)
def overlay(image: np.ndarray, heatmap: np.ndarray, opacity: float) -> np.ndarray:
    return cnnviz.overlay(image, heatmap, opacity=opacity)


@st.cache_data(max_entries=64, show_spinner=False)
def predict(_model, model_key: str, image: np.ndarray, top_k: int):
    return cnnviz.predict(_model, image, top_k=top_k)[0]


@st.cache_data(max_entries=64, show_spinner=False)
def layers(_model, model_key: str) -> list[LayerInfo]:
    return cnnviz.list_layers(_model)


@st.cache_data(max_entries=64, show_spinner=False)
def default_cam_layer(_model, model_key: str) -> str | None:
    try:
        return cnnviz.default_cam_layer(_model)
    except cnnviz.ConfigError:
        return None


@st.cache_data(max_entries=64, show_spinner=False)
def feature_maps(_model, model_key: str, image: np.ndarray, layer: str) -> np.ndarray:
    return cnnviz.feature_maps(_model, image, layers=[layer])[layer]


@st.cache_data(max_entries=32, show_spinner="Climbing the gradient...")
def filter_images(_model, model_key: str, layer: str, filters: tuple[int, ...]) -> np.ndarray:
    return cnnviz.filter_images(_model, layer, filters=list(filters))


@st.cache_data(max_entries=16, show_spinner="Finding the patches that excite each filter most...")
def top_patches(_model, model_key: str, layer: str, filters: tuple[int, ...], _images) -> np.ndarray:
    return cnnviz.top_patches(_model, layer, _images, filters=list(filters)).patches


@st.cache_data(max_entries=16, show_spinner="Climbing the gradient...")
def class_images(_model, model_key: str) -> np.ndarray:
    return cnnviz.class_images(_model)


@st.cache_data(max_entries=32, show_spinner=False)
def kernel_images(_model, model_key: str, layer: str, mode: str) -> np.ndarray:
    return cnnviz.kernel_images(_model, layer, mode=mode)


@st.cache_data(max_entries=16, show_spinner=False)
def weight_histograms(_model, model_key: str) -> list[dict]:
    return cnnviz.weight_histograms(_model)


@st.cache_data(max_entries=8, show_spinner="Comparing with the starting weights...")
def weight_changes(_model, model_key: str, _initial_weights=None) -> list[dict]:
    """How far each weight tensor moved from where this model started: its recorded starting
    weights when known (a model trained in this session), else the same design freshly initialized."""
    from cnnviz.weights import fresh_copy

    before = fresh_copy(_model, seed=0)
    if _initial_weights is not None:
        before.set_weights(_initial_weights)
    return cnnviz.weight_changes(before, _model)


@st.cache_data(max_entries=32, show_spinner=False)
def augment_preview(images: np.ndarray, config: TrainConfig, seed: int) -> np.ndarray:
    return cnnviz.augment_preview(images, config, seed=seed)


@st.cache_resource(max_entries=4, show_spinner="Loading the data...")
def dataset(source: str, image_size: tuple[int, int] | None = None, seed: int = 0):
    # cache_resource, not cache_data: the arrays are read-only here and up to
    # ~100 MB, which cache_data would copy on every rerun.
    return cnnviz.load_dataset(source, image_size=image_size, seed=seed)


def _cached_load(source: str, image_size=None, seed: int = 0, **options):
    """`runs.evaluation_data`'s loader: the cached `dataset` for built-in sources."""
    if options:  # a folder or zip from the server's disk: never offered by the studio, read as asked
        return cnnviz.load_dataset(source, image_size=image_size, seed=seed, **options)
    return dataset(source, None if image_size is None else tuple(image_size), seed)


@st.cache_resource(max_entries=8, show_spinner="Finding the test images...")
def evaluation_data(_model, model_key: str, source: str | None, _data=None):
    """The test images the model never saw, labels on its classes (see `cnnviz.runs.evaluation_data`);
    `_data` is the session's own data for a model trained here. None when unknown."""
    if _data is not None:
        return runs.evaluation_data(_model, _data)
    if source is None:
        return None
    return runs.evaluation_data(_model, source, load=_cached_load)


@st.cache_resource(max_entries=8, show_spinner="Scoring the test images...")
def evaluation(_model, model_key: str, _data):
    # One evaluation per model: a model key always comes with the same data.
    return cnnviz.evaluate(_model, _data, split="test")


@st.cache_data(
    max_entries=4,
    show_spinner="Reading a sample of the folder...",
    hash_funcs={
        cnnviz.ImageStream: lambda stream: (
            stream.name,
            stream.image_shape,
            tuple(stream.train.files[:50]),
            len(stream.train),
        )
    },
)
def stream_sample(stream, limit: int):
    """Decoded sample splits of a streamed folder (see `ImageStream.sample`)."""
    return stream.sample(limit)


@st.cache_data(max_entries=32, show_spinner=False)
def describe_design(config):
    """Layer table, parameter count and FLOPs of a design (builds it once per config)."""
    if isinstance(config, cnnviz.TransferConfig):
        config = config.replace(backbone_weights=None)  # the same layers; no download just to describe them
    model = cnnviz.build_model(config)
    return cnnviz.describe_model(model), int(model.count_params()), int(cnnviz.count_flops(model))


def sample_images(prefix: str | None) -> dict[str, Path]:
    """Sample images in assets/samples whose names start with `prefix`."""
    if not prefix:
        return {}
    return {
        path.stem.removeprefix(prefix): path for path in sorted((ASSETS / "samples").glob(f"{prefix}*.png"))
    }


def model_card(model, model_key: str, data, link: str | None) -> bytes:
    """The model card's HTML bytes (`cnnviz.runs.model_card`), made when its download button is pressed."""
    return runs.model_card(model, data, settings_link=link).encode("utf-8")


#: The points of a deletion or insertion path the Trust page shows as images.
PATH_POINTS = (0, 2, 4, 8, 16)


@st.cache_data(max_entries=64, show_spinner=False)
def causal_example(
    _model, model_key: str, image: np.ndarray, method: str, layer: str | None, class_index: int
):
    """One image's heatmap, its deletion and insertion curves, and the images at `PATH_POINTS` of each path."""
    from cnnviz import introspect, scoring

    # At the size the model reads it (a model that takes any size may resize it), as the board scored it.
    batch, _ = introspect.model_batch(_model, image)
    heatmap = cnnviz.explain(_model, batch, method=method, layer=layer, class_index=class_index)
    deletion, insertion = scoring.causal_curves(_model, batch, heatmap, class_index)
    paths = {
        mode: np.clip(scoring.perturbation_path(batch, heatmap, mode)[0, list(PATH_POINTS)], 0, 255).astype(
            np.uint8
        )
        for mode in ("deletion", "insertion")
    }
    return batch[0].astype(np.uint8), heatmap[0], deletion[0], insertion[0], paths


@st.cache_resource(max_entries=8, show_spinner="Reading the training images' features...")
def example_features(_model, model_key: str, _examples, count: int) -> np.ndarray:
    """Penultimate features of the training images `why_not` searches (once per model)."""
    return cnnviz.features(_model, _examples.images)


@st.cache_data(max_entries=64, show_spinner="Contrasting the two classes...")
def why_not(_model, model_key: str, image: np.ndarray, target: int, foil: int, _examples, count: int):
    """`cnnviz.why_not` with the training look-alikes (when `_examples` is known; `count` keys them)."""
    features = None if _examples is None else example_features(_model, model_key, _examples, count)
    return cnnviz.why_not(_model, image, target, foil, examples=_examples, example_features=features)
