"""What a training run tells its watcher while it runs: small frozen records.

`cnnviz.train(..., on_event=f)` calls `f` with a `TrainBegin`, then `BatchEnd`
(at most five a second) and `EpochEnd` records (and `TimelineSnapshot`s when
the timeline is on), and a `TrainEnd`.
`cnnviz.compare` adds a `VariantBegin` before each variant's records and a
`VariantEnd` after them. A UI tells them apart with `isinstance`.
"""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class TrainBegin:
    """Training starts.

    Attributes:
        epochs: most epochs, or `None` when the time budget decides.
        steps_per_epoch: batches per epoch.
        time_budget: seconds, or `None`.
    """

    epochs: int | None
    steps_per_epoch: int
    time_budget: float | None


@dataclasses.dataclass(frozen=True)
class BatchEnd:
    """A batch finished.

    Attributes:
        epoch: 1-based epoch it belongs to.
        batch: 1-based batch within the epoch.
        steps: batches per epoch.
        progress: share of the run done (0..1) with a time budget: the budget's
            share spent, or the epochs' share when that is further; `None`
            without a budget.
        elapsed: seconds since training started.
        metrics: the running `loss` and `accuracy` of this epoch.
    """

    epoch: int
    batch: int
    steps: int
    progress: float | None
    elapsed: float
    metrics: dict[str, float]


@dataclasses.dataclass(frozen=True)
class EpochEnd:
    """An epoch finished (never sent for an epoch whose loss was not finite).

    Attributes:
        epoch: 1-based epoch.
        metrics: `loss`, `accuracy` and, with validation data, `val_loss`, `val_accuracy`.
        elapsed: seconds since training started.
    """

    epoch: int
    metrics: dict[str, float]
    elapsed: float


@dataclasses.dataclass(frozen=True)
class TimelineSnapshot:
    """A timeline snapshot was recorded (`TrainConfig(timeline=K)`): before training, then after each epoch.

    Attributes:
        snapshot: the `cnnviz.timeline.Snapshot`.
    """

    snapshot: Any


@dataclasses.dataclass(frozen=True)
class TrainEnd:
    """Training ended; the same facts as the `TrainResult` that `train` returns next.

    Attributes:
        reason: `TrainResult.stop_reason`.
        message: a sentence for people.
        val_accuracy: validation accuracy of the kept weights, or `None`.
        epochs: epochs run.
        train_seconds: seconds spent in `fit`.
    """

    reason: str
    message: str
    val_accuracy: float | None
    epochs: int
    train_seconds: float


@dataclasses.dataclass(frozen=True)
class VariantBegin:
    """`compare` starts a variant: the records that follow are its training's.

    Attributes:
        variant: its name.
        index: 0-based position in the comparison.
        total: variants in the comparison.
    """

    variant: str
    index: int
    total: int


@dataclasses.dataclass(frozen=True)
class VariantEnd:
    """`compare` finished a variant.

    Attributes:
        variant: its name.
        result: its `cnnviz.comparison.VariantResult`.
    """

    variant: str
    result: Any


#: Every record `train` sends.
TrainEvent = TrainBegin | BatchEnd | EpochEnd | TrainEnd
