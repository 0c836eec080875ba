"""Fast, safe training: time budgets, live events, cooperative stop, NaN guard.

`train(model, data, config)` wraps `model.fit` with what a UI and a CLI need:

- an event stream (`on_event`) with batch progress and epoch metrics,
- a cooperative stop (`stop_event.set()` stops within one batch),
- a time budget with a learning-rate schedule that anneals over the budget,
  keeping the best weights seen,
- a NaN / inf guard that stops and restores the last good weights,
- atomic checkpoints at every epoch end,
- precision `auto`: mixed bfloat16 where the CPU has native bfloat16 (or on a
  GPU), float32 elsewhere. Never XLA on the CPU (7x slower there).
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from cnnviz.errors import ConfigError

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULES = ("cosine", "constant")
PRECISIONS = ("auto", "float32", "bfloat16")
FLIPS = ("none", "horizontal", "vertical", "both")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How to train; each field is one slider or select.

    Attributes:
        optimizer: one of `OPTIMIZERS`. Defaults to `"adam"`.
        learning_rate: float, peak learning rate. Defaults to `0.01`.
        schedule: `"cosine"` (warm up, then anneal to ~0 over the epochs or the
            time budget) or `"constant"`. Defaults to `"cosine"`.
        batch_size: int. Defaults to `32`.
        epochs: int, most epochs to run. Defaults to `10`; with a time budget,
            training stops at whichever comes first.
        time_budget: float seconds or `None`. When spent, training stops and
            the best weights seen are kept.
        validation_split: float, fraction of the training split held out when
            the data has no validation split. Defaults to `0.1`.
        flip: `"none"`, `"horizontal"`, `"vertical"` or `"both"`. Defaults to `"none"`.
        rotate: float, max rotation as a fraction of a full turn. Defaults to `0.0`.
        zoom: float, max zoom in / out fraction. Defaults to `0.0`.
        translate: float, max shift as a fraction of the image side. Defaults to `0.0`.
        contrast: float, max contrast change fraction. Defaults to `0.0`.
        early_stopping: int, epochs without validation improvement before
            stopping; 0 turns it off. Defaults to `0`.
        seed: int. Defaults to `0`.
        precision: `"auto"`, `"float32"` or `"bfloat16"`. Defaults to `"auto"`.
    """

    optimizer: str = "adam"
    learning_rate: float = 0.01
    schedule: str = "cosine"
    batch_size: int = 32
    epochs: int = 10
    time_budget: float | None = None
    validation_split: float = 0.1
    flip: str = "none"
    rotate: float = 0.0
    zoom: float = 0.0
    translate: float = 0.0
    contrast: float = 0.0
    early_stopping: int = 0
    seed: int = 0
    precision: str = "auto"

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}.")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}.")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}.")
        if self.flip not in FLIPS:
            raise ConfigError(f"flip must be one of {', '.join(FLIPS)}, got {self.flip!r}.")
        if not _is_number(self.learning_rate) or not 0 < self.learning_rate <= 100:
            raise ConfigError(f"learning_rate must be a number in (0, 100], got {self.learning_rate!r}.")
        for name, low, high in (("batch_size", 1, 65536), ("epochs", 1, 100000), ("early_stopping", 0, 1000)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ConfigError(f"{name} must be a whole number from {low} to {high}, got {value!r}.")
        if self.time_budget is not None and (
            not _is_number(self.time_budget) or not 0 < self.time_budget <= 7 * 24 * 3600
        ):
            raise ConfigError(f"time_budget must be a positive number of seconds, got {self.time_budget!r}.")
        for name in ("validation_split", "rotate", "zoom", "translate", "contrast"):
            value = getattr(self, name)
            if not _is_number(value) or not 0 <= value < 1:
                raise ConfigError(f"{name} must be a number in [0, 1), got {value!r}.")

    @property
    def augments(self) -> bool:
        return self.flip != "none" or any((self.rotate, self.zoom, self.translate, self.contrast))

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


@dataclasses.dataclass
class TrainResult:
    """What `train` returns.

    Attributes:
        model: the trained model (float32, with class names attached).
        history: dict of metric name -> list of per-epoch values.
        epochs: completed epochs (a partly run last epoch counts as one).
        train_seconds: wall time spent in `fit`.
        samples_seen: training samples processed.
        samples_per_second: `samples_seen / train_seconds`.
        stop_reason: `"completed"`, `"time_budget"`, `"early_stopping"`,
            `"stopped"` (stop requested) or `"nan"`.
        message: a sentence for people about how training ended.
        val_accuracy: validation accuracy of the returned weights, or `None`.
        precision: the precision actually used, `"float32"` or `"bfloat16"`.
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


def cpu_has_native_bfloat16(cpuinfo: str | None = None) -> bool:
    """Whether the CPU computes bfloat16 natively (AVX512_BF16 or AMX).

    Args:
        cpuinfo: text of /proc/cpuinfo; read from the system when `None`.
    """
    if cpuinfo is None:
        cpuinfo = _read_cpuinfo()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return bool({"avx512_bf16", "amx_bf16"} & set(line.split(":", 1)[1].split()))
    return False


@lru_cache(maxsize=1)
def _read_cpuinfo() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            return handle.read()
    except OSError:
        return ""


def resolve_precision(precision: str = "auto") -> str:
    """`"bfloat16"` or `"float32"`: what `precision="auto"` means on this machine.

    Mixed bfloat16 pays off only with hardware support: on a CPU with
    AVX512_BF16 / AMX it trains ~1.85x faster, but on an AVX2-only CPU it
    was measured 8x *slower* than float32, so auto picks float32 there.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}.")
    if precision != "auto":
        return precision
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        return "bfloat16"
    return "bfloat16" if cpu_has_native_bfloat16() else "float32"


