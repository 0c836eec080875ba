"""Model designs and the builder that turns them into Keras models.

Two families, each a frozen dataclass with only the fields that apply to it:

- `ConvNetConfig`: a CNN built from scratch out of conv blocks;
- `TransferConfig`: a pretrained `keras.applications` backbone (transfer learning).

Both end in the same classifier head, described by a shared `HeadConfig`.
`ModelConfig` names either family. Presets (`PRESETS`) are data: a family,
its fields and the rules that adapt them to the images.

Every model is a Functional `keras.Model` whose layers say what they are:
`rescale`, `conv1`, `conv2`, ..., `pool1`, ..., `logits`, `probs`. The logits
are their own layer and the softmax a separate `probs` layer, so explanations
can read logits without touching the model. Images go in as raw 0..255 values
(any float or uint8 array); the model rescales them itself, so a saved model
carries its own preprocessing.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

from cnnviz.errors import ConfigError

ACTIVATIONS = ("relu", "gelu", "elu", "selu", "swish", "tanh", "leaky_relu")
POOLINGS = ("flatten", "global_avg")
PADDINGS = ("valid", "same")


def _check_int(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{name} must be a whole number from {low} to {high}, got {value!r}.")


def _check_float(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ConfigError(f"{name} must be a number in [0, 1), got {value!r}.")


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}.")


def _check_input(input_shape: Any, num_classes: Any) -> tuple[int, int, int]:
    try:
        shape = tuple(int(side) for side in input_shape)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) != 3 or shape[2] not in (1, 3) or min(shape[:2]) < 8 or max(shape[:2]) > 1024:
        raise ConfigError(
            f"input_shape must be (height, width, 1 or 3) with sides 8-1024, got {input_shape}."
        )
    _check_int("num_classes", num_classes, 2, 1000)
    return shape


@dataclasses.dataclass(frozen=True)
class HeadConfig:
    """The classifier head both families end in: pooling, an optional hidden dense layer, dropout, logits.

    Attributes:
        pooling: `"global_avg"` (global average pooling) or `"flatten"`.
            Defaults to `"global_avg"`.
        dense_units: int, units of a hidden dense layer; 0 for none. Defaults to `0`.
        dense_dropout: float, dropout before the logits. Defaults to `0.0`.
    """

    pooling: str = "global_avg"
    dense_units: int = 0
    dense_dropout: float = 0.0

    def __post_init__(self):
        _check_choice("pooling", self.pooling, POOLINGS)
        _check_int("dense_units", self.dense_units, 0, 8192)
        _check_float("dense_dropout", self.dense_dropout)


class _Design:
    """What both families share: `replace` with flat field names, and `to_dict`."""

    family: ClassVar[str]

    def replace(self, **changes: Any):
        """Returns a copy with `changes` applied (and validated).

        Head fields (`pooling`, `dense_units`, `dense_dropout`) may be given by
        their own names. A field of the other family raises `ConfigError`.
        """
        values = self.fields()
        if "head" in changes:  # a whole new head: its own fields, not this one's
            values = {name: value for name, value in values.items() if name not in _HEAD_FIELDS}
        return _make(type(self), {**values, **changes})

    def fields(self) -> dict[str, Any]:
        """Every field by its flat name (head fields included)."""
        values = {
            field.name: getattr(self, field.name)
            for field in dataclasses.fields(self)
            if field.name != "head"
        }
        return values | dataclasses.asdict(self.head)

    def to_dict(self) -> dict[str, Any]:
        """The design as JSON-ready data (for a saved model's provenance)."""
        return {"family": self.family, **self.fields(), "input_shape": list(self.input_shape)}


@dataclasses.dataclass(frozen=True)
class ConvNetConfig(_Design):
    """A CNN built from scratch; each field is one slider or select.

    Block `b` (1-based) has `convs_per_block` convolutions of
    `filters * 2 ** (b - 1)` channels (capped at `max_filters`), then 2x2 max
    pooling and dropout.

    Attributes:
        input_shape: `(height, width, channels)` of the images. Defaults to `(64, 64, 3)`.
        num_classes: int, number of classes. Defaults to `4`.
        conv_blocks: int, number of conv blocks, 1-6. Defaults to `3`.
        filters: int, channels of the first block's convolutions; doubles
            every block. Defaults to `32`.
        max_filters: int, cap on the channels of any convolution. Defaults to `256`.
        convs_per_block: int, convolutions before each pooling, 1-3. Defaults to `1`.
        kernel_size: int, odd side of the convolution kernels. Defaults to `3`.
        stem_stride: int, stride of the very first convolution; 2 halves the
            resolution at a quarter of the cost. Defaults to `1`.
        padding: `"same"` or `"valid"`. Defaults to `"same"`.
        batch_norm: bool, batch normalization after each convolution. Defaults to `True`.
        activation: one of `ACTIVATIONS`, also of the head's hidden dense layer.
            Defaults to `"relu"`.
        block_dropout: float, dropout after each block's pooling. Defaults to `0.0`.
        pooled_blocks: int or None, how many blocks, counted from the first,
            end in 2x2 max pooling; `None` = all. Fewer keeps a finer last
            feature map, so heatmaps (Grad-CAM) localize better. Defaults to `None`.
        head: a `HeadConfig`. Defaults to `HeadConfig()`.
        name: str, the model's name. Defaults to `"cnnviz"`.
    """

    family: ClassVar[str] = "convnet"

    input_shape: tuple[int, int, int] = (64, 64, 3)
    num_classes: int = 4
    conv_blocks: int = 3
    filters: int = 32
    max_filters: int = 256
    convs_per_block: int = 1
    kernel_size: int = 3
    stem_stride: int = 1
    padding: str = "same"
    batch_norm: bool = True
    activation: str = "relu"
    block_dropout: float = 0.0
    pooled_blocks: int | None = None
    head: HeadConfig = HeadConfig()
    name: str = "cnnviz"

    def __post_init__(self):
        object.__setattr__(self, "input_shape", _check_input(self.input_shape, self.num_classes))
        _check_int("conv_blocks", self.conv_blocks, 1, 6)
        _check_int("filters", self.filters, 1, 1024)
        _check_int("max_filters", self.max_filters, 1, 2048)
        _check_int("convs_per_block", self.convs_per_block, 1, 3)
        _check_int("kernel_size", self.kernel_size, 1, 11)
        _check_int("stem_stride", self.stem_stride, 1, 4)
        if self.kernel_size % 2 == 0:
            raise ConfigError(f"kernel_size must be odd, got {self.kernel_size}.")
        _check_choice("padding", self.padding, PADDINGS)
        _check_choice("activation", self.activation, ACTIVATIONS)
        _check_float("block_dropout", self.block_dropout)
        object.__setattr__(self, "batch_norm", bool(self.batch_norm))
        if self.pooled_blocks is not None:
            _check_int("pooled_blocks", self.pooled_blocks, 0, self.conv_blocks)
        if not isinstance(self.head, HeadConfig):
            raise ConfigError(f"head must be a HeadConfig, got {self.head!r}.")
        self._check_map_survives()

    def _check_map_survives(self) -> None:
        height, width = self.input_shape[:2]
        height, width = -(-height // self.stem_stride), -(-width // self.stem_stride)
        for block in range(1, self.conv_blocks + 1):
            if self.padding == "valid":
                height -= self.convs_per_block * (self.kernel_size - 1)
                width -= self.convs_per_block * (self.kernel_size - 1)
            if self.pools_after(block):
                height, width = height // 2, width // 2
            if height < 1 or width < 1:
                raise ConfigError(
                    f"{self.conv_blocks} conv blocks shrink a {self.input_shape[0]}x{self.input_shape[1]} image "
                    "to nothing; use fewer blocks, 'same' padding or larger images."
                )

    def pools_after(self, block: int) -> bool:
        """Whether 1-based `block` ends in max pooling."""
        return self.pooled_blocks is None or block <= self.pooled_blocks

    def block_filters(self, block: int) -> int:
        """Channels of the convolutions in 1-based `block`."""
        return min(self.filters * 2 ** (block - 1), self.max_filters)


@dataclasses.dataclass(frozen=True)
class TransferConfig(_Design):
    """A pretrained network under a new classifier head (transfer learning).

    The backbone's layers become layers of the model, so every explanation
    reaches them by name.

    Attributes:
        input_shape: `(height, width, channels)` of the images. Defaults to `(64, 64, 3)`.
        num_classes: int, number of classes. Defaults to `4`.
        backbone: one of `cnnviz.pretrained.BACKBONES` (`"mobilenet_v2"`,
            `"efficientnet_b0"`). Defaults to `"mobilenet_v2"`.
        backbone_weights: `"imagenet"` (downloaded once into the Keras cache)
            or `None` (random initialization). Defaults to `"imagenet"`.
        backbone_size: int or None, square side the images are resized to
            for the backbone; `None` = the smallest of 96, 128, ..., 224 that
            is at least the image side. Defaults to `None`.
        fine_tune_layers: int, how many of the backbone's last layers train
            (batch norm layers stay frozen); 0 trains only the new head.
            Defaults to `0`.
        head: a `HeadConfig`; its hidden dense layer uses ReLU. Defaults to `HeadConfig()`.
        name: str, the model's name. Defaults to `"cnnviz"`.
    """

    family: ClassVar[str] = "transfer"

    input_shape: tuple[int, int, int] = (64, 64, 3)
    num_classes: int = 4
    backbone: str = "mobilenet_v2"
    backbone_weights: str | None = "imagenet"
    backbone_size: int | None = None
    fine_tune_layers: int = 0
    head: HeadConfig = HeadConfig()
    name: str = "cnnviz"

    def __post_init__(self):
        from cnnviz.pretrained import BACKBONE_SIZES, BACKBONES

        object.__setattr__(self, "input_shape", _check_input(self.input_shape, self.num_classes))
        _check_choice("backbone", self.backbone, tuple(BACKBONES))
        if self.backbone_weights not in ("imagenet", None):
            raise ConfigError(f"backbone_weights must be 'imagenet' or None, got {self.backbone_weights!r}.")
        if self.backbone_size is not None and self.backbone_size not in BACKBONE_SIZES:
            raise ConfigError(
                f"backbone_size must be one of {', '.join(map(str, BACKBONE_SIZES))} or None, "
                f"got {self.backbone_size!r}."
            )
        _check_int("fine_tune_layers", self.fine_tune_layers, 0, 1000)
        if not isinstance(self.head, HeadConfig):
            raise ConfigError(f"head must be a HeadConfig, got {self.head!r}.")


#: Either design family.
ModelConfig = ConvNetConfig | TransferConfig
FAMILIES: dict[str, type] = {"convnet": ConvNetConfig, "transfer": TransferConfig}
_HEAD_FIELDS = tuple(field.name for field in dataclasses.fields(HeadConfig))


def is_model_config(value: Any) -> bool:
    """Whether `value` is a design of either family."""
    return isinstance(value, (ConvNetConfig, TransferConfig))


def field_names(family: type) -> tuple[str, ...]:
    """The flat field names a family's `replace` accepts (head fields included)."""
    own = tuple(field.name for field in dataclasses.fields(family) if field.name != "head")
    return own + _HEAD_FIELDS


def _make(family: type, values: Mapping[str, Any]):
    """A `family` design from flat field names; a field of the other family is a `ConfigError`."""
    unknown = sorted(set(values) - set(field_names(family)) - {"head"})
    if unknown:
        raise ConfigError(
            f"{', '.join(unknown)} {'does' if len(unknown) == 1 else 'do'} not apply to a "
            f"{family.family} design; its fields are {', '.join(field_names(family))}."
        )
    own = {name: value for name, value in values.items() if name not in _HEAD_FIELDS and name != "head"}
    head = values.get("head", HeadConfig())
    head_changes = {name: values[name] for name in _HEAD_FIELDS if name in values}
    try:
        return family(**own, head=dataclasses.replace(head, **head_changes))
    except TypeError as error:  # e.g. head=None
        raise ConfigError(f"not a {family.family} design: {error}.") from None


#: Images whose shorter side has fewer pixels are small, and sets of at least `MANY_IMAGES` training images
#: are many (`many_small_images`). Many small images are cheap one by one and plentiful enough to fit a
#: deeper network: the `fast` preset gives them two convolutions per block of at most 64 channels,
#: `cnnviz.TrainConfig`'s default batch is 64 for them, and the CLI and the studio shift them a little by
#: default. On 8,000 real digits that took `cnnviz train --time-budget 30` from 98.77 % to 99.40 %. Fewer
#: images keep the plain design and batch 32: on 1,797 digits or a 60-image folder, the deeper network and the
#: larger batch lost accuracy in short runs (docs/BENCHMARKS.md, "Faster to a good model").
SMALL_IMAGE_PX = 48
MANY_IMAGES = 4000


def many_small_images(image_shape, num_images: int | None) -> bool:
    """Whether `num_images` training images of `image_shape` `(height, width, ...)` are many small ones:
    the shorter side under `SMALL_IMAGE_PX` and at least `MANY_IMAGES` of them (`None`: not known, no)."""
    return (
        num_images is not None and num_images >= MANY_IMAGES and min(tuple(image_shape)[:2]) < SMALL_IMAGE_PX
    )


@dataclasses.dataclass(frozen=True)
class Preset:
    """A named starting design: a family, its fields, and rules that adapt them to the images.

    Attributes:
        name: the key in `PRESETS` and the model's name.
        label: what people read.
        family: `ConvNetConfig` or `TransferConfig`.
        fields: the family's fields (flat names) this preset sets.
        stem_stride_from_px: images whose shorter side has at least this many
            pixels start with a stride-2 convolution; `None`: never.
        many_small_fields: fields for many small images (`many_small_images`),
            unless given as overrides.
        unpooled_last_block: every block but the last ends in pooling, unless
            `pooled_blocks` is given (pooling a 4x4 map to 2x2 only loses detail).
    """

    name: str
    label: str
    family: type
    fields: Mapping[str, Any]
    stem_stride_from_px: int | None = None
    many_small_fields: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    unpooled_last_block: bool = False

    def config(
        self,
        input_shape=(64, 64, 3),
        num_classes: int = 4,
        *,
        num_images: int | None = None,
        **overrides: Any,
    ) -> ModelConfig:
        """The preset's design for `num_images` training images (`None`: not known) of `input_shape` and
        `num_classes` classes, with `overrides`."""
        values = dict(self.fields)
        if self.stem_stride_from_px is not None and min(tuple(input_shape)[:2]) >= self.stem_stride_from_px:
            values["stem_stride"] = 2
        if many_small_images(input_shape, num_images):
            values.update(self.many_small_fields)
        values.update(overrides)
        if self.unpooled_last_block and "pooled_blocks" not in overrides:
            values["pooled_blocks"] = values.get("conv_blocks", ConvNetConfig.conv_blocks) - 1
        return _make(
            self.family,
            {**values, "input_shape": tuple(input_shape), "num_classes": num_classes, "name": self.name},
        )


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        # Tuned for accuracy per second on a 2-core CPU: batch norm lets a high
        # learning rate converge in few epochs; global average pooling keeps the
        # head tiny; images of 48 px and more start with a stride-2 convolution
        # (a quarter of the cost, measured 98% on shapes in 30 s vs 50% without);
        # many small images get two convolutions per block, at most 64 channels
        # (the last block works on a 3x3 map at 28 px; `SMALL_IMAGE_PX`).
        Preset(
            "fast",
            "fast: tuned for a CPU (batch norm, global pooling)",
            ConvNetConfig,
            dict(conv_blocks=4, filters=16, convs_per_block=1, padding="same", batch_norm=True),
            stem_stride_from_px=SMALL_IMAGE_PX,
            many_small_fields=dict(convs_per_block=2, max_filters=64),
            unpooled_last_block=True,
        ),
        # keras.io "Simple MNIST convnet": Conv32-Pool-Conv64-Pool-Flatten-Drop.5-
        # Dense (34,826 parameters at 28x28x1).
        Preset(
            "keras_mnist",
            "keras.io simple MNIST convnet",
            ConvNetConfig,
            dict(
                conv_blocks=2,
                filters=32,
                padding="valid",
                batch_norm=False,
                pooling="flatten",
                dense_dropout=0.5,
            ),
        ),
        # The tutorial's CIFAR-10 net: Conv32-Conv32-Pool-Drop.25-Conv64-Conv64-
        # Pool-Drop.25-Dense256-Drop.5-Dense (477,994 parameters at 32x32x3).
        Preset(
            "tutorial_basic",
            "the tutorial's CIFAR-10 net",
            ConvNetConfig,
            dict(
                conv_blocks=2,
                filters=32,
                convs_per_block=2,
                padding="valid",
                batch_norm=False,
                block_dropout=0.25,
                pooling="flatten",
                dense_units=256,
                dense_dropout=0.5,
            ),
        ),
        # The tutorial's "improving your model" direction: deeper, batch norm,
        # same padding, more dropout further in.
        Preset(
            "tutorial_improved",
            "the tutorial's improved net (deeper, batch norm)",
            ConvNetConfig,
            dict(
                conv_blocks=3,
                filters=32,
                convs_per_block=2,
                padding="same",
                batch_norm=True,
                block_dropout=0.25,
                pooling="flatten",
                dense_units=256,
                dense_dropout=0.5,
            ),
        ),
        # The tutorial's last step, transfer learning: ImageNet features from a
        # pretrained network under a new classifier head; only the head trains.
        Preset(
            "transfer_mobilenet_v2",
            "transfer learning: MobileNetV2 pretrained on ImageNet",
            TransferConfig,
            dict(backbone="mobilenet_v2", dense_dropout=0.2),
        ),
        Preset(
            "transfer_efficientnet_b0",
            "transfer learning: EfficientNetB0 pretrained on ImageNet",
            TransferConfig,
            dict(backbone="efficientnet_b0", dense_dropout=0.2),
        ),
    )
}

