"""What the network makes of an image just before it decides: penultimate-layer features.

`features(model, images)` reads the vector the classifier's last dense layer
(`logits` in every cnnviz model) takes in: after global pooling, or the hidden
dense layer when the head has one. Images the model finds alike lie close
together there, so `nearest` finds the training images the model thinks an image
resembles. The contrast view (`cnnviz.contrast`), the training timeline and the
data audit use it.
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
import threading
import weakref
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from cnnviz import introspect
from cnnviz.errors import ConfigError

__all__ = ["PROJECTIONS", "align", "feature_layer", "features", "nearest", "project", "timeline_maps"]

#: The 2-D maps `project` draws: a linear one, and a non-linear one that keeps neighbours together.
PROJECTIONS = ("pca", "tsne")

_FEATURE_MODELS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _last_dense(functional):
    import keras

    for layer in reversed(functional.layers):
        if isinstance(layer, keras.layers.Dense):
            return layer
    raise ConfigError(
        f"model {functional.name!r} ends in no dense layer, so it has no penultimate features to compare."
    )


def feature_layer(model) -> str:
    """The name of the layer whose output the classifier's last dense layer reads."""
    functional = introspect.as_functional(model)
    history = getattr(_last_dense(functional).input, "_keras_history", None)
    return history.operation.name if history is not None else "input"


def _feature_model(model):
    import keras

    try:
        cached = _FEATURE_MODELS.get(model)
    except TypeError:  # cannot be weakly referenced: no cache
        cached = None
    if cached is not None:
        return cached
    functional = introspect.as_functional(model)
    built = keras.Model(
        functional.inputs[0], _last_dense(functional).input, name=f"{functional.name}_features"
    )
    with contextlib.suppress(TypeError):  # cannot be weakly referenced: no cache
        _FEATURE_MODELS[model] = built
    return built


def features(model, images, batch_size: int = 256) -> NDArray[np.float32]:
    """The penultimate-layer feature vector of each image.

    Args:
        model: a Keras classifier taking 0..255 images (every cnnviz model does).
        images: one uint8 `(H, W, C)` image, a list of same-size images or an
            `(N, H, W, C)` batch, as for `cnnviz.explain`.
        batch_size: int, images per pass. Defaults to `256`.

    Returns:
        float32 `(N, D)`: what the last dense layer (`logits`) reads.

    Example:

    >>> cnnviz.features(model, data.test.images[:10]).shape
    (10, 128)
    """
    batch, _ = introspect.model_batch(model, images)
    reader = _feature_model(model)
    step = introspect.scaled_batch(batch_size, *batch.shape[1:3])
    parts = [
        np.asarray(reader(batch[start : start + step], training=False), np.float32)
        for start in range(0, len(batch), step)
    ]
    if not parts:
        return np.zeros((0, int(np.prod(reader.output.shape[1:]))), np.float32)
    return np.concatenate(parts).reshape(len(batch), -1)


def nearest(query: NDArray, pool: NDArray, k: int = 3) -> NDArray[np.int64]:
    """For each query vector, the indices of the `k` pool vectors nearest to it (Euclidean), nearest first.

    Args:
        query: `(N, D)` or `(D,)` features (from `features`).
        pool: `(M, D)` features to search.
        k: int, how many; at most `M`.

    Returns:
        int64 `(N, min(k, M))`.
    """
    from sklearn.neighbors import NearestNeighbors

    query = np.atleast_2d(np.asarray(query, np.float32))
    pool = np.asarray(pool, np.float32)
    if len(pool) == 0:
        return np.zeros((len(query), 0), np.int64)
    if pool.shape[1:] != query.shape[1:]:
        raise ConfigError(f"features of length {query.shape[1]} cannot be compared with {pool.shape[1]}.")
    index = NearestNeighbors(n_neighbors=min(int(k), len(pool))).fit(pool)
    return index.kneighbors(query, return_distance=False).astype(np.int64)