def make_augmentation(config: TrainConfig, seed: int = 0):
    """The augmentation pipeline as a `keras.Sequential` of preprocessing layers.

    Returns `None` when the config asks for no augmentation. The layers work on
    0..255 float images, in a tf.data pipeline or on a numpy batch (previews).
    """
    import keras
    from keras import layers

    steps = []
    if config.flip != "none":
        mode = {"horizontal": "horizontal", "vertical": "vertical", "both": "horizontal_and_vertical"}
        steps.append(layers.RandomFlip(mode[config.flip], seed=seed, name="flip"))
    if config.rotate:
        steps.append(layers.RandomRotation(config.rotate, fill_mode="nearest", seed=seed + 1, name="rotate"))
    if config.zoom:
        steps.append(layers.RandomZoom(config.zoom, fill_mode="nearest", seed=seed + 2, name="zoom"))
    if config.translate:
        steps.append(
            layers.RandomTranslation(
                config.translate, config.translate, fill_mode="nearest", seed=seed + 3, name="translate"
            )
        )
    if config.contrast:
        steps.append(
            layers.RandomContrast(config.contrast, value_range=(0, 255), seed=seed + 4, name="contrast")
        )
    if not steps:
        return None
    return keras.Sequential(steps, name="augmentation")


def augment_preview(images: np.ndarray, config: TrainConfig, seed: int = 0) -> np.ndarray:
    """Applies the augmentation of `config` to a uint8 batch, for previews.

    Returns:
        uint8 array of the same shape as `images`.
    """
    augmentation = make_augmentation(config, seed)
    if augmentation is None:
        return np.asarray(images, dtype=np.uint8).copy()
    result = augmentation(np.asarray(images, dtype=np.float32), training=True)
    return np.clip(np.rint(np.asarray(result)), 0, 255).astype(np.uint8)