DEFAULT_PRESET = "fast"


def preset_config(
    name: str = DEFAULT_PRESET,
    input_shape: tuple[int, int, int] = (64, 64, 3),
    num_classes: int = 4,
    *,
    num_images: int | None = None,
    **overrides: Any,
) -> ModelConfig:
    """Returns the design of preset `name` for the given data.

    Args:
        name: one of `PRESETS`. Defaults to `"fast"`.
        input_shape: `(height, width, channels)` of the images.
        num_classes: int, number of classes.
        num_images: int, how many training images there are, or `None` when
            not known: the `fast` preset goes deeper for many small images
            (`many_small_images`).
        **overrides: fields of the preset's family to change (flat names).

    Raises:
        ConfigError: unknown preset, a field of the other family, or bad values.
    """
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}.")
    return PRESETS[name].config(input_shape, num_classes, num_images=num_images, **overrides)


def fit_design(
    design, input_shape, num_classes: int, *, num_images: int | None = None, **changes: Any
) -> ModelConfig:
    """A preset name or a design, fitted to images of `input_shape` and `num_classes` classes (and, for a
    preset, `num_images` training images: `preset_config`), with `changes`.

    Raises:
        ConfigError: unknown preset, a field of the other family, or bad values.
    """
    if isinstance(design, str):
        return preset_config(design, input_shape, num_classes, num_images=num_images, **changes)
    if not is_model_config(design):
        raise ConfigError(f"a design is a preset name, a ConvNetConfig or a TransferConfig, got {design!r}.")
    return design.replace(**changes, input_shape=tuple(input_shape), num_classes=int(num_classes))


