"""Weight based views: kernels as images, weight histograms, and what training moved."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from cnnviz.errors import ConfigError
from cnnviz.introspect import as_functional, list_layers


def _find_layer(model, name: str):
    functional = as_functional(model)
    for part in name.split("/"):
        try:
            functional = functional.get_layer(part)
        except ValueError as error:
            raise ConfigError(f"the model has no layer named {name!r}.") from error
        if hasattr(functional, "layers") and not hasattr(functional, "kernel"):
            functional = as_functional(functional)
    return functional


def conv_layer_names(model) -> list[str]:
    """Names of the convolution layers, in order (nested ones as `outer/inner`)."""
    return [info.name for info in list_layers(model) if info.is_conv]


def kernel_images(model, layer: str | None = None, mode: str = "auto") -> NDArray[np.float32]:
    """The kernels of a convolution layer, scaled to [0, 1] for display.

    Args:
        model: a Keras model.
        layer: a conv layer name; defaults to the first one.
        mode: `"rgb"`: each kernel as a colour image (needs 3 input channels,
            the first layer of a colour model); `"mean"`: averaged over the
            input channels; `"channels"`: one map per input channel; `"auto"`:
            `"rgb"` when possible, else `"mean"`.

    Returns:
        float32 in [0, 1]: `(F, kh, kw, 3)` for rgb, `(F, kh, kw)` for mean,
        `(F, C_in, kh, kw)` for channels. Each kernel is scaled on its own,
        0.5 = zero weight.
    """
    names = conv_layer_names(model)
    if not names:
        raise ConfigError("the model has no convolution layers.")
    layer = layer or names[0]
    target = _find_layer(model, layer)
    kernel = getattr(target, "kernel", None)
    if kernel is None or len(kernel.shape) != 4:
        raise ConfigError(f"layer {layer!r} is not a 2-D convolution; choose one of {', '.join(names)}.")
    weights = np.asarray(kernel.numpy(), dtype=np.float32)  # (kh, kw, C_in, F)
    if mode == "auto":
        mode = "rgb" if weights.shape[2] == 3 else "mean"
    if mode == "rgb":
        if weights.shape[2] != 3:
            raise ConfigError(f"layer {layer!r} has {weights.shape[2]} input channels; rgb needs 3.")
        kernels = np.transpose(weights, (3, 0, 1, 2))
    elif mode == "mean":
        kernels = np.transpose(weights.mean(axis=2), (2, 0, 1))
    elif mode == "channels":
        kernels = np.transpose(weights, (3, 2, 0, 1))
    else:
        raise ConfigError(f"mode must be auto, rgb, mean or channels, got {mode!r}.")
    axes = tuple(range(1, kernels.ndim))
    scale = np.abs(kernels).max(axis=axes, keepdims=True)
    return (0.5 + 0.5 * kernels / np.where(scale > 0, scale, 1)).astype(np.float32)


def weight_histograms(model, bins: int = 40) -> list[dict]:
    """A histogram of every weight tensor, in model order.

    Returns:
        A list of dicts `{"name", "layer", "kind", "shape", "counts", "edges",
        "mean", "std"}`; `kind` is `kernel`, `bias`, `gamma`, `beta`,
        `moving_mean`, ... (the variable's own name).
    """
    found = []
    for variable in as_functional(model).weights:
        values = np.asarray(variable.numpy(), dtype=np.float64).ravel()
        counts, edges = np.histogram(values, bins=int(bins))
        path = variable.path
        found.append(
            {
                "name": path,
                "layer": path.rsplit("/", 1)[0] if "/" in path else path,
                "kind": path.rsplit("/", 1)[-1],
                "shape": tuple(variable.shape),
                "counts": counts.astype(np.int64),
                "edges": edges.astype(np.float32),
                "mean": float(values.mean()) if values.size else 0.0,
                "std": float(values.std()) if values.size else 0.0,
            }
        )
    return found


def weight_changes(before, after) -> list[dict]:
    """How much each weight tensor moved between two models of the same design.

    Args:
        before, after: Keras models (e.g. saved before and after training).

    Returns:
        A list of dicts `{"name", "shape", "relative_change", "mean_abs_change",
        "before", "after"}` where `relative_change` = ||after - before|| /
        ||before|| and `before` / `after` are the raw flattened float32 values.

    Raises:
        ConfigError: the models do not have the same weights.
    """
    first, second = as_functional(before).weights, as_functional(after).weights
    shapes_first = [tuple(v.shape) for v in first]
    shapes_second = [tuple(v.shape) for v in second]
    if shapes_first != shapes_second:
        raise ConfigError(
            "the two models have different weights (not the same design); compare a model "
            "with its own earlier or later version."
        )
    changes = []
    for old, new in zip(first, second):
        old_values = np.asarray(old.numpy(), dtype=np.float32).ravel()
        new_values = np.asarray(new.numpy(), dtype=np.float32).ravel()
        difference = new_values - old_values
        norm = float(np.linalg.norm(old_values))
        if norm > 0:
            relative = float(np.linalg.norm(difference)) / norm
        else:  # a tensor that started at zero (e.g. a bias): any move is "infinite"
            relative = float("inf") if np.any(difference) else 0.0
        changes.append(
            {
                "name": new.path,
                "shape": tuple(new.shape),
                "relative_change": relative,
                "mean_abs_change": float(np.abs(difference).mean()) if difference.size else 0.0,
                "before": old_values,
                "after": new_values,
            }
        )
    return changes


def fresh_copy(model, seed: int = 0):
    """The same design with freshly initialized weights: a new model, `model` untouched.

    Every initializer of the model's own layers is given a seed derived from
    `seed`, so the copy is the same for the same seed without reseeding the
    process. (Layers of a nested model keep their initializers as saved.)

    Returns:
        A new `keras.Model` of the same architecture.
    """
    import copy

    import keras

    from cnnviz.models import layer_seeds

    seeds = layer_seeds(seed)

    def reseeded(layer):
        config = layer.get_config()
        for key, value in list(config.items()):
            if key.endswith("_initializer") and isinstance(value, dict) and "seed" in value.get("config", {}):
                value = copy.deepcopy(value)
                value["config"]["seed"] = next(seeds)
                config[key] = value
        return layer.__class__.from_config(config)

    return keras.models.clone_model(model, clone_function=reseeded)
