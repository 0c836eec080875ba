"""Model configurations and the builder that turns them into Keras models.

Every model is a Functional `keras.Model` whose layers say what they are:
`rescale`, `conv1`, `conv2`, ..., `pool1`, ..., `logits`, `probs`. The logits
are their own layer and the softmax a separate `probs` layer, so explanations
can read logits without touching the model. Images go in as raw 0..255 values
(any float or uint8 array); the model rescales them itself, so a saved model
carries its own preprocessing.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from cnnviz.errors import ConfigError

ACTIVATIONS = ("relu", "gelu", "elu", "selu", "swish", "tanh", "leaky_relu")
HEADS = ("flatten", "global_avg")
PADDINGS = ("valid", "same")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Everything that defines a cnnviz CNN; each field is one slider or select.

    Block `b` (1-based) has `convs_per_block` convolutions of
    `filters * 2 ** (b - 1)` channels (capped at `max_filters`), then 2x2 max
    pooling and dropout.

    Attributes:
        input_shape: `(height, width, channels)` of the images. Defaults to
            `(64, 64, 3)`.
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
        batch_norm: bool, batch normalization after each convolution.
            Defaults to `True`.
        activation: one of `ACTIVATIONS`. Defaults to `"relu"`.
        block_dropout: float, dropout after each block's pooling. Defaults to `0.0`.
        pooled_blocks: int or None, how many blocks, counted from the first,
            end in 2x2 max pooling; `None` = all. Fewer keeps a finer last
            feature map, so heatmaps (Grad-CAM) localize better. Defaults to `None`.
        head: `"global_avg"` (global average pooling) or `"flatten"`.
            Defaults to `"global_avg"`.
        dense_units: int, units of a hidden dense layer; 0 for none. Defaults to `0`.
        dense_dropout: float, dropout before the logits. Defaults to `0.0`.
        backbone: `None` for a CNN built from the fields above, or a
            pretrained `keras.applications` network to start from (transfer
            learning): one of `cnnviz.pretrained.BACKBONES`
            (`"mobilenet_v2"`, `"efficientnet_b0"`). Its layers become layers
            of the model, so every explanation reaches them by name; the conv
            block fields are then unused. Defaults to `None`.
        backbone_weights: `"imagenet"` (downloaded once into the Keras cache)
            or `None` (random initialization). Defaults to `"imagenet"`.
        backbone_size: int or None, square side the images are resized to
            for the backbone; `None` = the smallest of 96, 128, ..., 224 that
            is at least the image side. Defaults to `None`.
        fine_tune_layers: int, how many of the backbone's last layers train
            (batch norm layers stay frozen); 0 trains only the new head.
            Defaults to `0`.
        name: str, the model's name. Defaults to `"cnnviz"`.
    """

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
    head: str = "global_avg"
    dense_units: int = 0
    dense_dropout: float = 0.0
    backbone: str | None = None
    backbone_weights: str | None = "imagenet"
    backbone_size: int | None = None
    fine_tune_layers: int = 0
    name: str = "cnnviz"

    def __post_init__(self):
        shape = tuple(int(side) for side in self.input_shape)
        object.__setattr__(self, "input_shape", shape)
        if len(shape) != 3 or shape[2] not in (1, 3) or min(shape[:2]) < 8 or max(shape[:2]) > 1024:
            raise ConfigError(
                f"input_shape must be (height, width, 1 or 3) with sides 8-1024, got {self.input_shape}."
            )
        _check_int("num_classes", self.num_classes, 2, 1000)
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
        _check_choice("head", self.head, HEADS)
        _check_float("block_dropout", self.block_dropout)
        _check_float("dense_dropout", self.dense_dropout)
        _check_int("dense_units", self.dense_units, 0, 8192)
        object.__setattr__(self, "batch_norm", bool(self.batch_norm))
        if self.pooled_blocks is not None:
            _check_int("pooled_blocks", self.pooled_blocks, 0, self.conv_blocks)
        if self.backbone is not None:
            from cnnviz.pretrained import BACKBONE_SIZES, BACKBONES

            _check_choice("backbone", self.backbone, tuple(BACKBONES))
            if self.backbone_weights not in ("imagenet", None):
                raise ConfigError(
                    f"backbone_weights must be 'imagenet' or None, got {self.backbone_weights!r}."
                )
            if self.backbone_size is not None and self.backbone_size not in BACKBONE_SIZES:
                raise ConfigError(
                    f"backbone_size must be one of {', '.join(map(str, BACKBONE_SIZES))} or None, "
                    f"got {self.backbone_size!r}."
                )
            _check_int("fine_tune_layers", self.fine_tune_layers, 0, 1000)
            return  # the conv block fields do not apply
        # The spatial size must survive every block.
        height, width = shape[:2]
        height, width = -(-height // self.stem_stride), -(-width // self.stem_stride)
        for block in range(1, self.conv_blocks + 1):
            for _ in range(self.convs_per_block):
                if self.padding == "valid":
                    height, width = height - self.kernel_size + 1, width - self.kernel_size + 1
            if self.pools_after(block):
                height, width = height // 2, width // 2
            if height < 1 or width < 1:
                raise ConfigError(
                    f"{self.conv_blocks} conv blocks shrink a {shape[0]}x{shape[1]} image to nothing; "
                    "use fewer blocks, 'same' padding or larger images."
                )

    def pools_after(self, block: int) -> bool:
        """Whether 1-based `block` ends in max pooling."""
        return self.pooled_blocks is None or block <= self.pooled_blocks

    def block_filters(self, block: int) -> int:
        """Channels of the convolutions in 1-based `block`."""
        return min(self.filters * 2 ** (block - 1), self.max_filters)

    def replace(self, **changes: Any) -> ModelConfig:
        """Returns a copy with `changes` applied (and validated)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["input_shape"] = list(self.input_shape)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown ModelConfig fields: {sorted(unknown)}.")
        values = dict(data)
        if "input_shape" in values:
            values["input_shape"] = tuple(values["input_shape"])
        return cls(**values)


def _check_int(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{name} must be a whole number from {low} to {high}, got {value!r}.")


def _check_float(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ConfigError(f"{name} must be a number in [0, 1), got {value!r}.")


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}.")


#: Named starting points. Each is a function of the data's shape and classes.
PRESETS: dict[str, dict[str, Any]] = {
    # The tutorial's CIFAR-10 net: Conv32-Conv32-Pool-Drop.25-Conv64-Conv64-
    # Pool-Drop.25-Dense256-Drop.5-Dense (477,994 parameters at 32x32x3).
    "tutorial_basic": dict(
        conv_blocks=2,
        filters=32,
        convs_per_block=2,
        padding="valid",
        batch_norm=False,
        block_dropout=0.25,
        head="flatten",
        dense_units=256,
        dense_dropout=0.5,
    ),
    # The tutorial's "improving your model" direction: deeper, batch norm,
    # same padding, more dropout further in.
    "tutorial_improved": dict(
        conv_blocks=3,
        filters=32,
        convs_per_block=2,
        padding="same",
        batch_norm=True,
        block_dropout=0.25,
        head="flatten",
        dense_units=256,
        dense_dropout=0.5,
    ),
    # keras.io "Simple MNIST convnet": Conv32-Pool-Conv64-Pool-Flatten-Drop.5-
    # Dense (34,826 parameters at 28x28x1).
    "keras_mnist": dict(
        conv_blocks=2,
        filters=32,
        convs_per_block=1,
        padding="valid",
        batch_norm=False,
        head="flatten",
        dense_units=0,
        dense_dropout=0.5,
    ),
    # Tuned for accuracy per second on a 2-core CPU: batch norm lets a high
    # learning rate converge in few epochs; global average pooling keeps the
    # head tiny; images of 48 px and more start with a stride-2 convolution
    # (a quarter of the cost, measured 98% on shapes in 30 s vs 50% without).
    "fast": dict(
        conv_blocks=4,
        filters=16,
        convs_per_block=1,
        padding="same",
        batch_norm=True,
        head="global_avg",
        dense_units=0,
        dense_dropout=0.0,
    ),
    # The tutorial's last step, transfer learning: ImageNet features from a
    # pretrained network under a new classifier head; only the head trains.
    "transfer_mobilenet_v2": dict(backbone="mobilenet_v2", dense_dropout=0.2),
    "transfer_efficientnet_b0": dict(backbone="efficientnet_b0", dense_dropout=0.2),
}

DEFAULT_PRESET = "fast"


def preset_config(
    name: str = DEFAULT_PRESET,
    input_shape: tuple[int, int, int] = (64, 64, 3),
    num_classes: int = 4,
    **overrides: Any,
) -> ModelConfig:
    """Returns the `ModelConfig` of preset `name` for the given data.

    Args:
        name: one of `PRESETS`. Defaults to `"fast"`.
        input_shape: `(height, width, channels)` of the images.
        num_classes: int, number of classes.
        **overrides: `ModelConfig` fields to change.

    Raises:
        ConfigError: unknown preset or bad field values.
    """
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}.")
    values = dict(PRESETS[name], input_shape=tuple(input_shape), num_classes=int(num_classes), name=name)
    if name == "fast" and min(input_shape[:2]) >= 48:
        values["stem_stride"] = 2
    values.update(overrides)
    if name == "fast" and "pooled_blocks" not in overrides:
        # The last block keeps its map (pooling a 4x4 map to 2x2 only loses detail).
        values["pooled_blocks"] = values["conv_blocks"] - 1
    return ModelConfig(**values)


def build_model(config: ModelConfig | None = None, **overrides: Any):
    """Builds the Functional Keras model that `config` describes.

    Args:
        config: a `ModelConfig`; defaults to `ModelConfig()` (the `fast` design).
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
    from keras import layers

    config = config or ModelConfig()
    if overrides:
        config = config.replace(**overrides)
    activation = config.activation
    inputs = keras.Input(shape=config.input_shape, name="image")
    if config.backbone is not None:
        return _build_transfer_model(config, inputs)
    x = layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    conv_index = 0
    for block in range(1, config.conv_blocks + 1):
        for _ in range(config.convs_per_block):
            conv_index += 1
            conv = layers.Conv2D(
                config.block_filters(block),
                config.kernel_size,
                strides=config.stem_stride if conv_index == 1 else 1,
                padding=config.padding,
                activation=None if config.batch_norm else activation,
                use_bias=not config.batch_norm,
                name=f"conv{conv_index}",
            )
            x = conv(x)
            if config.batch_norm:
                # Momentum 0.9, not 0.99: short runs need the inference
                # statistics to catch up within a few hundred steps.
                x = layers.BatchNormalization(momentum=0.9, name=f"bn{conv_index}")(x)
                x = layers.Activation(activation, name=f"act{conv_index}")(x)
        if config.pools_after(block):
            x = layers.MaxPooling2D(2, name=f"pool{block}")(x)
        if config.block_dropout > 0:
            x = layers.Dropout(config.block_dropout, name=f"drop{block}")(x)
    if config.head == "flatten":
        x = layers.Flatten(name="flatten")(x)
    else:
        x = layers.GlobalAveragePooling2D(name="global_pool")(x)
    if config.dense_units:
        x = layers.Dense(config.dense_units, activation=activation, name="dense")(x)
    if config.dense_dropout > 0:
        x = layers.Dropout(config.dense_dropout, name="drop_dense")(x)
    logits = layers.Dense(config.num_classes, name="logits", dtype="float32")(x)
    probs = layers.Activation("softmax", name="probs", dtype="float32")(logits)
    return keras.Model(inputs, probs, name=config.name)


def _build_transfer_model(config: ModelConfig, inputs):
    """A pretrained backbone, flat in the graph, under a new classifier head."""
    import keras
    from keras import layers

    from cnnviz.pretrained import attach_backbone, backbone_size, freeze_backbone

    size = backbone_size(max(config.input_shape[:2]), config.backbone_size)
    features, backbone_layers = attach_backbone(inputs, config.backbone, config.backbone_weights, size)
    x = layers.GlobalAveragePooling2D(name="global_pool")(features)
    if config.dense_units:
        x = layers.Dense(config.dense_units, activation=config.activation, name="dense")(x)
    if config.dense_dropout > 0:
        x = layers.Dropout(config.dense_dropout, name="drop_dense")(x)
    logits = layers.Dense(config.num_classes, name="logits", dtype="float32")(x)
    probs = layers.Activation("softmax", name="probs", dtype="float32")(logits)
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
    for layer in _walk_layers(model):
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


def _walk_layers(model):
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _walk_layers(layer)
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