def layer_seeds(seed: int) -> Iterator[int]:
    """One seed per random layer, derived from a run's seed (no global RNG is touched)."""
    return itertools.count(int(seed) * 100_003 + 1)


def build_model(config: ModelConfig | None = None, *, seed: int = 0, **overrides: Any):
    """Builds the Functional Keras model that `config` describes.

    Args:
        config: a `ConvNetConfig` or `TransferConfig`; defaults to `ConvNetConfig()`.
        seed: int, seeds every initializer and dropout layer of this model, so
            the same seed builds the same weights without reseeding the process.
            Defaults to `0`.
        **overrides: fields to change on `config`.

    Returns:
        An uncompiled `keras.Model` taking float images in 0..255 of shape
        `(None, *config.input_shape)` and returning class probabilities.

    Example:

    >>> model = cnnviz.build_model(cnnviz.preset_config("keras_mnist", (28, 28, 1), 10))
    >>> model.count_params()
    34826
    """
    import keras

    config = config or ConvNetConfig()
    if overrides:
        config = config.replace(**overrides)
    if not is_model_config(config):
        raise ConfigError(f"expected a ConvNetConfig or TransferConfig, got {type(config).__name__}.")
    inputs = keras.Input(shape=config.input_shape, name="image")
    seeds = layer_seeds(seed)
    if isinstance(config, TransferConfig):
        return _build_transfer_model(config, inputs, seeds)
    return _build_convnet(config, inputs, seeds)


