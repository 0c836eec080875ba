"""Why A and not B: three maps side by side and the training images the model thinks are alike.

`why_not(model, image, "square", "star")` explains an image for class A (the
one to explain: the true class of a mistake, or the predicted one), for class B
(the rival), and contrastively: the gradient of logit A minus logit B, where a
change would make A win (`cnnviz.explanations.contrastive_map`). With training
images, it adds the nearest ones of A and of B in the penultimate layer
(`cnnviz.embedding`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from numpy.typing import NDArray

from cnnviz.errors import ConfigError

__all__ = ["Contrast", "class_number", "why_not"]


@dataclasses.dataclass(frozen=True)
class Contrast:
    """What `why_not` returns.

    Attributes:
        target, foil: class indices of A (explained) and B (its rival).
        class_names: the model's classes.
        probabilities: float32 `(classes,)` for the image.
        target_map, foil_map: `(H, W)` maps in [0, 1] of `method` for A and for B.
        contrast_map: `(H, W)` in [0, 1]: where raising the pixels raises logit A - logit B.
        target_examples, foil_examples: uint8 `(k, H, W, C)` training images of
            A and of B nearest to the image in the penultimate layer (none without examples).
        target_example_indices, foil_example_indices: their positions in the examples.
        method, layer: what drew the A and B maps.
    """

    target: int
    foil: int
    class_names: tuple[str, ...]
    probabilities: NDArray[np.float32]
    target_map: NDArray[np.float32]
    foil_map: NDArray[np.float32]
    contrast_map: NDArray[np.float32]
    target_examples: NDArray[np.uint8]
    foil_examples: NDArray[np.uint8]
    target_example_indices: NDArray[np.int64]
    foil_example_indices: NDArray[np.int64]
    method: str = "gradcam"
    layer: str | None = None

    @property
    def sentence(self) -> str:
        names, p = self.class_names, self.probabilities
        return (
            f"{names[self.target]} ({p[self.target]:.0%}) and not {names[self.foil]} ({p[self.foil]:.0%}): "
            f"the contrast map marks where brighter pixels would tip the model towards {names[self.target]}."
        )


def class_number(class_names: tuple[str, ...], value: int | str) -> int:
    """A class given by index or by name, checked against the model's classes."""
    if isinstance(value, str):
        if value not in class_names:
            raise ConfigError(f"class {value!r}: the model's classes are {', '.join(class_names)}.")
        return class_names.index(value)
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, np.integer))
        or not 0 <= value < len(class_names)
    ):
        raise ConfigError(
            f"class must be a name or a number from 0 to {len(class_names) - 1}, got {value!r}."
        )
    return int(value)


def why_not(
    model,
    image: NDArray,
    target: int | str,
    foil: int | str,
    examples=None,
    method: str = "gradcam",
    layer: str | None = None,
    k: int = 3,
    example_features: NDArray | None = None,
) -> Contrast:
    """Why the model says (or should say) `target` and not `foil` for one image.

    Args:
        model: a Keras classifier with class names (from `cnnviz.load_model` or `cnnviz.train`).
        image: one `(H, W, C)` image.
        target: class A, by index or name: the one to explain.
        foil: class B, by index or name: its rival.
        examples: training images to find look-alikes in: a `cnnviz.Split`
            (e.g. `data.train`) or an `(images, labels)` pair; `None` for none.
        method, layer: the method (and layer) of the A and B maps. Defaults to
            Grad-CAM. For a model with no convolution map, a method that reads
            a layer (with no layer given) becomes saliency (`Contrast.method` says which).
        k: int, look-alikes per class. Defaults to `3`.
        example_features: `cnnviz.features(model, examples' images)`, when
            already computed (the studio caches them).

    Returns:
        A `Contrast`.

    Example:

    >>> why = cnnviz.why_not(model, image, "square", "star", examples=data.train)
    >>> why.contrast_map.shape
    (64, 64)
    """
    from cnnviz.embedding import features, nearest
    from cnnviz.evaluation import predict_probabilities
    from cnnviz.explanations import contrastive_map, explain
    from cnnviz.saving import class_names_of

    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3:
        raise ConfigError(f"why_not explains one (height, width, channels) image, got shape {image.shape}.")
    from cnnviz.explanations import METHODS
    from cnnviz.introspect import cam_layers

    names = tuple(class_names_of(model))
    a, b = class_number(names, target), class_number(names, foil)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ConfigError(f"k must be a whole number of at least 1, got {k!r}.")
    if method in METHODS and METHODS[method].needs_layer and layer is None and not cam_layers(model, 1):
        method = "saliency"  # no convolution map to put a class activation map on
    if a == b:
        raise ConfigError(f"pick two different classes to contrast, got {names[a]!r} twice.")
    maps = explain(model, np.stack([image, image]), method=method, class_index=[a, b], layer=layer)
    contrast = contrastive_map(model, image[None], a, b)[0]
    empty = np.zeros((0, *image.shape), np.uint8)
    picked: dict[int, tuple[NDArray, NDArray]] = {
        a: (empty, np.zeros(0, np.int64)),
        b: (empty, np.zeros(0, np.int64)),
    }
    if examples is not None:
        pool, labels = (examples.images, examples.labels) if hasattr(examples, "labels") else examples
        pool, labels = np.asarray(pool), np.asarray(labels)
        if len(pool) != len(labels):
            raise ConfigError(f"{len(pool)} example images but {len(labels)} labels.")
        pool_features = features(model, pool) if example_features is None else np.asarray(example_features)
        if len(pool_features) != len(pool):
            raise ConfigError(f"{len(pool_features)} example features for {len(pool)} example images.")
        query = features(model, image[None])
        for chosen in (a, b):
            members = np.flatnonzero(labels == chosen)
            order = members[nearest(query, pool_features[members], k)[0]]
            picked[chosen] = (pool[order].astype(np.uint8), order.astype(np.int64))
    return Contrast(
        a,
        b,
        names,
        predict_probabilities(model, image[None])[0].astype(np.float32),
        maps[0],
        maps[1],
        contrast,
        picked[a][0],
        picked[b][0],
        picked[a][1],
        picked[b][1],
        method,
        layer,
    )
