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
import weakref

import numpy as np
from numpy.typing import NDArray

from cnnviz import introspect
from cnnviz.errors import ConfigError

__all__ = ["feature_layer", "features", "nearest"]

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
