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
        families: the design families (`ConvNetConfig.family`, `TransferConfig.family`)
            whose baseline it applies to.
    """

    name: str
    description: str
    apply: Callable[[Any, Any], tuple[Any, Any]]
    families: tuple[str, ...] = ("convnet", "transfer")

    def applies_to(self, model_config) -> bool:
        return model_config.family in self.families


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
    return config, train.replace(learning_rate=min(train.peak_learning_rate, 0.003))


CONVNET = ("convnet",)

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
            "adam", "Adam at its default learning rate (0.01)", _train(optimizer="adam", learning_rate=None)
        ),
        Variant(
            "sgd",
            "SGD with Nesterov momentum at its default learning rate (0.05)",
            _train(optimizer="sgd", learning_rate=None),
        ),
        Variant(
            "rmsprop",
            "RMSprop at its default learning rate (0.001)",
            _train(optimizer="rmsprop", learning_rate=None),
        ),
        Variant("deeper", "one more conv block", _deeper, CONVNET),
        Variant("wider", "twice the filters in every block", _wider, CONVNET),
        Variant(
            "batch_norm", "batch normalization switched (on if off, off if on)", _toggle_batch_norm, CONVNET
        ),
        Variant(
            "dropout",
            "dropout 0.25 after each block and 0.5 before the classes",
            _model(block_dropout=0.25, dense_dropout=0.5),
            CONVNET,
        ),
        Variant(
            "transfer",
            "MobileNetV2 pretrained on ImageNet, new head only (downloads ~9 MB once)",
            _transfer,
            CONVNET,
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
        train_config: the `TrainConfig` the variant trained with.
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
    train_config: Any = None

    def to_row(self) -> dict[str, Any]:
        """A flat dict for tables and JSON (no history, no config)."""
        row = dataclasses.asdict(self)
        row.pop("history")
        row.pop("train_config")
        return row


def compare(
    data,
    variants: Sequence[str] = DEFAULT_VARIANTS,
    model_config=None,
    train_config=None,
    *,
    time_budget: float | None = 30.0,
    log_dir: str | Path | None = None,
    on_event: Callable[[Any], None] | None = None,
    stop_event: threading.Event | None = None,
    watched: Callable[[], bool] | None = None,
    unwatched_after: float = 30.0,
) -> list[VariantResult]:
    """Trains each variant on `data` in turn and scores it.

    Args:
        data: a `cnnviz.Dataset` (or an `ImageStream`).
        variants: names from `VARIANTS`, run in this order; each must apply
            to the baseline's family.
        model_config: the baseline `ConvNetConfig` or `TransferConfig`;
            defaults to the `fast` preset for the data.
        train_config: the baseline `TrainConfig`; defaults to `TrainConfig()`.
        time_budget: seconds each variant may train, until spent (the same for
            all, so the comparison is fair), or `None` to run
            `train_config.epochs`.
        log_dir: optional folder; each variant logs to `log_dir/<name>` for
            TensorBoard.
        on_event: optional callable; receives a `cnnviz.events.VariantBegin`,
            that variant's `cnnviz.train` records, then a `VariantEnd` (with
            its `VariantResult`), for each variant.
        stop_event: optional `threading.Event`; setting it stops the running
            variant within one batch and skips the rest.
        watched, unwatched_after: as for `cnnviz.train`; a comparison nobody
            watches stops and skips the rest.

    Returns:
        One `VariantResult` per variant run, in order. A variant that cannot
        run (e.g. transfer learning offline) gets its `error` set; the others
        still run.

    Raises:
        ConfigError: an unknown variant name, or one that does not apply to
            the baseline's family (e.g. "deeper" on a transfer design).
    """
    from cnnviz.events import VariantBegin, VariantEnd
    from cnnviz.models import preset_config
    from cnnviz.training import TrainConfig
    from cnnviz.training.sources import as_source

    check_variants(variants)
    source = as_source(data)
    if model_config is None:
        model_config = preset_config(
            "fast", source.image_shape, source.num_classes, num_images=source.size("train")
        )
    check_variants(variants, model_config)
    train_config = train_config or TrainConfig()
    if time_budget is not None:
        train_config = train_config.replace(time_budget=float(time_budget), epochs=None)
    emit = on_event or (lambda event: None)
    options = {
        "on_event": emit,
        "stop_event": stop_event or threading.Event(),
        "watched": watched,
        "unwatched_after": unwatched_after,
    }
    results = []
    for name in variants:
        if options["stop_event"].is_set():
            break
        emit(VariantBegin(name, len(results), len(variants)))
        log = None if log_dir is None else Path(log_dir) / name
        results.append(
            _run_variant(
                VARIANTS[name], model_config, train_config, data, source.size("test") > 0, log, options
            )
        )
        emit(VariantEnd(name, results[-1]))
    return results


def _run_variant(
    variant: Variant, baseline, train_config, data, has_test: bool, log_dir, options
) -> VariantResult:
    """Applies one variant to the baseline, trains and scores it; a failure it can explain becomes its
    `error` (a deeper net that shrinks small images to nothing, transfer learning offline), and the
    comparison goes on."""
    from cnnviz.evaluation import evaluate
    from cnnviz.training import train

    result = VariantResult(variant.name, variant.description)
    start = time.perf_counter()
    try:
        model_config, result.train_config = variant.apply(baseline, train_config)
        trained = train(model_config, data, result.train_config, log_dir=log_dir, **options)
    except CnnvizError as error:
        result.error = str(error)
    except MemoryError:
        result.error = "out of memory; try smaller images or a smaller batch."
    if result.error is not None:
        result.train_seconds = time.perf_counter() - start
        return result
    result.train_config = trained.config  # with the batch size it used
    result.val_accuracy = trained.val_accuracy
    result.train_seconds = trained.train_seconds
    result.epochs = trained.epochs
    result.parameters = int(trained.model.count_params())
    result.history = trained.history
    result.stop_reason = trained.stop_reason
    if has_test:
        result.accuracy, result.measured_on = evaluate(trained.model, data).accuracy, "test"
    else:
        result.accuracy = trained.val_accuracy
    return result


def check_variants(variants: Sequence[str], model_config=None) -> None:
    """Raises `ConfigError` for an unknown variant, none at all, or (given the baseline) one of another family."""
    unknown = [name for name in variants if name not in VARIANTS]
    if unknown:
        raise ConfigError(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}.")
    if not variants:
        raise ConfigError("choose at least one variant.")
    if model_config is None:
        return
    misplaced = [name for name in variants if not VARIANTS[name].applies_to(model_config)]
    if misplaced:
        raise ConfigError(
            f"{', '.join(misplaced)} {'applies' if len(misplaced) == 1 else 'apply'} only to "
            f"{' or '.join(VARIANTS[misplaced[0]].families)} designs, and the baseline {model_config.name!r} "
            f"is a {model_config.family} design; choose from {', '.join(applicable_variants(model_config))}."
        )


def applicable_variants(model_config) -> list[str]:
    """The names of the variants that apply to `model_config`'s family."""
    return [name for name, variant in VARIANTS.items() if variant.applies_to(model_config)]
