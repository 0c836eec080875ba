"""Training runs the Train and Improve pages start, watch and stop without blocking the app.

A run happens in a background thread (`cnnviz.runs.run` or `cnnviz.compare`
with an event callback and a stop event); the page polls the job with a
fragment that refreshes while the job runs. Each job lives in its own
session's state, so two people training at once never see each other's runs.
Each job writes its TensorBoard logs to its own temporary folder, offered as a
zip download and removed when the session starts another job of the same kind
or ends (the job object is then dropped with the session's state).

A job whose browser tab has been closed for `CNNVIZ_MAX_UNWATCHED_SECONDS`
stops by itself (the training's own stop condition, fed by `runtime.session_connected`),
so a hosted demo's CPU never goes to a run nobody watches.
"""

from __future__ import annotations

import dataclasses
import gc
import io
import os
import shutil
import tempfile
import threading
import uuid
import weakref
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cnnviz
from cnnviz import limits, runs
from cnnviz.events import BatchEnd, EpochEnd, TimelineSnapshot, TrainBegin, VariantBegin, VariantEnd
from ui import runtime


def zip_folder(folder: str | os.PathLike) -> bytes:
    """A folder's files as zip bytes (for a download button), paths relative to it."""
    buffer = io.BytesIO()
    root = Path(folder)
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(root).as_posix())
    return buffer.getvalue()


def exported_bytes(model, format: str, images) -> tuple[bytes, Any]:
    """The model exported with its heatmap and validated on `images` (`cnnviz.export`), as download bytes.

    A SavedModel (a folder) comes zipped. Returns the bytes and the `ExportReport`.
    """
    from cnnviz.export import SUFFIXES, export

    with tempfile.TemporaryDirectory(prefix="cnnviz-export-") as folder:
        target = Path(folder) / f"model{SUFFIXES[format]}"
        report = export(model, target, format, images)
        data = target.read_bytes() if target.is_file() else zip_folder(target)
    return data, report


def model_bytes(model) -> bytes:
    """The model as .keras file bytes, for a download button."""
    handle, path = tempfile.mkstemp(suffix=".keras")
    os.close(handle)
    try:
        cnnviz.save_model(model, path)
        with open(path, "rb") as file:
            return file.read()
    finally:
        os.unlink(path)


@dataclasses.dataclass(kw_only=True)
class BackgroundJob:
    """Runs `self.work()` in a daemon thread; any failure becomes `self.error`, a line for the page.

    Attributes:
        data: the data it trains on.
        events: the `cnnviz.events` records received so far.
        error: a sentence when it failed, else None.
        stop_event: set by Stop (and by the training itself when nobody watches).
        thread: the worker thread once started.
        log_dir: its TensorBoard logs, removed with the job.
        published: whether the page has taken its result (once).
    """

    data: Any
    events: list = dataclasses.field(default_factory=list)
    error: str | None = None
    stop_event: threading.Event = dataclasses.field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    log_dir: str = dataclasses.field(default_factory=lambda: tempfile.mkdtemp(prefix="cnnviz-logs-"))
    published: bool = False
    watched: Callable[[], bool] | None = None  # whether its browser tab is still there (set by `start`)

    failure = "Failed"  # the start of the line for an unexpected error
    out_of_memory = "Out of memory."

    def __post_init__(self):
        # Its logs go when the job is dropped: its session ended, or a new job replaced it.
        weakref.finalize(self, shutil.rmtree, self.log_dir, True)

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def stop(self) -> None:
        self.stop_event.set()

    def discard_logs(self) -> None:
        """Removes a finished job's temporary logs."""
        if not self.running:
            shutil.rmtree(self.log_dir, ignore_errors=True)

    def start(self, name: str = "cnnviz-job") -> None:
        self.watched = runtime.session_connected()  # here, on the script's thread, which knows its session
        self.thread = threading.Thread(target=self._run, daemon=True, name=name)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.work()
        except cnnviz.CnnvizError as error:
            self.error = str(error)
        except MemoryError:
            self.error = self.out_of_memory
        except Exception as error:  # a bug or an unexpected TensorFlow error: shown, never a dead app
            self.error = f"{self.failure}: {type(error).__name__}: {error}"
        finally:
            # A fit that stopped early leaves its tf.data iterators in reference cycles. Freed now, on
            # this thread; left to the interpreter's exit, their destructors can hang the server's shutdown.
            gc.collect()

    def work(self) -> None:
        raise NotImplementedError

    def watch_options(self) -> dict[str, Any]:
        return {"watched": self.watched, "unwatched_after": float(limits.max_unwatched_seconds())}


