"""The parts of a training run, each a small Keras callback with one concern.

`train` hands Keras these callbacks in a fixed order, so the order of the
checks is explicit:

1. `NanGuard`: a loss that is not finite restores the last good weights and stops.
2. `Progress`: counts steps and epochs, keeps the history.
3. `WarmupCosine`: sets the learning rate before every batch.
4. `StopConditions`: the time budget, a stop request, a run nobody watches any more.
5. `BestWeights`: remembers the best epoch's weights; early stopping.
6. `Checkpointer`: saves the model after every epoch.
7. `EventEmitter`: tells a UI what happened, as `cnnviz.events` records.

They share one `RunState`: how far the run is and, once it stops, why. The
first reason given wins, except a non-finite loss, which always wins.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

import keras

from cnnviz.events import BatchEnd, EpochEnd, TrainBegin, TrainEnd


class RunState:
    """What the parts of one run share.

    Args:
        steps_per_epoch: batches per epoch.
        epochs: most epochs, or `None` when the time budget decides.
        time_budget: seconds, or `None`.
        clock: a monotonic clock in seconds (tests pass their own).
    """

    def __init__(self, steps_per_epoch: int, epochs: int | None, time_budget: float | None, clock=None):
        self.steps_per_epoch = steps_per_epoch
        self.epochs = epochs
        self.total_steps = None if epochs is None else steps_per_epoch * epochs
        self.time_budget = time_budget
        self.clock = clock or time.perf_counter
        self.started = self.clock()
        self.steps_done = 0
        self.epochs_started = 0
        self.epochs_done = 0
        self.history: dict[str, list[float]] = {}
        self.stop_reason = "completed"
        self.message = ""

    def elapsed(self) -> float:
        return self.clock() - self.started

    def progress(self) -> float:
        """Share of the run done, 0..1: steps over all steps, or time over the budget, whichever is further."""
        fraction = 0.0 if self.total_steps is None else self.steps_done / max(1, self.total_steps)
        if self.time_budget:
            fraction = max(fraction, self.elapsed() / self.time_budget)
        return min(fraction, 1.0)

    @property
    def diverged(self) -> bool:
        return self.stop_reason == "nan"

    def stop(self, model, reason: str, message: str, override: bool = False) -> None:
        """Asks Keras to stop after this batch, for `reason` unless an earlier one stands."""
        model.stop_training = True
        if override or self.stop_reason == "completed":
            self.stop_reason, self.message = reason, message


def _floats(logs) -> dict[str, float]:
    return {key: float(value) for key, value in (logs or {}).items()}


def bad_loss(logs) -> float | None:
    """The first loss of an epoch's `logs` (training or validation) that is not finite, else `None`:
    the rule by which the NaN guard rolls an epoch back, and the timeline skips it."""
    return next(
        (value for key, value in _floats(logs).items() if "loss" in key and not math.isfinite(value)), None
    )


def epochs_text(count: int) -> str:
    """A count of epochs in words: `1 epoch`, `3 epochs`."""
    return f"{count} epoch{'s' * (count != 1)}"


class NanGuard(keras.callbacks.Callback):
    """Stops on a loss that is not finite and puts back the weights of the last good epoch."""

    def __init__(self, state: RunState):
        super().__init__()
        self.state = state
        self.good_weights = None

    def on_train_begin(self, logs=None):
        self.good_weights = self.model.get_weights()

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self._diverged(float(loss), self.state.epochs_started)

    def on_epoch_end(self, epoch, logs=None):
        if self.state.diverged:
            return
        bad = bad_loss(logs)
        if bad is not None:
            self._diverged(bad, epoch + 1)
        else:
            self.good_weights = self.model.get_weights()

    def _diverged(self, loss: float, epoch: int) -> None:
        self.model.set_weights(self.good_weights)
        self.state.stop(
            self.model,
            "nan",
            f"Training stopped: the loss became {loss} in epoch {epoch}. "
            "The last good weights were restored; try a lower learning rate.",
            override=True,
        )


class Progress(keras.callbacks.Callback):
    """Counts steps and epochs, and keeps the per-epoch history of finite epochs."""

    def __init__(self, state: RunState):
        super().__init__()
        self.state = state

    def on_train_begin(self, logs=None):
        self.state.started = self.state.clock()

    def on_train_batch_begin(self, batch, logs=None):
        if batch == 0:
            self.state.epochs_started += 1

    def on_train_batch_end(self, batch, logs=None):
        self.state.steps_done += 1

    def on_epoch_end(self, epoch, logs=None):
        if self.state.diverged:
            return
        for key, value in _floats(logs).items():
            self.state.history.setdefault(key, []).append(value)
        self.state.epochs_done = epoch + 1


def warmup_cosine_rate(peak: float, warmed: float, progress: float) -> float:
    """The learning rate at one step of a run: a linear warm-up, then a cosine.

    Args:
        peak: the learning rate at the end of the warm-up.
        warmed: the share of the warm-up done, counting this step; while at
            most 1, the rate is `peak * warmed`.
        progress: the share of the run done, 0..1; after the warm-up the rate
            falls along a cosine from `peak` at 0 to `peak / 1000` at 1.

    Returns:
        The learning rate, never under `peak / 1000`.
    """
    if warmed <= 1:
        rate = peak * warmed
    else:
        rate = peak * 0.5 * (1 + math.cos(math.pi * progress))
    return max(rate, peak * 1e-3)


class WarmupCosine(keras.callbacks.Callback):
    """Sets the optimizer's learning rate before every batch (see `warmup_cosine_rate`).

    Warm-up lasts one epoch, or a twentieth of the run when that is shorter.
    Progress is the share of the epochs or of the time budget done, whichever
    is further, so a budget-bound run anneals to the end of its budget.

    With a time budget, the schedule's clock starts when the first batch ends:
    before it, TensorFlow traces the training step, which takes seconds, and a
    schedule that counted them would leave a short budget little room. The
    twentieth of the run is then also a twentieth of the time left after that
    first batch, so the warm-up ends by then even when one epoch would be most
    of the budget.
    """

    WARMUP_PARTS = 20  # the warm-up is at most one part in this many of the run

    def __init__(self, state: RunState, peak: float):
        super().__init__()
        self.state = state
        self.peak = peak
        total = state.total_steps
        self.warmup_steps = (
            state.steps_per_epoch
            if total is None
            else min(state.steps_per_epoch, max(1, total // self.WARMUP_PARTS))
        )
        self.first_batch_end: float | None = None

    def on_train_begin(self, logs=None):
        self.first_batch_end = None

    def on_train_batch_end(self, batch, logs=None):
        if self.first_batch_end is None:
            self.first_batch_end = self.state.elapsed()

    def on_train_batch_begin(self, batch, logs=None):
        state = self.state
        warmed = (state.steps_done + 1) / self.warmup_steps
        progress = (
            0.0 if state.total_steps is None else min(1.0, state.steps_done / max(1, state.total_steps))
        )
        if state.time_budget and self.first_batch_end is not None:
            after_first = state.elapsed() - self.first_batch_end
            time_share = min(1.0, after_first / max(state.time_budget - self.first_batch_end, 1e-9))
            progress = max(progress, time_share)
            warmed = max(warmed, time_share * self.WARMUP_PARTS)
        rate = warmup_cosine_rate(self.peak, warmed, progress)
        self.model.optimizer.learning_rate.assign(rate)


class StopConditions(keras.callbacks.Callback):
    """Stops after a batch when a stop is asked for, the time budget is spent, or nobody watches.

    Args:
        state: the run's `RunState`.
        stop_event: optional `threading.Event`; set it to stop within one batch.
        watched: optional callable saying whether someone still waits for the
            run (a browser tab, say); once it has said no for `unwatched_after`
            seconds the run stops as `"unwatched"` and `stop_event` is set, so
            whatever runs next (the next variant of a comparison) does not start.
        unwatched_after: seconds, see `watched`.
        check_every: seconds between two calls of `watched` (it may be slow).
    """

    def __init__(
        self,
        state: RunState,
        stop_event: threading.Event | None = None,
        watched: Callable[[], bool] | None = None,
        unwatched_after: float = 30.0,
        check_every: float = 2.0,
    ):
        super().__init__()
        self.state = state
        self.stop_event = stop_event
        self.watched = watched
        self.unwatched_after = unwatched_after
        self.check_every = check_every
        self.checked = self.seen = time.monotonic()

    def on_train_begin(self, logs=None):
        self.checked = self.seen = time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        epoch = self.state.epochs_started
        if self._unwatched():
            if self.stop_event is not None:
                self.stop_event.set()
            self.state.stop(
                self.model,
                "unwatched",
                f"Training stopped in epoch {epoch}: nobody had watched it for {self.unwatched_after:g} s.",
            )
        elif self.stop_event is not None and self.stop_event.is_set():
            self.state.stop(self.model, "stopped", f"Training stopped on request in epoch {epoch}.")
        elif self.state.time_budget and self.state.elapsed() >= self.state.time_budget:
            self.state.stop(
                self.model,
                "time_budget",
                f"Time budget of {self.state.time_budget:g} s spent in epoch {epoch}.",
            )

    def _unwatched(self) -> bool:
        now = time.monotonic()
        if self.watched is None or now - self.checked < self.check_every:
            return False
        self.checked = now
        if self.watched():
            self.seen = now
        return now - self.seen > self.unwatched_after


class BestWeights(keras.callbacks.Callback):
    """Keeps the weights of the best epoch by `monitor`; stops after `patience` epochs without improvement.

    Args:
        state: the run's `RunState`.
        monitor: the epoch metric to maximize, e.g. `"val_accuracy"`.
        patience: epochs without improvement before stopping; 0 never stops.
        keep_weights: whether to keep a copy of the best weights (only worth
            it when `monitor` is measured on held-out images).
    """

    def __init__(self, state: RunState, monitor: str, patience: int = 0, keep_weights: bool = True):
        super().__init__()
        self.state = state
        self.monitor = monitor
        self.patience = patience
        self.keep_weights = keep_weights
        self.best_score = -math.inf
        self.best_weights = None
        self.best_epoch: int | None = None  # 1-based
        self.restored = False
        self.since_improvement = 0
        self.last_score: float | None = None  # the last finished epoch's score, as Keras logged it

    def on_epoch_end(self, epoch, logs=None):
        if self.state.diverged:
            return
        score = _floats(logs).get(self.monitor, -math.inf)
        self.last_score = score
        if score > self.best_score:
            self.best_score = score
            self.best_epoch = epoch + 1
            self.best_weights = self.model.get_weights() if self.keep_weights else None
            self.since_improvement = 0
        else:
            self.since_improvement += 1
        if self.patience and self.since_improvement >= self.patience:
            self.state.stop(
                self.model,
                "early_stopping",
                f"Early stopping: no improvement for {epochs_text(self.patience)} (epoch {epoch + 1}).",
            )

    def restore_if_better(self, model, final_score: float) -> float:
        """Puts the best epoch's weights back if they scored above `final_score`; returns the kept score.

        Scores within 1e-6 are a tie (a logged float32 score against the same share in float64): the
        final weights stay, so every worker of a distributed run decides alike.
        """
        if self.best_weights is not None and self.best_score > final_score + 1e-6:
            model.set_weights(self.best_weights)
            self.restored = True
            return self.best_score
        return final_score


class Checkpointer(keras.callbacks.Callback):
    """Calls `save(model)` after every epoch whose loss was finite."""

    def __init__(self, state: RunState, save: Callable[[keras.Model], object]):
        super().__init__()
        self.state = state
        self.save = save

    def on_epoch_end(self, epoch, logs=None):
        if not self.state.diverged:
            self.save(self.model)


class EventEmitter(keras.callbacks.Callback):
    """Sends `cnnviz.events` records to `on_event`; batch records at most every `interval` seconds."""

    def __init__(self, state: RunState, on_event: Callable[[object], None], interval: float = 0.2):
        super().__init__()
        self.state = state
        self.on_event = on_event
        self.interval = interval
        self.last_batch = -math.inf

    def on_train_begin(self, logs=None):
        state = self.state
        self.on_event(TrainBegin(state.epochs, state.steps_per_epoch, state.time_budget))

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        if now - self.last_batch < self.interval and not self.model.stop_training:
            return
        self.last_batch = now
        state = self.state
        self.on_event(
            BatchEnd(
                epoch=state.epochs_started,
                batch=batch + 1,
                steps=state.steps_per_epoch,
                progress=state.progress() if state.time_budget else None,
                elapsed=state.elapsed(),
                metrics=_floats(logs),
            )
        )

    def on_epoch_end(self, epoch, logs=None):
        if not self.state.diverged:
            self.on_event(EpochEnd(epoch + 1, _floats(logs), self.state.elapsed()))

    def train_end(self, result) -> None:
        """Sends the `TrainEnd` record of a finished `TrainResult`."""
        self.on_event(
            TrainEnd(
                result.stop_reason, result.message, result.val_accuracy, result.epochs, result.train_seconds
            )
        )
