"""Pretrained networks from `keras.applications`: transfer-learning backbones
and a ready ImageNet classifier for real photos.

ImageNet weights download once, on first use, into the Keras cache
(`$KERAS_HOME/models`, by default `~/.keras/models`); later uses read them from
there and need no network. A machine that is offline and has no cached copy
gets a `WeightsUnavailableError` saying which file is missing, where it goes and
how to fix it.

Backbones are built flat into the cnnviz model (`input_tensor=`), not nested as
one opaque layer: every MobileNetV2 / EfficientNetB0 layer is a layer of the
model, reachable by name for feature maps, Grad-CAM and the other explanations.

Example:

>>> model = cnnviz.imagenet_classifier()       # MobileNetV2, downloads ~14 MB once
>>> probabilities = cnnviz.predict_probabilities(model, cnnviz.load_image("cat.jpg", (224, 224)))
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from cnnviz.errors import CnnvizError

#: Sides for which ImageNet weights exist; backbones resize images to one of them.
BACKBONE_SIZES = (96, 128, 160, 192, 224)
IMAGENET_SIZE = 224
_KERAS_APPLICATIONS_URL = "https://storage.googleapis.com/"
_CLASS_INDEX_URL = _KERAS_APPLICATIONS_URL + "download.tensorflow.org/data/imagenet_class_index.json"
_CLASS_INDEX_HASH = "c2c37ea517e94d9795004a39431a14cb"


class WeightsUnavailableError(CnnvizError, RuntimeError):
    """Pretrained weights are neither cached nor downloadable."""


@dataclasses.dataclass(frozen=True)
class Backbone:
    """A `keras.applications` network usable as a feature extractor.

    Attributes:
        key: the `ModelConfig.backbone` value.
        label: what people read.
        builder: name of the `keras.applications` function.
        scales_itself: whether the network rescales 0..255 input itself
            (EfficientNet does); otherwise cnnviz adds the network's
            preprocessing as a layer (MobileNetV2: 0..255 -> -1..1).
        megabytes: approximate download size of the ImageNet weights without
            the classifier top, for the size note.
    """

    key: str
    label: str
    builder: str
    scales_itself: bool
    megabytes: float


BACKBONES: dict[str, Backbone] = {
    "mobilenet_v2": Backbone("mobilenet_v2", "MobileNetV2", "MobileNetV2", False, 9.4),
    "efficientnet_b0": Backbone("efficientnet_b0", "EfficientNetB0", "EfficientNetB0", True, 16.0),
}


def backbone_size(input_side: int, size: int | None = None) -> int:
    """The square side images are resized to before the backbone.

    `size=None` picks the smallest side with ImageNet weights that is at least
    the image's side (96 for MNIST or 64 px shapes), capped at 224.
    """
    if size is not None:
        return int(size)
    return next((side for side in BACKBONE_SIZES if side >= input_side), IMAGENET_SIZE)


def _keras_home() -> Path:
    from cnnviz.data import keras_home

    return Path(keras_home())


def weights_file(backbone: str, size: int, include_top: bool = False) -> tuple[str, str, str | None]:
    """`(file name, URL, md5 hash or None)` of a backbone's ImageNet weights,
    exactly as `keras.applications` names and fetches them."""
    if backbone == "mobilenet_v2":
        name = (
            f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{size}{'' if include_top else '_no_top'}.h5"
        )
        url = _KERAS_APPLICATIONS_URL + "tensorflow/keras-applications/mobilenet_v2/" + name
        return name, url, None
    if backbone == "efficientnet_b0":
        # The md5 sums keras.applications checks (keras/src/applications/efficientnet.py, WEIGHTS_HASHES["b0"]).
        file_hash = "902e53a9f72be733fc0bcb005b3ebbac" if include_top else "50bc09e76180e00e4465e1a485ddc09d"
        name = "efficientnetb0" + (".h5" if include_top else "_notop.h5")
        return name, _KERAS_APPLICATIONS_URL + "keras-applications/" + name, file_hash
    raise _unknown_backbone(backbone)


def _unknown_backbone(backbone: str) -> CnnvizError:
    from cnnviz.errors import ConfigError

    return ConfigError(f"backbone must be one of {', '.join(BACKBONES)}, got {backbone!r}.")


def weights_cached(backbone: str, size: int, include_top: bool = False) -> bool:
    """Whether the ImageNet weights are already in the Keras cache (no download needed)."""
    return (_keras_home() / "models" / weights_file(backbone, size, include_top)[0]).is_file()


def _fetch(name: str, url: str, file_hash: str | None, what: str, megabytes: float) -> Path:
    """Downloads a file into the Keras cache once, or says clearly why not."""
    import keras

    cache = _keras_home() / "models"
    try:
        return Path(
            keras.utils.get_file(
                name, url, cache_subdir="models", file_hash=file_hash, cache_dir=str(_keras_home())
            )
        )
    except Exception as error:  # keras raises a bare Exception on fetch failures
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise WeightsUnavailableError(
            f"{what} (about {megabytes:g} MB) are not in the Keras cache ({cache / name}) and could not be "
            f"downloaded ({reason}). Connect to the internet once (they are kept after that), copy the file "
            "there, or start from random weights (backbone_weights=None)."
        ) from None


def fetch_weights(backbone: str, size: int, include_top: bool = False) -> Path:
    """Makes sure a backbone's ImageNet weights are cached; returns their path.

    Raises:
        WeightsUnavailableError: not cached and the download failed.
    """
    spec = BACKBONES.get(backbone)
    if spec is None:
        raise _unknown_backbone(backbone)
    name, url, file_hash = weights_file(backbone, size, include_top)
    megabytes = spec.megabytes if not include_top else spec.megabytes + 5
    return _fetch(name, url, file_hash, f"ImageNet weights for {spec.label}", megabytes)


def attach_backbone(x, backbone: str, weights: str | None, size: int, include_top: bool = False):
    """Runs `x` (0..255 images) through a backbone built flat into the graph.

    Adds, as named layers: `backbone_resize` (to `size` x `size`),
    `gray_to_rgb` for one-channel images, and `backbone_preprocess` when the
    network does not rescale its input itself.

    Args:
        x: a Keras tensor of 0..255 images `(None, H, W, 1 or 3)`.
        backbone: a key of `BACKBONES`.
        weights: `"imagenet"` or `None` (random initialization).
        size: square side fed to the network; one of `BACKBONE_SIZES` for
            weights that match exactly.
        include_top: keep the 1000-class ImageNet classifier (logits, no softmax).

    Returns:
        `(output tensor, names of the backbone's own layers)`.
    """
    import keras
    from keras import layers

    spec = BACKBONES.get(backbone)
    if spec is None:
        raise _unknown_backbone(backbone)
    if weights == "imagenet":
        fetch_weights(backbone, size, include_top)
    ours = []
    if tuple(x.shape[1:3]) != (size, size):
        ours.append(layers.Resizing(size, size, name="backbone_resize"))
        x = ours[-1](x)
    if x.shape[-1] == 1:
        ours.append(layers.Concatenate(name="gray_to_rgb"))
        x = ours[-1]([x, x, x])
    if not spec.scales_itself:
        ours.append(layers.Rescaling(1.0 / 127.5, offset=-1.0, name="backbone_preprocess"))
        x = ours[-1](x)
    builder = getattr(keras.applications, spec.builder)
    options = {"classifier_activation": None} if include_top else {}
    network = builder(
        input_tensor=x, input_shape=(size, size, 3), include_top=include_top, weights=weights, **options
    )
    names = [
        layer.name
        for layer in network.layers
        if not isinstance(layer, layers.InputLayer) and all(layer is not own for own in ours)
    ]
    return network.output, names


def freeze_backbone(model, backbone_layers: list[str], fine_tune_layers: int) -> None:
    """Freezes the backbone except its last `fine_tune_layers` layers.

    Batch normalization layers stay frozen even there (they then run in
    inference mode), as the Keras transfer-learning guide advises: updating
    their statistics on a small dataset wrecks what the network learned.
    """
    from keras import layers

    for index, name in enumerate(backbone_layers):
        layer = model.get_layer(name)
        trainable = index >= len(backbone_layers) - fine_tune_layers
        layer.trainable = trainable and not isinstance(layer, layers.BatchNormalization)


def imagenet_class_names() -> tuple[str, ...]:
    """The 1000 ImageNet class names (human-readable), cached like the weights.

    Raises:
        WeightsUnavailableError: not cached and the download failed.
    """
    path = _fetch(
        "imagenet_class_index.json", _CLASS_INDEX_URL, _CLASS_INDEX_HASH, "ImageNet class names", 0.04
    )
    try:
        index = json.loads(path.read_text())
        return tuple(index[str(number)][1].replace("_", " ") for number in range(len(index)))
    except (ValueError, KeyError, IndexError, TypeError):
        raise WeightsUnavailableError(
            f"{path} is not the ImageNet class index; delete it so it downloads again."
        ) from None


def imagenet_classifier(weights: str | None = "imagenet"):
    """MobileNetV2 trained on ImageNet, ready for photos, as a cnnviz model.

    Takes 224x224 RGB images in 0..255 like every cnnviz model (the
    preprocessing is a layer), returns probabilities over 1000 classes from a
    `probs` softmax on a `predictions` logits layer, with the class names in
    its metadata. All MobileNetV2 layers are top-level, so every explanation
    method works on it (Grad-CAM reads `out_relu` by default).

    Args:
        weights: `"imagenet"` (downloaded once, about 14 MB) or `None`.

    Raises:
        WeightsUnavailableError: offline with nothing cached.
    """
    import keras
    from keras import layers

    from cnnviz.saving import set_metadata

    class_names = (
        imagenet_class_names() if weights == "imagenet" else tuple(f"class_{i}" for i in range(1000))
    )
    inputs = keras.Input((IMAGENET_SIZE, IMAGENET_SIZE, 3), name="image")
    logits, _ = attach_backbone(inputs, "mobilenet_v2", weights, IMAGENET_SIZE, include_top=True)
    probs = layers.Activation("softmax", name="probs", dtype="float32")(logits)
    model = keras.Model(inputs, probs, name="imagenet_mobilenet_v2")
    set_metadata(model, class_names=list(class_names), source="keras.applications.MobileNetV2 (ImageNet)")
    return model