def _initializer(seeds: Iterator[int]):
    import keras

    return keras.initializers.GlorotUniform(seed=next(seeds))


def _build_convnet(config: ConvNetConfig, inputs, seeds: Iterator[int]):
    import keras
    from keras import layers

    x = layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    conv_index = 0
    for block in range(1, config.conv_blocks + 1):
        for _ in range(config.convs_per_block):
            conv_index += 1
            x = layers.Conv2D(
                config.block_filters(block),
                config.kernel_size,
                strides=config.stem_stride if conv_index == 1 else 1,
                padding=config.padding,
                activation=None if config.batch_norm else config.activation,
                use_bias=not config.batch_norm,
                kernel_initializer=_initializer(seeds),
                name=f"conv{conv_index}",
            )(x)
            if config.batch_norm:
                # Momentum 0.9, not 0.99: short runs need the inference
                # statistics to catch up within a few hundred steps.
                x = layers.BatchNormalization(momentum=0.9, name=f"bn{conv_index}")(x)
                x = layers.Activation(config.activation, name=f"act{conv_index}")(x)
        if config.pools_after(block):
            x = layers.MaxPooling2D(2, name=f"pool{block}")(x)
        if config.block_dropout > 0:
            x = layers.Dropout(config.block_dropout, seed=next(seeds), name=f"drop{block}")(x)
    probs = _head(x, config.head, config.activation, config.num_classes, seeds)
    return keras.Model(inputs, probs, name=config.name)