def project(
    vectors,
    method: str = "pca",
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> NDArray[np.float32]:
    """A 2-D map of feature vectors (from `features`): PCA, or t-SNE.

    PCA (scikit-learn) is linear and instant: the two directions along which the
    images differ most. t-SNE (scikit-learn, Barnes-Hut) keeps each image's nearest
    neighbours near it, so classes the network has learnt to tell apart show as
    separate islands; it takes seconds for a few thousand images, and distances
    between islands mean little. (umap-learn would be the other choice; it needs
    numba, whose compiling alone takes longer than t-SNE here.)

    Args:
        vectors: `(N, D)` features.
        method: `"pca"` or `"tsne"`.
        seed: int, t-SNE's random state (PCA needs none).
        progress: called with `(iterations done, iterations)` as t-SNE goes (every
            50 iterations); PCA calls it once with `(1, 1)`.

    Returns:
        float32 `(N, 2)`, each axis centred on 0 with unit spread.
    """
    if method not in PROJECTIONS:
        raise ConfigError(f"method must be one of {', '.join(PROJECTIONS)}, got {method!r}.")
    vectors = np.asarray(vectors, np.float32)
    if vectors.ndim != 2:
        raise ConfigError(f"project takes (N, D) feature vectors, got shape {vectors.shape}.")
    if not np.all(np.isfinite(vectors)):
        raise ConfigError(
            "the features hold NaN or infinite values (a model that diverged?); nothing to map."
        )
    count = len(vectors)
    if count < 3:
        raise ConfigError(f"a map needs at least 3 images, got {count}.")
    if np.ptp(vectors, axis=0).max(initial=0.0) == 0:
        # (scikit-learn's t-SNE crashes the process on identical rows.)
        raise ConfigError(
            "every image has the same features (a network that has not learnt, or has collapsed); nothing to map."
        )
    if method == "pca" or vectors.shape[1] < 2:
        from sklearn.decomposition import PCA

        components = min(2, vectors.shape[1])
        points = PCA(n_components=components).fit_transform(vectors)
        if progress is not None:
            progress(1, 1)
    else:
        from sklearn.manifold import TSNE

        iterations = 1000
        tsne = TSNE(
            perplexity=float(min(30.0, (count - 1) / 3.0)),
            init="pca",
            random_state=seed,
            max_iter=iterations,
            verbose=2 if progress is not None else 0,
        )
        with _reported(progress, iterations):
            points = tsne.fit_transform(vectors)
        if progress is not None:
            progress(iterations, iterations)
    points = np.asarray(points, np.float64)
    if points.shape[1] == 1:
        points = np.concatenate([points, np.zeros_like(points)], axis=1)
    points -= points.mean(axis=0)
    spread = points.std(axis=0)
    return (points / np.where(spread > 0, spread, 1.0)).astype(np.float32)


class _StdoutRouter(io.TextIOBase):
    """Installed once as stdout: t-SNE's "Iteration N" lines from a thread that asked for progress become
    calls of its callback; all other output goes to the real stdout."""

    _ITERATION = re.compile(r"\[t-SNE\] Iteration (\d+)")

    def __init__(self, original):
        self.original = original
        self.listeners: dict[int, Callable[[str], None]] = {}

    def write(self, text: str) -> int:
        listener = self.listeners.get(threading.get_ident())
        if listener is None:
            return self.original.write(text)
        listener(text)
        return len(text)

    def flush(self) -> None:
        self.original.flush()

    def __getattr__(self, name):  # fileno, encoding, buffer...: the real stream's
        return getattr(self.original, name)


_ROUTER_LOCK = threading.Lock()


@contextlib.contextmanager
def _reported(progress, total: int):
    if progress is None:
        yield
        return
    with _ROUTER_LOCK:
        router = sys.stdout if isinstance(sys.stdout, _StdoutRouter) else _StdoutRouter(sys.stdout)
        sys.stdout = router

    def listen(text: str) -> None:
        match = _StdoutRouter._ITERATION.search(text)
        if match:
            progress(min(int(match.group(1)), total), total)

    thread = threading.get_ident()
    router.listeners[thread] = listen
    try:
        yield
    finally:
        router.listeners.pop(thread, None)


def align(points: NDArray, reference: NDArray) -> NDArray[np.float32]:
    """`points` rotated (or mirrored) to lie as close as possible to `reference`, the same images' other map.

    Two maps of the same images come out in arbitrary orientations (PCA's axes flip
    sign, t-SNE's rotate); orthogonal Procrustes undoes that, so a map per epoch
    animates instead of jumping.
    """
    from scipy.linalg import orthogonal_procrustes

    points = np.asarray(points, np.float64)
    reference = np.asarray(reference, np.float64)
    if points.shape != reference.shape:
        raise ConfigError(f"cannot align a map of shape {points.shape} with one of shape {reference.shape}.")
    rotation, _ = orthogonal_procrustes(points, reference)
    return (points @ rotation).astype(np.float32)


def timeline_maps(snapshots, method: str = "pca", seed: int = 0) -> list[NDArray[np.float32] | None]:
    """The 2-D map of each timeline snapshot's features, turned to match the last epoch's.

    Args:
        snapshots: `cnnviz.timeline.Snapshot`s (`TrainResult.timeline`, or `timeline_of(model)`).
        method, seed: as for `project`.

    Returns:
        One float32 `(M, 2)` map per snapshot, in order; `None` for a snapshot without features.
    """
    maps = [
        project(snapshot.features, method, seed) if len(snapshot.features) >= 3 else None
        for snapshot in snapshots
    ]
    reference = next((points for points in reversed(maps) if points is not None), None)
    return [
        None if points is None else align(points, reference) if points.shape == reference.shape else points
        for points in maps
    ]
