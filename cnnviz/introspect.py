"""Looking at a model's structure: its layers, and probes that read inner outputs and gradients.

Every explanation, feature map and weight view reads a model through here. No
function changes the model it is given: inner outputs are read through a new
Functional model that shares the original layers (and so always sees their
current weights), built once per model and layer and cached.

Models may be Functional or Sequential, and may contain a nested model (a
`keras.applications` backbone used as a layer); a layer inside a nested model
is named `"backbone_name/layer_name"` or just by its own name.

Scores are taken before the softmax when the model has a layer named `logits`
(every cnnviz model does) or ends in a softmax, so no `ReplaceToLinear` step
is needed.

The caches here (`list_layers`, `probe`) are weak-keyed by model and not
locked: two threads asking at once may each build a probe, and one is kept.
"""

from __future__ import annotations

import contextlib
import dataclasses
import weakref
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cnnviz.errors import ConfigError
from cnnviz.images import by_reading_size, image_sizes, prepare_batch

CONV_CLASSES = ("Conv1D", "Conv2D", "Conv3D", "DepthwiseConv2D", "SeparableConv2D", "Conv2DTranspose")
# Layers that keep the conv's map as it is: the default CAM layer moves past them.
SAME_MAP_CLASSES = ("BatchNormalization", "Activation", "ReLU", "LeakyReLU", "ELU", "PReLU")


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
    model = as_functional(model)
    found = []

    def walk(container, prefix: str) -> None:
        for layer in container.layers:
            if type(layer).__name__ == "InputLayer":
                continue
            name = f"{prefix}{layer.name}"
            if _is_model(layer):
                walk(as_functional(layer), f"{name}/")
                continue
            shape = _output_shape(layer)
            # An open side (a model that takes any size) is a map whose size follows the image.
            has_map = len(shape) == 3 and (None in shape[:2] or shape[0] * shape[1] > 1)
            found.append(
                LayerInfo(
                    name=name,
                    class_name=type(layer).__name__,
                    output_shape=shape,
                    is_conv=type(layer).__name__ in CONV_CLASSES,
                    has_map=has_map,
                    parameters=int(layer.count_params()) if layer.built else 0,
                )
            )

    walk(model, "")
    return found


def cam_layers(model, count: int = 3) -> list[str]:
    """The layers a class activation map can read, latest last: the last `count` convolutions
    whose output still has spatial extent (never a 1x1 "logits" conv), each moved past the
    batch-norm and activation layers right after it, so the map is the rectified one the paper uses.
    """
    layers = list_layers(model)
    conv_positions = [index for index, info in enumerate(layers) if info.is_conv and info.has_map]
    names = []
    for position in conv_positions[-int(count) :] if count > 0 else []:
        conv_shape = layers[position].output_shape
        while (
            position + 1 < len(layers)
            and layers[position + 1].class_name in SAME_MAP_CLASSES
            and layers[position + 1].output_shape == conv_shape
        ):
            position += 1
        names.append(layers[position].name)
    return names


def default_cam_layer(model) -> str:
    """The layer Grad-CAM reads by default: the last of `cam_layers`.

    Raises:
        ConfigError: the model has no convolution with a spatial output.
    """
    names = cam_layers(model, 1)
    if not names:
        raise ConfigError(
            "the model has no convolution layer with a spatial output, so there is nothing to "
            "put a class activation map on; choose a gradient method such as 'saliency'."
        )
    return names[-1]


def resolve_layer(model, name: str) -> tuple[str, ...]:
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


def as_functional(model):
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


def build_tap_model(model, paths: list[tuple[str, ...]], with_logits: bool):
    """A Functional model returning `[*taps, scores]` (or `[*taps, output]`)."""
    import keras

    functional = as_functional(model)
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
            inner = build_tap_model(layer, inner_paths, with_logits=False)
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
            records["scores"] = pre_softmax(layer, args, output)
        return output

    clone = keras.models.clone_model(functional, clone_function=lambda layer: layer, call_function=call)
    outputs = [records[tuple(path)] for path in paths]
    outputs.append(records["scores"] if with_logits else clone.outputs[0])
    return keras.Model(clone.inputs[0], outputs, name=f"{functional.name}probe")


