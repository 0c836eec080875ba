"""Compare what helps: train variants of one design on the same data, each
within the same time budget, and put their accuracy next to their cost.

The variants are the tutorial's "improving your model" ideas: augmentation,
other optimizers, a deeper or wider net, batch normalization on or off, and
transfer learning from an ImageNet network.

Example:

>>> results = cnnviz.compare(data, ["baseline", "augmentation", "deeper"], time_budget=30, log_dir="runs")
>>> [(r.name, round(r.accuracy, 3), round(r.train_seconds)) for r in results]
[('baseline', 0.981, 30), ('augmentation', 0.968, 30), ('deeper', 0.985, 30)]

`tensorboard --logdir runs` then shows every variant's curves side by side.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cnnviz.errors import CnnvizError, ConfigError


@dataclasses.dataclass(frozen=True)
class Variant:
    """One change to try.

    Attributes:
        name: short key, also the run's TensorBoard folder name.
        description: what changes, for people.
        apply: function `(ModelConfig, TrainConfig) -> (ModelConfig, TrainConfig)`.
    """

    name: str
    description: str
    apply: Callable[[Any, Any], tuple[Any, Any]]


def _model(**changes):
    return lambda model, train: (model.replace(**changes), train)


def _train(**changes):
    return lambda model, train: (model, train.replace(**changes))


def _deeper(model, train):
    return model.replace(conv_blocks=min(model.conv_blocks + 1, 6)), train


def _wider(model, train):
    return model.replace(
        filters=min(model.filters * 2, 1024), max_filters=min(model.max_filters * 2, 2048)
    ), train


def _toggle_batch_norm(model, train):
    return model.replace(batch_norm=not model.batch_norm), train


def _transfer(model, train):
    from cnnviz.models import preset_config

    config = preset_config("transfer_mobilenet_v2", model.input_shape, model.num_classes)
    return config, train.replace(learning_rate=min(train.learning_rate, 0.003))


VARIANTS: dict[str, Variant] = {
    variant.name: variant
    for variant in (
        Variant("baseline", "the design and settings as they are", lambda model, train: (model, train)),
        Variant(
            "augmentation",
            "random shifts, small rotations and zoom on every batch",
            _train(translate=0.08, rotate=0.03, zoom=0.08),
        ),
        Variant(
            "sgd", "SGD with Nesterov momentum instead of Adam", _train(optimizer="sgd", learning_rate=0.05)
        ),
        Variant("rmsprop", "RMSprop instead of Adam", _train(optimizer="rmsprop", learning_rate=0.001)),
        Variant("deeper", "one more conv block", _deeper),
        Variant("wider", "twice the filters in every block", _wider),
        Variant("batch_norm", "batch normalization switched (on if off, off if on)", _toggle_batch_norm),
        Variant(
            "dropout",
            "dropout 0.25 after each block and 0.5 before the classes",
            _model(block_dropout=0.25, dense_dropout=0.5),
        ),
        Variant(
            "transfer", "MobileNetV2 pretrained on ImageNet, new head only (downloads ~9 MB once)", _transfer
        ),
    )
}
DEFAULT_VARIANTS = ("baseline", "augmentation", "deeper", "batch_norm")


@dataclasses.dataclass
class VariantResult:
    """How one variant did.

    Attributes:
        name, description: from the `Variant`.
        accuracy: test accuracy when the data has a test split, else
            validation accuracy; `None` if it failed.
        measured_on: `"test"` or `"validation"`.
        val_accuracy: validation accuracy of the kept weights.
        train_seconds: wall time of its training.
        epochs: epochs run.
        parameters: model size.
        history: per-epoch metrics (loss, accuracy, val_loss, val_accuracy).
        stop_reason: why training ended (see `TrainResult`).
        error: a sentence when the variant could not run, else `None`.
    """

    name: str
    description: str
    accuracy: float | None = None
    measured_on: str = "validation"
    val_accuracy: float | None = None
    train_seconds: float = 0.0
    epochs: int = 0
    parameters: int = 0
    history: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    stop_reason: str = ""
    error: str | None = None

    def to_row(self) -> dict[str, Any]:
        """A flat dict for tables and JSON (no history)."""
        row = dataclasses.asdict(self)
        row.pop("history")
        return row


def compare(
    data,
    variants: Sequence[str] = DEFAULT_VARIANTS,
    model_config=None,
    train_config=None,
    *,
    time_budget: float | None = 30.0,
    log_dir: str | Path | None = None,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    stop_event: threading.Event | None = None,
) -> list[VariantResult]:
    """Trains each variant on `data` in turn and scores it.

    Args:
        data: a `cnnviz.Dataset` (or an `ImageStream`).
        variants: names from `VARIANTS`, run in this order.
        model_config: the baseline `ModelConfig`; defaults to the `fast`
            preset for the data.
        train_config: the baseline `TrainConfig`; defaults to `TrainConfig()`
            with 1000 epochs, so the time budget decides.
        time_budget: seconds each variant may train (the same for all, so the
            comparison is fair), or `None` to run `train_config.epochs`.
        log_dir: optional folder; each variant logs to `log_dir/<name>` for
            TensorBoard.
        on_event: optional callable; receives `variant_begin`,
            `variant_end` (with `result`) and every `cnnviz.train` event with
            a `variant` key added.
        stop_event: optional `threading.Event`; setting it stops the running
            variant within one batch and skips the rest.

    Returns:
        One `VariantResult` per variant run, in order. A variant that cannot
        run (e.g. transfer learning offline) gets its `error` set; the others
        still run.

    Raises:
        ConfigError: an unknown variant name.
    """
    from cnnviz.evaluation import evaluate
    from cnnviz.models import preset_config
    from cnnviz.training import TrainConfig, train

    unknown = [name for name in variants if name not in VARIANTS]
    if unknown:
        raise ConfigError(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}.")
    if not variants:
        raise ConfigError("choose at least one variant.")
    if model_config is None:
        model_config = preset_config("fast", data.image_shape, data.num_classes)
    train_config = train_config or TrainConfig(epochs=1000 if time_budget else 10)
    if time_budget is not None:
        train_config = train_config.replace(time_budget=float(time_budget))
    has_test = len(getattr(data, "test", ())) > 0

    def emit(**event):
        if on_event is not None:
            on_event(event)

    results = []
    for name in variants:
        if stop_event is not None and stop_event.is_set():
            break
        variant = VARIANTS[name]
        emit(event="variant_begin", variant=name, index=len(results), total=len(variants))
        result = VariantResult(name, variant.description)
        start = time.perf_counter()
        try:
            model, settings = variant.apply(model_config, train_config)
            trained = train(
                model,
                data,
                settings,
                on_event=lambda event, name=name: emit(**event, variant=name),
                stop_event=stop_event,
                log_dir=None if log_dir is None else Path(log_dir) / name,
            )
        except CnnvizError as error:
            result.error = str(error)
        except MemoryError:
            result.error = "out of memory; try smaller images or a smaller batch."
        else:
            result.val_accuracy = trained.val_accuracy
            result.train_seconds = trained.train_seconds
            result.epochs = trained.epochs
            result.parameters = int(trained.model.count_params())
            result.history = trained.history
            result.stop_reason = trained.stop_reason
            if has_test:
                result.accuracy = evaluate(trained.model, data).accuracy
                result.measured_on = "test"
            else:
                result.accuracy = trained.val_accuracy
        if result.error is not None:
            result.train_seconds = time.perf_counter() - start
        results.append(result)
        emit(event="variant_end", variant=name, result=result)
    return results
