"""Fast, safe training: `train(model, data, config)` wraps `model.fit` with what a UI and a CLI need.

- an event stream (`on_event`) of `cnnviz.events` records,
- a cooperative stop (`stop_event.set()` stops within one batch),
- a time budget with a learning-rate schedule that anneals over the budget,
  keeping the best weights seen,
- a NaN / inf guard that stops and restores the last good weights,
- atomic checkpoints at every epoch end,
- batch normalization on TensorFlow's fused kernel during `fit` (same
  results, faster on the CPU; `cnnviz.training.batch_norm`),
- precision `auto`: mixed bfloat16 where the CPU has native bfloat16 (or on a
  GPU), float32 elsewhere. Never XLA on the CPU (7x slower there).

Each of these is one small callback in `cnnviz.training.control`; `train`
reads as resolve, compile, fit, finalize.

The model rule, the same on every CPU, GPU and strategy: `train` always
returns a new model in `TrainResult.model`; a `keras.Model` passed in is
copied first and never changed.

Seeds belong to the run: `TrainConfig.seed` seeds the weight initializers,
dropout, the shuffle (a stateless permutation per epoch) and the augmentation
layers of this run only. Nothing reseeds the process, and nothing the process
did before changes the run: the same seed gives the same weights in two threads
at once, or after another library set TensorFlow's global seed. (A folder
streamed from disk decodes in parallel, out of order: not bit-reproducible.)
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import keras

from cnnviz.errors import ConfigError
from cnnviz.training import batch_norm, control
from cnnviz.training.augmentation import make_augmentation
from cnnviz.training.config import TrainConfig, TrainResult
from cnnviz.training.optimizers import make_optimizer
from cnnviz.training.precision import model_precision, rebuild_float32, resolve_precision
from cnnviz.training.sources import as_source
from cnnviz.training.timeline import TimelineRecorder
from cnnviz.training.timeline import attach as attach_timeline


def train(
    model,
    data,
    config: TrainConfig | None = None,
    *,
    callbacks: Sequence[Any] = (),
    on_event: Callable[[Any], None] | None = None,
    stop_event: threading.Event | None = None,
    watched: Callable[[], bool] | None = None,
    unwatched_after: float = 30.0,
    checkpoint_path: str | Path | None = None,
    log_dir: str | Path | None = None,
    strategy=None,
    metadata: dict[str, Any] | None = None,
    verbose: int = 0,
) -> TrainResult:
    """Trains a model on a dataset.

    Args:
        model: a `ConvNetConfig` or `TransferConfig`, a preset name (built for
            the data's shape, classes and number of training images), or a
            `keras.Model` (copied: the one passed in is never changed).
        data: a `cnnviz.Dataset`, a `cnnviz.ImageStream` (a folder streamed
            from disk batch by batch), or `(images, labels)` arrays with uint8
            or 0..255 float images `(N, H, W, C)`.
        config: a `TrainConfig`; defaults to `TrainConfig()`.
        callbacks: extra standard Keras callbacks, called after cnnviz's own.
        on_event: optional callable receiving `cnnviz.events` records:
            `TrainBegin`, `BatchEnd` (at most 5 a second), `EpochEnd`,
            `TimelineSnapshot` (with `config.timeline`), `TrainEnd`.
        stop_event: optional `threading.Event`; setting it stops training
            within one batch, keeping the results so far.
        watched: optional callable saying whether someone still waits for the
            run; after `unwatched_after` seconds of no, the run stops.
        unwatched_after: seconds; see `watched`.
        checkpoint_path: optional `.keras` path saved atomically after each epoch.
        log_dir: optional folder for TensorBoard logs (`tensorboard --logdir`):
            loss and accuracy per epoch, train and validation.
        strategy: optional `tf.distribute` strategy (see
            `cnnviz.distribute.make_strategy`). The model is built (or copied)
            in its scope; `config.batch_size` is the global batch, split across
            replicas. Only the chief worker's checkpoints and logs are kept.
        metadata: optional cnnviz metadata (e.g. `training` provenance) for
            the model, saved with every checkpoint.
        verbose: Keras `fit` verbosity. Defaults to `0`.

    Returns:
        A `TrainResult`.

    Raises:
        ConfigError: bad config or data.
    """
    config = config or TrainConfig()
    given = as_source(data)
    # Training images as given, before any validation hold-out: what the defaults for many small images count.
    num_images = given.size("train")
    source = given.with_validation(config.validation_split, config.seed)
    if source.size("train") == 0:
        raise ConfigError("there are no training images.")
    _check_strategy(strategy, config)
    from_design = not isinstance(model, keras.Model)
    model, precision = _resolve_model(model, source, num_images, config, strategy, metadata or {})
    config = config.replace(batch_size=config.batch_size_for(source.image_shape, num_images))
    batch_size = min(config.batch_size, source.size("train"))
    state = control.RunState(math.ceil(source.size("train") / batch_size), config.epochs, config.time_budget)
    has_validation = source.size("validation") > 0
    parts = _controls(state, config, has_validation, on_event, stop_event, watched, unwatched_after)
    parts += _checkpointer(state, checkpoint_path, strategy)
    recorder = TimelineRecorder.from_source(source, config.timeline, on_event) if config.timeline else None
    _compile(model, config, strategy)
    # (epochs, steps per epoch); no epoch count: StopConditions ends the run.
    length = (config.epochs or 2**31 - 1, state.steps_per_epoch)
    with batch_norm.for_training(model, state.steps_per_epoch, shorten=from_design):
        train_seconds = _fit(
            model,
            source.dataset(
                "train",
                batch_size,
                shuffle=True,
                seed=config.seed,
                augmentation=make_augmentation(config, config.seed),
            ),
            source.dataset("validation", max(batch_size, 256)) if has_validation else None,
            length,
            [*parts, *([recorder] if recorder else []), *_logs(log_dir, strategy), *callbacks],
            strategy,
            verbose,
        )
    return _finalize(model, source, state, parts, precision, config, train_seconds, batch_size, recorder)


def _check_strategy(strategy, config: TrainConfig) -> None:
    from cnnviz.distribute import is_multi_worker

    if strategy is not None and is_multi_worker(strategy) and config.time_budget:
        raise ConfigError(
            "a time budget runs out at different moments on different workers; "
            "give multi-worker training a number of epochs instead."
        )


def _scope(strategy):
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def _resolve_model(
    model, source, num_images: int, config: TrainConfig, strategy, metadata: dict
) -> tuple[Any, str]:
    """A new model for this run, in the strategy's scope, with class names and metadata; and its precision."""
    from cnnviz.models import build_model, is_model_config, preset_config
    from cnnviz.saving import get_metadata, set_metadata

    if isinstance(model, str):
        model = preset_config(model, source.image_shape, max(source.num_classes, 2), num_images=num_images)
    if is_model_config(model):
        precision = resolve_precision(config.precision)
        previous = keras.mixed_precision.global_policy()  # thread-local in Keras 3
        try:
            if precision == "bfloat16":
                keras.mixed_precision.set_global_policy("mixed_bfloat16")
            with _scope(strategy):
                built = build_model(model, seed=config.seed)
        finally:
            keras.mixed_precision.set_global_policy(previous)
    elif isinstance(model, keras.Model):
        precision = model_precision(model)
        with _scope(strategy):
            built = keras.models.clone_model(model)
            built.set_weights(model.get_weights())
        set_metadata(built, **get_metadata(model))
    else:
        raise ConfigError("model must be a keras.Model, a ConvNetConfig, a TransferConfig or a preset name.")
    _check_fits(built, source)
    set_metadata(built, **metadata)
    if source.class_names is not None:
        set_metadata(built, class_names=list(source.class_names))
    return built, precision


def _check_fits(model, source) -> None:
    model_shape = tuple(model.input_shape[1:])
    if tuple(source.image_shape) != model_shape:
        raise ConfigError(
            f"the model expects images of shape {model_shape}, the data has {tuple(source.image_shape)}."
        )
    if int(model.output_shape[-1]) < source.num_classes:
        raise ConfigError(
            f"the model has {model.output_shape[-1]} outputs but the data has {source.num_classes} classes."
        )


def _compile(model, config: TrainConfig, strategy) -> None:
    with _scope(strategy):
        model.compile(
            optimizer=make_optimizer(config.optimizer, config.peak_learning_rate),
            loss=keras.losses.SparseCategoricalCrossentropy(),
            metrics=["accuracy"],
            jit_compile=False,
        )


def _controls(state, config, has_validation, on_event, stop_event, watched, unwatched_after) -> list:
    """The run's parts in the order Keras must call them (see `cnnviz.training.control`)."""
    parts = [control.NanGuard(state), control.Progress(state)]
    if config.schedule == "cosine":
        parts.append(control.WarmupCosine(state, config.peak_learning_rate))
    parts.append(control.StopConditions(state, stop_event, watched, unwatched_after))
    monitor = "val_accuracy" if has_validation else "accuracy"
    parts.append(control.BestWeights(state, monitor, config.early_stopping, keep_weights=has_validation))
    if on_event is not None:
        parts.append(control.EventEmitter(state, on_event))
    return parts


def _checkpointer(state, checkpoint_path, strategy) -> list:
    if checkpoint_path is None:
        return []
    from cnnviz.distribute import save_as_chief

    return [control.Checkpointer(state, lambda model: save_as_chief(model, checkpoint_path, strategy))]


def _logs(log_dir, strategy) -> list:
    from cnnviz.distribute import is_chief

    if log_dir is None or not is_chief(strategy):
        return []
    return [keras.callbacks.TensorBoard(str(log_dir), write_graph=False, update_freq="epoch")]


def _fit(
    model, train_data, val_data, length: tuple[int, int], callbacks: list, strategy, verbose: int
) -> float:
    """Runs Keras' fit over the endless training pipeline, `length` = (epochs, steps per epoch); returns its seconds."""
    from cnnviz.distribute import distributed_fit

    fit_context = distributed_fit(model) if strategy is not None else contextlib.nullcontext()
    start = time.perf_counter()
    epochs, steps_per_epoch = length
    with fit_context, warnings.catch_warnings():
        # A streamed validation split's length is unknown (unreadable files are skipped): Keras warns each
        # time its pass ends, and that end is expected.
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        model.fit(
            train_data,
            validation_data=val_data,
            epochs=epochs,
            steps_per_epoch=steps_per_epoch,
            callbacks=callbacks,
            shuffle=False,  # the tf.data pipeline shuffles
            verbose=verbose,
        )
    return time.perf_counter() - start


def _part(parts: list, kind: type):
    return next((part for part in parts if isinstance(part, kind)), None)


def _finalize(
    model, source, state, parts, precision, config, train_seconds, batch_size, recorder=None
) -> TrainResult:
    """Keeps the best weights, hands back a float32 model and reports how the run went."""
    from cnnviz.saving import get_metadata, set_metadata

    val_accuracy = None
    # The epoch whose weights the model holds: the last one run (a partial one counts), the last good one
    # after a NaN, or the best one on validation when its weights come back.
    kept_epoch = state.epochs_done if state.diverged else max(state.epochs_done, state.epochs_started)
    message = state.message or f"Training completed {control.epochs_text(state.epochs_done)}."
    if source.size("validation"):
        best = _part(parts, control.BestWeights)
        if state.diverged:  # the NaN guard put back the last good weights: score those
            val_accuracy = source.accuracy(model, "validation")
        else:
            # Ended at an epoch's end: its score as Keras logged it (the same on every worker of a
            # distributed run). Ended within an epoch (budget, Stop): the final weights are scored here.
            at_epoch_end = (
                best.last_score is not None and state.steps_done == state.epochs_done * state.steps_per_epoch
            )
            final = best.last_score if at_epoch_end else source.accuracy(model, "validation")
            val_accuracy = best.restore_if_better(model, final)
            if best.restored:
                kept_epoch = best.best_epoch
                message += f" Kept epoch {kept_epoch}'s weights, the best on validation."
    if precision == "bfloat16":
        metadata = get_metadata(model)
        model = rebuild_float32(model)
        set_metadata(model, **metadata)
    full_epochs, partial_steps = divmod(state.steps_done, state.steps_per_epoch)
    train_size = source.size("train")
    samples_seen = full_epochs * train_size + min(partial_steps * batch_size, train_size)
    result = TrainResult(
        model=model,
        history=state.history,
        epochs=max(state.epochs_done, state.epochs_started),
        train_seconds=train_seconds,
        samples_seen=int(samples_seen),
        samples_per_second=samples_seen / train_seconds if train_seconds > 0 else 0.0,
        stop_reason=state.stop_reason,
        message=message,
        val_accuracy=val_accuracy,
        precision=precision,
        config=config,
        design=model.name,
        kept_epoch=kept_epoch,
    )
    if recorder is not None:  # its recording time is in train_seconds: the rate includes what it costs
        result.timeline = recorder.snapshots
        attach_timeline(result.model, recorder.snapshots)
    emitter = _part(parts, control.EventEmitter)
    if emitter is not None:
        emitter.train_end(result)
    return result