@dataclasses.dataclass(kw_only=True)
class TrainingJob(BackgroundJob):
    """One `cnnviz.runs.run` for the Train page."""

    request: runs.TrainRequest
    run_id: int
    result: Any = None  # cnnviz.TrainResult when done
    initial_weights: list | None = None  # the weights training started from
    download: bytes | None = None  # the model as a .keras file, made once
    exports: dict = dataclasses.field(
        default_factory=dict
    )  # format -> (bytes, ExportReport), made on request
    # Unique across sessions: caches shared by all sessions key the model by it.
    uid: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex)
    timeline: list = dataclasses.field(default_factory=list)  # cnnviz.timeline.Snapshots, as they come
    _frame: tuple | None = None  # (snapshot, its picture): the last drawn, see `frame`

    failure = "Training failed"
    out_of_memory = "Out of memory: use a smaller batch size, fewer filters or smaller images."

    @property
    def abandoned(self) -> bool:
        """Whether it stopped because its browser tab had gone."""
        return self.result is not None and self.result.stop_reason == "unwatched"

    def work(self) -> None:
        import keras

        job = self

        class RememberInitialWeights(keras.callbacks.Callback):
            # For the Weights page's "before vs after training".
            def on_train_begin(self, logs=None):
                job.initial_weights = [weight.copy() for weight in self.model.get_weights()]

        self.result = runs.run(
            self.request,
            callbacks=[RememberInitialWeights()],
            on_event=self.on_event,
            stop_event=self.stop_event,
            log_dir=self.log_dir,
            **self.watch_options(),
        )

    def batches(self, after_seconds: float = 0.0) -> list[dict]:
        """Batch-level rows of the current (last) epoch: batch, loss, accuracy.

        Empty until the current epoch has run `after_seconds`: short epochs are
        better followed by the epoch curves, which would only jump down the page
        under a batch chart that comes and goes every second.
        """
        events = list(self.events)
        batch_events = [event for event in events if isinstance(event, BatchEnd)]
        if not batch_events:
            return []
        current = batch_events[-1].epoch
        began = max((e.elapsed for e in events if isinstance(e, EpochEnd) and e.epoch < current), default=0.0)
        if batch_events[-1].elapsed - began < after_seconds:
            return []
        return [{"batch": e.batch, **e.metrics} for e in batch_events if e.epoch == current]

    def epochs(self) -> list[dict]:
        """One row per finished epoch: epoch, loss, accuracy, val_loss, val_accuracy."""
        return [{"epoch": e.epoch, **e.metrics} for e in list(self.events) if isinstance(e, EpochEnd)]

    def snapshots(self) -> list:
        """The timeline recorded so far (`cnnviz.timeline.Snapshot`s: epoch 0, then each epoch, thinned
        past `cnnviz.timeline.MAX_SNAPSHOTS` as the run's own list is)."""
        return list(self.timeline)

    def frame(self, snapshot):
        """The timeline picture of one of this job's snapshots (PIL), drawn once: the live view shows
        the same epoch on every refresh."""
        if self._frame is None or self._frame[0] is not snapshot:
            from cnnviz.timeline import frames

            columns = min(4, len(snapshot.images))
            self._frame = (snapshot, frames([snapshot], tuple(self.data.class_names), columns=columns)[0])
        return self._frame[1]

    def on_event(self, event) -> None:
        """Keeps the events; timeline snapshots go to their own bounded list."""
        if isinstance(event, TimelineSnapshot):
            from cnnviz.timeline import thin

            self.timeline = thin([*self.timeline, event.snapshot])
        else:
            self.events.append(event)

    def progress(self) -> tuple[float, str]:
        """A 0..1 fraction and a line of text for a progress bar."""
        events = list(self.events)
        begin = next((e for e in events if isinstance(e, TrainBegin)), None)
        if begin is None:
            return 0.0, "Preparing the data and the model..."
        last = next((e for e in reversed(events) if isinstance(e, (BatchEnd, EpochEnd))), None)
        if last is None:
            return 0.0, "Starting..."
        if isinstance(last, BatchEnd) and last.progress is not None:
            fraction = last.progress
        else:
            batch = last.batch if isinstance(last, BatchEnd) else begin.steps_per_epoch
            done = (last.epoch - 1) + batch / max(1, begin.steps_per_epoch)
            fraction = done / begin.epochs if begin.epochs else 0.0
        shown = ", ".join(
            f"{name} {value:.3f}"
            for name, value in last.metrics.items()
            if "accuracy" in name or name == "loss"
        )
        return min(max(fraction, 0.0), 1.0), f"epoch {last.epoch} · {last.elapsed:.0f} s · {shown}"

    @property
    def kept_epoch(self) -> int | None:
        """The epoch whose weights the finished run kept (`None` while it runs)."""
        return None if self.running or self.result is None else self.result.kept_epoch

    @property
    def kept_best(self) -> bool:
        """Whether the finished run kept an earlier epoch, the best on validation."""
        return not self.running and self.result is not None and self.result.kept_best

    def history_row(self) -> dict:
        """The run's row in the session's table of runs."""
        return {"run": self.run_id, "data": self.request.source, **self.result.summary()}

    def model_download(self) -> bytes:
        if self.download is None:
            self.download = model_bytes(self.result.model)
        return self.download

    def export_download(self, format: str) -> tuple[bytes, Any]:
        """The model in `format` (made once), validated on up to 512 of the run's test images."""
        if format not in self.exports:
            test = getattr(self.data, "test", None)
            images = test.images[:512] if test is not None and len(test) else None
            self.exports[format] = exported_bytes(self.result.model, format, images)
        return self.exports[format]


