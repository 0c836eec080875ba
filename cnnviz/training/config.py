"""How to train (`TrainConfig`) and what training returns (`TrainResult`).

Importing this module loads neither TensorFlow nor Keras: the CLI builds its
flags from `TrainConfig`'s fields before TensorFlow starts.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from cnnviz.errors import ConfigError
from cnnviz.models import MANY_IMAGES, SMALL_IMAGE_PX, many_small_images

OPTIMIZERS = ("muon", "adam", "adamw", "sgd", "rmsprop")
#: Each optimizer's peak learning rate when `TrainConfig.learning_rate` is `None`: Muon's and Adam's tuned on
#: the `fast` design (docs/BENCHMARKS.md, "Faster to a good model"), SGD's and RMSprop's the `cnnviz.compare`
#: variants' since they were written, AdamW's Adam's.
DEFAULT_LEARNING_RATES = {"muon": 0.02, "adam": 0.01, "adamw": 0.01, "sgd": 0.05, "rmsprop": 0.001}
#: The default rates as words, for help texts: "muon 0.02, adam 0.01, ...".
DEFAULT_LEARNING_RATES_TEXT = ", ".join(f"{name} {rate:g}" for name, rate in DEFAULT_LEARNING_RATES.items())
#: Images per batch when `TrainConfig.batch_size` is `None`: `MANY_SMALL_BATCH` for many small images
#: (`cnnviz.models.many_small_images`: each step is cheap, and a larger batch keeps the cores busy), else
#: `DEFAULT_BATCH` (a small set keeps enough steps per epoch).
DEFAULT_BATCH = 32
MANY_SMALL_BATCH = 64
#: The default batch as words, for help texts.
DEFAULT_BATCH_TEXT = (
    f"{MANY_SMALL_BATCH} for {MANY_IMAGES:,} or more training images whose shorter side is under "
    f"{SMALL_IMAGE_PX} px, else {DEFAULT_BATCH}"
)
SCHEDULES = ("cosine", "constant")
PRECISIONS = ("auto", "float32", "bfloat16")
FLIPS = ("none", "horizontal", "vertical", "both")
AUGMENTATION_FIELDS = ("flip", "rotate", "zoom", "translate", "contrast", "noise", "texture")
#: The augmentation fields that are amounts, shares in [0, 1), 0 for off.
AUGMENTATION_AMOUNTS = tuple(name for name in AUGMENTATION_FIELDS if name != "flip")

#: Light augmentation that is safe for every kind of data (no flips: digits and
#: text must not be mirrored). What "augment" means when nothing else is chosen.
DEFAULT_AUGMENTATION: dict[str, Any] = {"translate": 0.06}
#: When the front ends augment if nobody said (the CLI without `--augment` / `--no-augment`, the studio's
#: "Augment: auto"), as words for help texts: `default_augmentation`.
AUTO_AUGMENT_TEXT = f"on for {MANY_IMAGES:,} or more training images whose shorter side is under {SMALL_IMAGE_PX} px, else off"


def default_augmentation(image_shape, num_images: int | None) -> dict[str, Any]:
    """The augmentation to use when nobody chose: `DEFAULT_AUGMENTATION` for many small images
    (`cnnviz.models.many_small_images`), else none. On 8,000 real digits they added 0.2 points in 30 s
    (99.47 % against 99.27 %); on 4,200 shapes at 64 px, 3 epochs scored 97.6 % with them against 98.0 %
    without (docs/BENCHMARKS.md)."""
    return dict(DEFAULT_AUGMENTATION) if many_small_images(image_shape, num_images) else {}


def _knob(default: Any, help: str, **metadata: Any) -> Any:
    """A `TrainConfig` field; `help` (and `choices`, `metavar`) also make its CLI flag."""
    return dataclasses.field(default=default, metadata={"help": help, **metadata})


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How to train; each field is one slider or select in the studio and one flag of the CLI.

    Attributes:
        optimizer: one of `OPTIMIZERS`. `"muon"` is Keras' Muon extended to
            convolution kernels (`cnnviz.training.optimizers.ConvMuon`).
            Defaults to `"muon"`.
        learning_rate: float, peak learning rate, or `None` for the
            optimizer's own (`DEFAULT_LEARNING_RATES`: Muon 0.02, Adam 0.01, ...);
            `peak_learning_rate` says which. Defaults to `None`.
        schedule: `"cosine"` (warm up, then anneal to ~0 over the epochs or the
            time budget) or `"constant"`. Defaults to `"cosine"`.
        batch_size: int, images per batch, or `None` for `batch_size_for` the
            data: 64 for many small images (`cnnviz.models.many_small_images`),
            else 32. Defaults to `None`.
        epochs: int, most epochs to run, or `None` to run until the time budget
            is spent (then `time_budget` is required). With both, training stops
            at whichever comes first. Defaults to `10`.
        time_budget: float seconds or `None`. When spent, training stops and
            the best weights seen are kept.
        validation_split: float, fraction of the training split held out when
            the data has no validation split. Defaults to `0.1`.
        flip: `"none"`, `"horizontal"`, `"vertical"` or `"both"`. Defaults to `"none"`.
        rotate: float, max rotation as a fraction of a full turn. Defaults to `0.0`.
        zoom: float, max zoom in / out fraction. Defaults to `0.0`.
        translate: float, max shift as a fraction of the image side. Defaults to `0.0`.
        contrast: float, max contrast change fraction. Defaults to `0.0`.
        noise: float, max standard deviation of Gaussian pixel noise, as a
            fraction of 255; each image draws its own between 0 and this.
            Defaults to `0.0`.
        texture: float, most strength of a random stripe or checkerboard
            pattern laid over 70 % of the images (random angle, period of 3 to
            14 pixels and colour), as a fraction of 255; each image draws its own
            strength between 0 and this. Teaches the network that a busy
            background is not part of the object. Defaults to `0.0`.
        early_stopping: int, epochs without validation improvement before
            stopping; 0 turns it off. Defaults to `0`.
        seed: int, the run's seed: weight initialization, dropout, shuffling,
            augmentation and, for built-in data the CLI loads, the split.
            Nothing outside the run is reseeded. Defaults to `0`.
        precision: `"auto"`, `"float32"` or `"bfloat16"`. Defaults to `"auto"`.
        timeline: int, how many validation images (spread over the classes;
            training images when there is no validation split) to record
            before training and after every epoch; 0 turns the timeline off
            (`cnnviz.timeline`). Defaults to `0`.
    """

    optimizer: str = _knob(
        "muon", "muon: momentum steps orthogonalized per convolution kernel", choices=OPTIMIZERS
    )
    learning_rate: float | None = _knob(
        None, f"peak learning rate (default: the optimizer's, {DEFAULT_LEARNING_RATES_TEXT})"
    )
    schedule: str = _knob(
        "cosine", "cosine: warm up, then anneal over the epochs or the budget", choices=SCHEDULES
    )
    batch_size: int | None = _knob(None, f"images per batch (default: {DEFAULT_BATCH_TEXT})")
    epochs: int | None = _knob(10, "most epochs (default 10; with a time budget: until it is spent)")
    time_budget: float | None = _knob(
        None, "stop after this many seconds, keeping the best weights", metavar="SECONDS"
    )
    validation_split: float = _knob(0.1, "share of the training images held out when the data has none")
    flip: str = _knob("none", "augmentation: random flips", choices=FLIPS)
    rotate: float = _knob(0.0, "augmentation: most rotation, as a share of a full turn")
    zoom: float = _knob(0.0, "augmentation: most zoom in or out, as a share")
    translate: float = _knob(0.0, "augmentation: most shift, as a share of the side")
    contrast: float = _knob(0.0, "augmentation: most contrast change, as a share")
    noise: float = _knob(0.0, "augmentation: most pixel noise (standard deviation), as a share of 255")
    texture: float = _knob(
        0.0, "augmentation: most strength of random stripes or checkerboards, as a share of 255"
    )
    early_stopping: int = _knob(0, "epochs without improvement before stopping (0: off)")
    seed: int = _knob(0, "the run's seed (and the split seed of built-in data)")
    precision: str = _knob("auto", "auto: bfloat16 where the hardware has it", choices=PRECISIONS)
    timeline: int = _knob(
        0, "probe images recorded before training and after every epoch (0: off)", metavar="K"
    )

    def __post_init__(self):
        for name, choices in (
            ("optimizer", OPTIMIZERS),
            ("schedule", SCHEDULES),
            ("precision", PRECISIONS),
            ("flip", FLIPS),
        ):
            if getattr(self, name) not in choices:
                raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {getattr(self, name)!r}.")
        if self.learning_rate is not None and (
            not _is_number(self.learning_rate) or not 0 < self.learning_rate <= 100
        ):
            raise ConfigError(f"learning_rate must be a number in (0, 100], got {self.learning_rate!r}.")
        for name, low, high in (("early_stopping", 0, 1000), ("timeline", 0, 64)):
            _check_whole(name, getattr(self, name), low, high)
        if self.batch_size is not None:
            _check_whole("batch_size", self.batch_size, 1, 65536)
        if self.epochs is not None:
            _check_whole("epochs", self.epochs, 1, 100000)
        if self.time_budget is not None and (
            not _is_number(self.time_budget) or not 0 < self.time_budget <= 7 * 24 * 3600
        ):
            raise ConfigError(f"time_budget must be a positive number of seconds, got {self.time_budget!r}.")
        if self.epochs is None and self.time_budget is None:
            raise ConfigError("epochs=None runs until the time budget is spent; give a time_budget too.")
        _check_whole("seed", self.seed, 0, 2**32 - 1)
        for name in ("validation_split", *AUGMENTATION_AMOUNTS):
            value = getattr(self, name)
            if not _is_number(value) or not 0 <= value < 1:
                raise ConfigError(f"{name} must be a number in [0, 1), got {value!r}.")

    @property
    def peak_learning_rate(self) -> float:
        """`learning_rate`, or the optimizer's default when it is `None`."""
        return DEFAULT_LEARNING_RATES[self.optimizer] if self.learning_rate is None else self.learning_rate

    def batch_size_for(self, image_shape, num_images: int | None) -> int:
        """`batch_size`, or when it is `None` the default for `num_images` training images of `image_shape`:
        `MANY_SMALL_BATCH` for many small ones (`cnnviz.models.many_small_images`), else `DEFAULT_BATCH`."""
        if self.batch_size is not None:
            return self.batch_size
        return MANY_SMALL_BATCH if many_small_images(image_shape, num_images) else DEFAULT_BATCH

    @property
    def augments(self) -> bool:
        """Whether any augmentation is on."""
        return self.flip != "none" or any(getattr(self, name) for name in AUGMENTATION_AMOUNTS)

    def replace(self, **changes: Any) -> TrainConfig:
        """Returns a copy with `changes` applied (and validated)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def _check_whole(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{name} must be a whole number from {low} to {high}, got {value!r}.")


@dataclasses.dataclass
class TrainResult:
    """What `train` returns.

    Attributes:
        model: the trained model, always a new one (float32, with class names
            and the metadata given to `train` attached).
        history: dict of metric name -> list of per-epoch values.
        epochs: completed epochs (a partly run last epoch counts as one).
        train_seconds: wall time spent in `fit`.
        samples_seen: training samples processed.
        samples_per_second: `samples_seen / train_seconds`.
        stop_reason: `"completed"`, `"time_budget"`, `"early_stopping"`,
            `"stopped"` (stop requested), `"unwatched"` (nobody watched the run
            any more) or `"nan"`.
        message: a sentence for people about how training ended.
        val_accuracy: validation accuracy of the returned weights, or `None`.
        precision: the precision actually used, `"float32"` or `"bfloat16"`.
        config: the `TrainConfig` of the run, with the batch size it used.
        design: the name of the model design that was trained.
        timeline: the `cnnviz.timeline.Snapshot`s (epoch 0, then every
            epoch) when `config.timeline` is on, else `None`.
        kept_epoch: the 1-based epoch whose weights `model` holds: the best
            on validation when those came back, else the last one run (after
            a NaN, the last good one; 0 for the initial weights).
    """

    model: Any
    history: dict[str, list[float]]
    epochs: int
    train_seconds: float
    samples_seen: int
    samples_per_second: float
    stop_reason: str
    message: str
    val_accuracy: float | None
    precision: str
    config: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    design: str = ""
    timeline: list | None = None
    kept_epoch: int | None = None

    @property
    def kept_best(self) -> bool:
        """Whether `model` holds an earlier epoch's weights because it was the best on validation."""
        return self.stop_reason != "nan" and self.kept_epoch is not None and self.kept_epoch < self.epochs

    def summary(self) -> dict[str, Any]:
        """One row for a table of runs."""
        return {
            "design": self.design,
            "epochs": self.epochs,
            "kept epoch": self.kept_epoch,
            "learning rate": self.config.peak_learning_rate,
            "batch": self.config.batch_size,
            "augmented": self.config.augments,
            "validation accuracy": self.val_accuracy,
            "seconds": round(self.train_seconds, 1),
            "ended": self.stop_reason,
        }