def pre_softmax(layer, args, output):
    """The class scores before a final softmax, or the output itself."""
    import keras

    class_name = type(layer).__name__
    if class_name == "Softmax" or (class_name == "Activation" and _is_softmax(layer.activation)):
        return args[0]
    if class_name == "Dense" and _is_softmax(layer.activation):
        scores = keras.ops.matmul(args[0], layer.kernel)
        return scores + layer.bias if layer.use_bias else scores
    return output


class Probe:
    """Compiled gradient functions over one tap model."""

    def __init__(self, model, paths: list[tuple[str, ...]]):
        import tensorflow as tf

        self.tap_model = build_tap_model(model, paths, with_logits=True)
        # None for a side the model leaves open: the compiled functions then take any size.
        self.input_shape = tuple(
            None if side is None else int(side) for side in self.tap_model.input.shape[1:]
        )
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


def probe(model, layer_names: tuple[str, ...] = ()) -> Probe:
    paths = tuple(resolve_layer(model, name) for name in layer_names)
    try:
        per_model = _PROBES.setdefault(model, {})
    except TypeError:  # a model that cannot be weakly referenced: no cache
        return Probe(model, list(paths))
    if paths not in per_model:
        per_model[paths] = Probe(model, list(paths))
    return per_model[paths]


def input_shape_of(model) -> tuple:
    """The model's input shape without the batch axis (no Functional view is built: hot path)."""
    shape = model.input_shape
    if isinstance(shape, list):  # several inputs: only the first is an image
        shape = shape[0]
    return tuple(None if side is None else int(side) for side in shape[1:])


def model_batch(model, images) -> tuple[NDArray[np.float32], list[tuple[int, int]] | None]:
    """The float batch the model reads and the images' own sizes (None when equal to the batch's).

    A model that takes any size reads the images at `reading_size`; they must
    all map to the same size (group them with `by_reading_size` otherwise).
    """
    input_shape = input_shape_of(model)
    if len(input_shape) != 3:
        raise ConfigError(f"the model's input shape {input_shape} is not (height, width, channels).")
    if isinstance(images, np.ndarray) and images.ndim in (2, 3):
        images = [images]
    groups = by_reading_size(input_shape, images)
    if len(groups) > 1:
        raise ConfigError(
            "this model takes any size and the images have different sizes; pass them one at a time "
            "(cnnviz.explain_each does)."
        )
    size = next(iter(groups), input_shape[:2])
    shape = (*size, input_shape[2])
    if isinstance(images, np.ndarray) and images.ndim == 4 and images.shape[1:] == shape:
        return images.astype(np.float32, copy=False), None
    sizes = image_sizes(images)
    batch = prepare_batch(list(images), shape).astype(np.float32)
    if all(own == size for own in sizes):
        return batch, None
    return batch, sizes


#: The image area the default batch sizes are set for (64x64 pixels).
BATCH_AREA = 64 * 64


def scaled_batch(batch_size: int, height: int, width: int) -> int:
    """`batch_size` for 64x64 images, made proportionally smaller for larger ones (at least 1).

    A model that takes any size may read images at 512x384: 48 times the
    memory per image that the default batch sizes were set for.
    """
    return max(1, int(batch_size) * BATCH_AREA // max(BATCH_AREA, int(height) * int(width)))


def class_indices(class_index, count: int, num_classes: int) -> NDArray[np.int32]:
    if class_index is None:
        return np.full(count, -1, dtype=np.int32)
    given = np.asarray(class_index, dtype=np.int64)
    if given.ndim > 1 or (given.ndim == 1 and len(given) not in (1, count)):
        raise ConfigError(f"give one class_index, or one per image ({count}), got {given.size}.")
    indices = np.broadcast_to(given.reshape(-1) if given.ndim else given, (count,)).astype(np.int32)
    bad = indices[(indices < 0) | (indices >= num_classes)]
    if bad.size:
        raise ConfigError(f"class_index must be in 0..{num_classes - 1}, got {int(bad[0])}.")
    return indices


def num_classes_of(probe: Probe) -> int:
    return int(probe.tap_model.outputs[-1].shape[-1])