@dataclasses.dataclass(kw_only=True)
class ComparisonJob(BackgroundJob):
    """`cnnviz.compare` for the Improve page."""

    variants: list[str]
    model_config: Any  # the baseline ConvNetConfig or TransferConfig
    time_budget: float
    train_config: Any = None  # the baseline cnnviz.TrainConfig
    results: list = dataclasses.field(default_factory=list)  # VariantResults, as they finish

    failure = "Comparison failed"
    out_of_memory = "Out of memory: use fewer variants, smaller images or a smaller batch."

    def on_event(self, event) -> None:
        if isinstance(event, VariantEnd):
            self.results.append(event.result)
        elif isinstance(event, BatchEnd) and self.events and isinstance(self.events[-1], BatchEnd):
            self.events[-1] = event  # only the latest batch matters for the progress line
        else:
            self.events.append(event)

    def work(self) -> None:
        cnnviz.compare(
            self.data,
            self.variants,
            self.model_config,
            self.train_config,
            time_budget=self.time_budget,
            log_dir=self.log_dir,
            on_event=self.on_event,
            stop_event=self.stop_event,
            **self.watch_options(),
        )

    def progress(self) -> tuple[float, str]:
        """A 0..1 fraction over all variants and a line of text for a progress bar."""
        events = list(self.events)
        begin_at = next(
            (i for i in range(len(events) - 1, -1, -1) if isinstance(events[i], VariantBegin)), None
        )
        if begin_at is None:
            return 0.0, "Preparing..."
        begin, last = events[begin_at], events[-1]
        elapsed = getattr(last, "elapsed", 0.0) if begin_at < len(events) - 1 else 0.0
        within = min(elapsed / self.time_budget, 1.0) if self.time_budget else 0.0
        done = len(self.results)
        fraction = (done + (within if done < begin.total else 0.0)) / begin.total
        return min(fraction, 1.0), (
            f"variant {begin.index + 1} of {begin.total}: {begin.variant} · {elapsed:.0f} s"
            + (f" · epoch {last.epoch}" if isinstance(last, (BatchEnd, EpochEnd)) else "")
        )
