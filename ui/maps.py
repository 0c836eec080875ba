"""The Map page's logic: which images, their penultimate features, and their 2-D maps (kept per session).

t-SNE takes seconds, so a map is computed once per (model, images, method) and kept in
the session; its progress goes to a bar the page passes in.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import streamlit as st

import cnnviz
from cnnviz import embedding
from ui import compute
from ui.session import studio

#: Most test images on the map: 2,000 take about 2 s of features and 20-30 s of t-SNE on 2 cores.
MAP_LIMIT = 2000

METHODS = {"pca": "PCA (instant)", "tsne": "t-SNE (seconds; keeps neighbours together)"}


def method_name(method: str) -> str:
    """ "PCA" or "t-SNE"."""
    return METHODS[method].split(" (")[0]


def snapshots_with_features(model) -> list:
    """The model's timeline snapshots that can be mapped (3 images or more), oldest first; [] without a timeline."""
    from cnnviz.timeline import timeline_of

    return [snapshot for snapshot in timeline_of(model) or () if len(snapshot.features) >= 3]


def picked_index(event, count: int) -> int | None:
    """The image index of the dot the visitor clicked (its `customdata`), or None (also for a stale click)."""
    chosen = event.selection.points if event and event.selection else []
    index = int(chosen[0]["customdata"]) if chosen and "customdata" in chosen[0] else None
    return index if index is not None and 0 <= index < count else None


def neighbours(features: np.ndarray, index: int, count: int = 5) -> list[int]:
    """The `count` images nearest to image `index` in the network's feature space, itself left out."""
    nearest = embedding.nearest(features[index], features, k=count + 1)[0]
    return [int(i) for i in nearest if i != index][:count]


@dataclasses.dataclass(frozen=True)
class TestMap:
    """The test images on the map, and what the model makes of them."""

    images: np.ndarray
    labels: np.ndarray
    predictions: np.ndarray
    features: np.ndarray


@st.cache_resource(max_entries=8, show_spinner="Reading the test images' features...")
def _test_features(_model, model_key: str, _images, count: int) -> np.ndarray:
    return cnnviz.features(_model, _images)


def test_map(choice, data) -> TestMap:
    """The first `MAP_LIMIT` test images, their true and predicted classes and their features."""
    count = min(len(data.test), MAP_LIMIT)
    images, labels = data.test.images[:count], data.test.labels[:count]
    predictions = compute.evaluation(choice.model, choice.key, data).predictions[:count]
    return TestMap(images, labels, predictions, _test_features(choice.model, choice.key, images, count))


def points(
    key: tuple, features: np.ndarray, method: str, bar, reference: np.ndarray | None = None
) -> np.ndarray:
    """The 2-D map of `features`, kept in the session under `key`; t-SNE reports to the progress `bar`.

    With a `reference` map of the same images (another epoch's), the map is turned to match it.
    """
    maps = studio().maps
    if key not in maps:
        label = method_name(method)

        def report(done: int, total: int) -> None:
            bar.progress(done / total, text=f"{label}: {done} of {total} iterations")

        found = embedding.project(features, method, progress=report if method == "tsne" else None)
        if reference is not None and reference.shape == found.shape:
            found = embedding.align(found, reference)
        if len(maps) >= 16:  # a long session keeps its latest maps only
            maps.pop(next(iter(maps)))
        maps[key] = found
    bar.empty()
    return maps[key]


def timeline_images(choice, snapshot):
    """The images behind a snapshot's features (its first `len(features)`), or None when they cannot be found."""
    from cnnviz.training.timeline import feature_images
    from ui.data import trained_on

    data = trained_on(choice)
    if data is None:
        return None
    trained = studio().trained
    config = trained.config if choice.kind == "session" and trained is not None else None
    try:
        images, labels = feature_images(data, config)
    except cnnviz.CnnvizError:
        return None
    count = len(snapshot.feature_labels)
    if len(labels) < count or not np.array_equal(labels[:count], snapshot.feature_labels):
        return None  # not the data this timeline was recorded on
    return images[:count]