def _make_dataset(images, labels, batch_size, shuffle, seed, augmentation):
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((images, labels))
    if shuffle:
        dataset = dataset.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    # Images stay uint8 until here: a quarter of the memory traffic of float32.
    dataset = dataset.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=tf.data.AUTOTUNE)
    if augmentation is not None:
        dataset = dataset.map(
            lambda x, y: (augmentation(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE
        )
    return dataset.prefetch(tf.data.AUTOTUNE)


def _make_optimizer(config: TrainConfig):
    import keras

    rate = config.learning_rate
    if config.optimizer == "adam":
        return keras.optimizers.Adam(rate)
    if config.optimizer == "adamw":
        return keras.optimizers.AdamW(rate, weight_decay=1e-4)
    if config.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(rate)
    return keras.optimizers.SGD(rate, momentum=0.9, nesterov=True)


def _event_callback_class():
    import keras

    class TrainingControl(keras.callbacks.Callback):
        """Schedule, time budget, stop request, NaN guard, best weights, events.

        One callback so the order of these checks is explicit.
        """

        def __init__(self, trainer: _Trainer):
            super().__init__()
            self.trainer = trainer

        def on_train_begin(self, logs=None):
            self.trainer.on_train_begin(self.model)

        def on_train_batch_begin(self, batch, logs=None):
            self.trainer.on_batch_begin(self.model, batch)

        def on_train_batch_end(self, batch, logs=None):
            self.trainer.on_batch_end(self.model, batch, logs or {})

        def on_epoch_end(self, epoch, logs=None):
            self.trainer.on_epoch_end(self.model, epoch, logs or {})

    return TrainingControl


class _Trainer:
    """State shared by the training callback; lives for one `train` call."""

    def __init__(self, config, steps_per_epoch, batch_size, has_validation, on_event, stop_event, checkpoint):
        self.config = config
        self.steps_per_epoch = steps_per_epoch
        self.batch_size = batch_size
        self.has_validation = has_validation
        self.on_event = on_event
        self.stop_event = stop_event
        self.checkpoint = checkpoint
        self.total_steps = steps_per_epoch * config.epochs
        self.warmup_steps = min(steps_per_epoch, max(1, self.total_steps // 20))
        self.stop_reason = "completed"
        self.message = ""
        self.steps_done = 0
        self.epochs_started = 0
        self.epochs_done = 0
        self.best_score = -math.inf
        self.best_weights = None
        self.good_weights = None
        self.history: dict[str, list[float]] = {}
        self.last_batch_event = 0.0
        self.since_improvement = 0

    def _emit(self, **event):
        if self.on_event is not None:
            self.on_event(event)

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def on_train_begin(self, model):
        self.start = time.perf_counter()
        self.good_weights = model.get_weights()
        self._emit(
            event="train_begin",
            epochs=self.config.epochs,
            steps_per_epoch=self.steps_per_epoch,
            time_budget=self.config.time_budget,
        )

    def progress(self) -> float:
        fraction = self.steps_done / max(1, self.total_steps)
        if self.config.time_budget:
            fraction = max(fraction, self.elapsed() / self.config.time_budget)
        return min(fraction, 1.0)

    def on_batch_begin(self, model, batch):
        if batch == 0:
            self.epochs_started += 1
        if self.config.schedule == "cosine":
            peak = self.config.learning_rate
            if self.steps_done < self.warmup_steps:
                rate = peak * (self.steps_done + 1) / self.warmup_steps
            else:
                rate = peak * 0.5 * (1 + math.cos(math.pi * self.progress()))
            model.optimizer.learning_rate.assign(max(rate, peak * 1e-3))

    def on_batch_end(self, model, batch, logs):
        self.steps_done += 1
        loss = logs.get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            model.set_weights(self.good_weights)
            model.stop_training = True
            self.stop_reason = "nan"
            self.message = (
                f"Training stopped: the loss became {float(loss)} in epoch {self.epochs_started}. "
                "The last good weights were restored; try a lower learning rate."
            )
            return
        if self.stop_event is not None and self.stop_event.is_set():
            model.stop_training = True
            self.stop_reason = "stopped"
            self.message = f"Training stopped on request in epoch {self.epochs_started}."
        elif self.config.time_budget and self.elapsed() >= self.config.time_budget:
            model.stop_training = True
            self.stop_reason = "time_budget"
            self.message = (
                f"Time budget of {self.config.time_budget:g} s spent in epoch {self.epochs_started}."
            )
        now = time.perf_counter()
        if self.on_event is not None and (now - self.last_batch_event >= 0.2 or model.stop_training):
            self.last_batch_event = now
            self._emit(
                event="batch_end",
                epoch=self.epochs_started,
                batch=batch + 1,
                steps=self.steps_per_epoch,
                progress=self.progress() if self.config.time_budget else None,
                elapsed=self.elapsed(),
                metrics={key: float(value) for key, value in logs.items()},
            )

    def on_epoch_end(self, model, epoch, logs):
        if self.stop_reason == "nan":
            return
        metrics = {key: float(value) for key, value in logs.items()}
        if not all(math.isfinite(value) for key, value in metrics.items() if "loss" in key):
            model.set_weights(self.good_weights)
            model.stop_training = True
            self.stop_reason = "nan"
            self.message = (
                f"Training stopped: the loss became NaN in epoch {epoch + 1}. "
                "The last good weights were restored; try a lower learning rate."
            )
            return
        for key, value in metrics.items():
            self.history.setdefault(key, []).append(value)
        self.epochs_done = epoch + 1
        self.good_weights = model.get_weights()
        score = metrics.get("val_accuracy" if self.has_validation else "accuracy", -math.inf)
        if score > self.best_score:
            self.best_score = score
            self.best_weights = self.good_weights
            self.since_improvement = 0
        else:
            self.since_improvement += 1
        if self.checkpoint is not None:
            self.checkpoint(model)
        if (
            self.config.early_stopping
            and self.since_improvement >= self.config.early_stopping
            and not model.stop_training
        ):
            model.stop_training = True
            self.stop_reason = "early_stopping"
            self.message = (
                f"Early stopping: no improvement for {self.config.early_stopping} epochs (epoch {epoch + 1})."
            )
        self._emit(event="epoch_end", epoch=epoch + 1, metrics=metrics, elapsed=self.elapsed())


class _ArraySource:
    """Training data held in memory: `(images, labels)` arrays or a `Dataset`."""

    streamed = False

    def __init__(self, images, labels, val_images, val_labels, class_names, config: TrainConfig):
        if images.ndim == 3:
            images = images[..., None]
        if images.ndim != 4 or len(images) != len(labels) or len(images) == 0:
            raise ConfigError(
                f"expected images (N, H, W, C) and N labels, got {images.shape} and {labels.shape}."
            )
        if labels.min() < 0:
            raise ConfigError("labels must be class indices 0, 1, 2, ...")
        if val_images is None and config.validation_split > 0 and len(labels) >= 10:
            from cnnviz.data import _stratified_split

            train_index, val_index = _stratified_split(labels, (config.validation_split,), config.seed)
            images, val_images = images[train_index], images[val_index]
            labels, val_labels = labels[train_index], labels[val_index]
        self.images, self.labels = images, labels
        self.val_images, self.val_labels = val_images, val_labels
        self.class_names = class_names
        self.num_classes = int(labels.max()) + 1 if class_names is None else len(class_names)
        self.num_train = len(labels)
        self.image_shape = tuple(images.shape[1:])
        self.has_validation = val_images is not None and len(val_images) > 0

    def train_dataset(self, batch_size, seed, augmentation):
        return _make_dataset(self.images, self.labels, batch_size, True, seed, augmentation)

    def val_dataset(self, batch_size):
        return _make_dataset(self.val_images, self.val_labels, batch_size, False, 0, None)

    def val_accuracy(self, model) -> float:
        return _accuracy(model, self.val_images, self.val_labels)


class _StreamSource:
    """Training data streamed from disk batch by batch (`cnnviz.ImageStream`)."""

    streamed = True

    def __init__(self, stream):
        self.stream = stream
        self.class_names = stream.class_names
        self.num_classes = stream.num_classes
        self.num_train = len(stream.train)
        self.image_shape = stream.image_shape
        self.has_validation = len(stream.validation) > 0
        if self.num_train == 0:
            raise ConfigError(f"{stream.name}: no training images.")

    def _floats(self, dataset, augmentation=None):
        import tensorflow as tf

        dataset = dataset.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=tf.data.AUTOTUNE)
        if augmentation is not None:
            dataset = dataset.map(
                lambda x, y: (augmentation(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE
            )
        return dataset.prefetch(tf.data.AUTOTUNE)

    def train_dataset(self, batch_size, seed, augmentation):
        return self._floats(self.stream.dataset("train", batch_size, shuffle=True, seed=seed), augmentation)

    def val_dataset(self, batch_size):
        return self._floats(self.stream.dataset("validation", batch_size))

    def val_accuracy(self, model) -> float:
        correct = total = 0
        for images, labels in self.val_dataset(256):
            predicted = np.asarray(model(images, training=False)).argmax(axis=1)
            correct += int(np.sum(predicted == labels.numpy()))
            total += len(predicted)
        return correct / max(total, 1)


def _as_source(data, config: TrainConfig):
    """Accepts a Dataset, an ImageStream, or `(images, labels[, val_images, val_labels])`."""
    from cnnviz.data import Dataset
    from cnnviz.streaming import ImageStream

    if isinstance(data, ImageStream):
        return _StreamSource(data)
    if isinstance(data, Dataset):
        validation = data.validation if len(data.validation) else None
        return _ArraySource(
            data.train.images,
            data.train.labels,
            None if validation is None else validation.images,
            None if validation is None else validation.labels,
            data.class_names,
            config,
        )
    if isinstance(data, (tuple, list)) and len(data) in (2, 4):
        images = np.asarray(data[0])
        labels = np.asarray(data[1]).reshape(-1)
        val_images = np.asarray(data[2]) if len(data) == 4 else None
        val_labels = np.asarray(data[3]).reshape(-1) if len(data) == 4 else None
        return _ArraySource(images, labels, val_images, val_labels, None, config)
    raise ConfigError("data must be a cnnviz Dataset, an ImageStream or a tuple (images, labels).")


def _rebuild_float32(model):
    """A float32 copy of a mixed-precision model, with the same weights."""
    import keras

    config = model.get_config()

    def strip(node):
        if isinstance(node, dict):
            return {
                key: ("float32" if key == "dtype" and _is_mixed_policy(value) else strip(value))
                for key, value in node.items()
            }
        if isinstance(node, list):
            return [strip(item) for item in node]
        return node

    rebuilt = keras.Model.from_config(strip(config))
    rebuilt.set_weights(model.get_weights())
    return rebuilt


def _is_mixed_policy(value) -> bool:
    if isinstance(value, str):
        return value.startswith("mixed_")
    if isinstance(value, dict):
        name = value.get("config", {}).get("name", "")
        return isinstance(name, str) and name.startswith("mixed_")
    return False


def train(
    model,
    data,
    config: TrainConfig | None = None,
    *,
    callbacks: Sequence[Any] = (),
    on_event: Callable[[dict[str, Any]], None] | None = None,
    stop_event: threading.Event | None = None,
    checkpoint_path: str | Path | None = None,
    log_dir: str | Path | None = None,
    strategy=None,
    verbose: int = 0,
) -> TrainResult:
    """Trains a model on a dataset.

    Args:
        model: a `keras.Model` (trained in place, or a float32 copy after
            bfloat16 training), a `ModelConfig`, or a preset name (built for the
            data's shape and classes).
        data: a `cnnviz.Dataset`, a `cnnviz.ImageStream` (a folder streamed
            from disk batch by batch), or `(images, labels)` arrays with uint8
            or 0..255 float images `(N, H, W, C)`.
        config: a `TrainConfig`; defaults to `TrainConfig()`.
        callbacks: extra standard Keras callbacks.
        on_event: optional callable receiving dicts with `event` in
            `train_begin`, `batch_end` (at most 5 a second), `epoch_end`,
            `train_end`.
        stop_event: optional `threading.Event`; setting it stops training
            within one batch, keeping the results so far.
        checkpoint_path: optional `.keras` path saved atomically after each epoch.
        log_dir: optional folder for TensorBoard logs (`tensorboard --logdir`):
            loss and accuracy per epoch, train and validation.
        strategy: optional `tf.distribute` strategy, e.g.
            `tf.distribute.MirroredStrategy()` (all GPUs of this machine) or
            `tf.distribute.MultiWorkerMirroredStrategy()` (several machines, from
            `TF_CONFIG`); see `cnnviz.distribute.make_strategy`. The model is
            built (or copied) in its scope; `config.batch_size` is the global
            batch, split across replicas. Only the chief worker's checkpoints
            and logs are kept.
        verbose: Keras `fit` verbosity. Defaults to `0`.

    Returns:
        A `TrainResult`.

    Raises:
        ConfigError: bad config or data.
    """
    import contextlib

    import keras

    from cnnviz.distribute import distributed_fit, is_chief, is_multi_worker
    from cnnviz.models import ModelConfig, build_model, preset_config
    from cnnviz.saving import save_model, set_metadata

    config = config or TrainConfig()
    source = _as_source(data, config)
    class_names, num_classes = source.class_names, source.num_classes
    if strategy is not None and is_multi_worker(strategy) and config.time_budget:
        raise ConfigError(
            "a time budget runs out at different moments on different workers; "
            "give multi-worker training a number of epochs instead."
        )

    def scope():
        return strategy.scope() if strategy is not None else contextlib.nullcontext()

    precision = resolve_precision(config.precision)
    keras.utils.set_random_seed(config.seed)
    previous_policy = keras.mixed_precision.global_policy()
    if isinstance(model, (str, ModelConfig)):
        if isinstance(model, str):
            model = preset_config(model, source.image_shape, max(num_classes, 2))
        try:
            if precision == "bfloat16":
                keras.mixed_precision.set_global_policy("mixed_bfloat16")
            with scope():
                model = build_model(model)
        finally:
            keras.mixed_precision.set_global_policy(previous_policy)
    elif not isinstance(model, keras.Model):
        raise ConfigError("model must be a keras.Model, a ModelConfig or a preset name.")
    else:
        # A model built elsewhere trains in the dtype it was built with.
        precision = "bfloat16" if "bfloat16" in str(model.dtype_policy.compute_dtype) else "float32"
        if strategy is not None:
            # Its variables must live in the strategy's scope: train a copy made there.
            from cnnviz.saving import get_metadata

            original = model
            with scope():
                model = keras.models.clone_model(original)
                model.set_weights(original.get_weights())
            set_metadata(model, **get_metadata(original))

    model_shape = tuple(model.input_shape[1:])
    if tuple(source.image_shape) != model_shape:
        raise ConfigError(
            f"the model expects images of shape {model_shape}, the data has {tuple(source.image_shape)}."
        )
    if int(model.output_shape[-1]) < num_classes:
        raise ConfigError(
            f"the model has {model.output_shape[-1]} outputs but the data has {num_classes} classes."
        )
    if class_names is not None:
        set_metadata(model, class_names=list(class_names))

    batch_size = min(config.batch_size, source.num_train)
    steps_per_epoch = math.ceil(source.num_train / batch_size)
    epochs = config.epochs
    has_validation = source.has_validation
    train_data = source.train_dataset(batch_size, config.seed, make_augmentation(config, config.seed))
    val_data = source.val_dataset(max(batch_size, 256)) if has_validation else None
    with scope():
        model.compile(
            optimizer=_make_optimizer(config),
            loss=keras.losses.SparseCategoricalCrossentropy(),
            metrics=["accuracy"],
            jit_compile=False,
        )

    chief = strategy is None or is_chief(strategy)
    checkpoint = None
    scratch = None
    if checkpoint_path is not None:
        target = Path(checkpoint_path)
        if not chief:
            # Saving reads distributed variables through collective ops, so every
            # worker must save in step; only the chief's file is kept.
            scratch = tempfile.mkdtemp(prefix="cnnviz-worker-")
            target = Path(scratch) / target.name

        def checkpoint(current_model):
            save_model(current_model, target)

    extra = list(callbacks)
    if log_dir is not None and chief:
        extra.append(keras.callbacks.TensorBoard(str(log_dir), write_graph=False, update_freq="epoch"))
    trainer = _Trainer(config, steps_per_epoch, batch_size, has_validation, on_event, stop_event, checkpoint)
    control = _event_callback_class()(trainer)
    fit_context = distributed_fit(model) if strategy is not None else contextlib.nullcontext()
    start = time.perf_counter()
    with fit_context, warnings.catch_warnings():
        # A stream's length is unknown until its first epoch ends; Keras warns then.
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        model.fit(
            train_data,
            validation_data=val_data,
            epochs=epochs,
            callbacks=[control, *extra],
            shuffle=False,  # the tf.data pipeline shuffles
            verbose=verbose,
        )
    train_seconds = time.perf_counter() - start
    if scratch is not None:
        shutil.rmtree(scratch, ignore_errors=True)
    full_epochs, partial_steps = divmod(trainer.steps_done, steps_per_epoch)
    samples_seen = full_epochs * source.num_train + min(partial_steps * batch_size, source.num_train)

    # Keep the best weights: the final ones if the run ended between epochs
    # (they are the best-annealed), else compare with the best epoch.
    val_accuracy = None
    if trainer.stop_reason != "nan" and has_validation:
        final_accuracy = source.val_accuracy(model)
        if trainer.best_weights is not None and trainer.best_score > final_accuracy:
            model.set_weights(trainer.best_weights)
            val_accuracy = trainer.best_score
        else:
            val_accuracy = final_accuracy
    elif has_validation:
        val_accuracy = source.val_accuracy(model)

    if precision == "bfloat16":
        model = _rebuild_float32(model)
        if class_names is not None:
            set_metadata(model, class_names=list(class_names))
    if not trainer.message:
        trainer.message = f"Training completed {trainer.epochs_done} epochs."
    result = TrainResult(
        model=model,
        history=trainer.history,
        epochs=max(trainer.epochs_done, trainer.epochs_started),
        train_seconds=train_seconds,
        samples_seen=int(samples_seen),
        samples_per_second=samples_seen / train_seconds if train_seconds > 0 else 0.0,
        stop_reason=trainer.stop_reason,
        message=trainer.message,
        val_accuracy=val_accuracy,
        precision=precision,
    )
    if on_event is not None:
        on_event(
            {
                "event": "train_end",
                "reason": result.stop_reason,
                "message": result.message,
                "val_accuracy": val_accuracy,
                "epochs": result.epochs,
                "train_seconds": train_seconds,
            }
        )
    return result


def _accuracy(model, images, labels, batch_size: int = 256) -> float:
    from cnnviz.evaluation import predict_probabilities

    probabilities = predict_probabilities(model, images, batch_size=batch_size)
    return float(np.mean(probabilities.argmax(axis=1) == labels))