def _head(x, head: HeadConfig, activation: str, num_classes: int, seeds: Iterator[int]):
    """Pooling, optional hidden dense layer, dropout, the `logits` layer and the `probs` softmax."""
    from keras import layers

    if head.pooling == "flatten":
        x = layers.Flatten(name="flatten")(x)
    else:
        x = layers.GlobalAveragePooling2D(name="global_pool")(x)
    if head.dense_units:
        x = layers.Dense(
            head.dense_units, activation=activation, kernel_initializer=_initializer(seeds), name="dense"
        )(x)
    if head.dense_dropout > 0:
        x = layers.Dropout(head.dense_dropout, seed=next(seeds), name="drop_dense")(x)
    logits = layers.Dense(
        num_classes, kernel_initializer=_initializer(seeds), name="logits", dtype="float32"
    )(x)
    return layers.Activation("softmax", name="probs", dtype="float32")(logits)


def _build_transfer_model(config: TransferConfig, inputs, seeds: Iterator[int]):
    """A pretrained backbone, flat in the graph, under a new classifier head."""
    import keras

    from cnnviz.pretrained import attach_backbone, backbone_size, freeze_backbone

    size = backbone_size(max(config.input_shape[:2]), config.backbone_size)
    features, backbone_layers = attach_backbone(inputs, config.backbone, config.backbone_weights, size)
    probs = _head(features, config.head, "relu", config.num_classes, seeds)
    model = keras.Model(inputs, probs, name=config.name)
    freeze_backbone(model, backbone_layers, config.fine_tune_layers)
    return model


def count_flops(model) -> int:
    """Floating-point operations for one image's forward pass (2 per multiply-add).

    Counts convolutions, dense layers, batch norm and pooling; activations and
    other element-wise layers count one operation per output value.
    """
    from keras import layers

    total = 0
    for layer in walk_layers(model):
        try:
            output_shape = layer.output.shape
        except (AttributeError, ValueError):
            continue
        outputs = 1
        for side in output_shape[1:]:
            outputs *= int(side or 1)
        if isinstance(layer, (layers.Conv2D,)) and not isinstance(layer, layers.DepthwiseConv2D):
            kernel_h, kernel_w = layer.kernel_size
            in_channels = int(layer.input.shape[-1]) // layer.groups
            total += 2 * outputs * kernel_h * kernel_w * in_channels
        elif isinstance(layer, layers.DepthwiseConv2D):
            kernel_h, kernel_w = layer.kernel_size
            total += 2 * outputs * kernel_h * kernel_w
        elif isinstance(layer, layers.Dense):
            total += 2 * outputs * int(layer.input.shape[-1])
        elif isinstance(layer, (layers.MaxPooling2D, layers.AveragePooling2D)):
            pool_h, pool_w = layer.pool_size
            total += outputs * pool_h * pool_w
        elif isinstance(layer, (layers.BatchNormalization, layers.Activation, layers.Rescaling)):
            total += 2 * outputs if isinstance(layer, layers.BatchNormalization) else outputs
        elif isinstance(layer, layers.GlobalAveragePooling2D):
            total += int(layer.input.shape[1]) * int(layer.input.shape[2]) * int(layer.input.shape[3])
    return int(total)


def walk_layers(model):
    """Every layer of `model`, nested models' layers included (not the nested models themselves)."""
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from walk_layers(layer)
        else:
            yield layer


def describe_model(model) -> list[dict[str, Any]]:
    """One row per layer: name, kind, output shape and parameter count (for tables)."""
    rows = []
    for layer in model.layers:
        try:
            shape = tuple(layer.output.shape)
        except (AttributeError, ValueError):
            shape = ()
        rows.append(
            {
                "name": layer.name,
                "kind": type(layer).__name__,
                "output_shape": shape,
                "parameters": int(layer.count_params()) if layer.built else 0,
            }
        )
    return rows
