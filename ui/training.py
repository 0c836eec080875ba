"""Training runs the Train and Improve pages start, watch and stop without blocking the app.

A run happens in a background thread (cnnviz.train or cnnviz.compare with an
event callback and a stop event); the page polls the job with an
auto-refreshing fragment. Each job lives in its own session's state, so two
people training at once never see each other's runs. Each job writes its
TensorBoard logs to its own temporary folder, offered as a zip download and
removed when the session starts another job of the same kind or ends (the
job object is then dropped with the session's state).
"""

from __future__ import annotations

import dataclasses
import gc
import io
import os
import shutil
import tempfile
import threading
import time
import uuid
import weakref
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cnnviz
from cnnviz import limits

JOB_KEY = "train.job"
HISTORY_KEY = "train.history"
COMPARISON_KEY = "improve.job"


def zip_folder(folder: str | os.PathLike) -> bytes:
    """A folder's files as zip bytes (for a download button), paths relative to it."""
    buffer = io.BytesIO()
    root = Path(folder)
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(root).as_posix())
    return buffer.getvalue()


def _new_log_dir() -> str:
    return tempfile.mkdtemp(prefix="cnnviz-logs-")


def _remove_with(job) -> None:
    """Removes the job's temporary folder when the job is dropped (its session ended, or it was replaced)."""
    weakref.finalize(job, shutil.rmtree, job.log_dir, True)


def discard(job) -> None:
    """Removes a finished job's temporary logs."""
    if job is not None and not job.running and getattr(job, "log_dir", None):
        shutil.rmtree(job.log_dir, ignore_errors=True)


def _session_connected() -> Callable[[], bool]:
    """A check, callable from any thread, that the browser session running this script is still connected.

    Always true outside a Streamlit server (AppTest, a plain script).
    """
    from streamlit import runtime
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    context = get_script_run_ctx(suppress_warning=True)
    if context is None or not runtime.exists():
        return lambda: True
    instance, session_id = runtime.get_instance(), context.session_id
    return lambda: instance.is_active_session(session_id)


class _BackgroundJob:
    """Runs `self._work(data)` in a daemon thread; any failure becomes `self.error`, a line for the page.

    A job whose browser session has been gone for `abandon_after` seconds (the tab
    was closed; `CNNVIZ_MAX_UNWATCHED_SECONDS`, default 30) stops as if Stop was
    pressed, so a hosted demo's CPU never goes to a run nobody watches. Subclasses are dataclasses with `thread`, `stop_event`, `error` and
    `log_dir` fields, and call `_heartbeat()` on every training event.
    """

    _failure = "Failed"  # the start of the line for an unexpected error
    _out_of_memory = "Out of memory."
    _check_every = 2.0
    abandoned = False

    def __post_init__(self):
        _remove_with(self)

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def stop(self) -> None:
        self.stop_event.set()

    def _launch(self, data, name: str) -> None:
        self._connected = _session_connected()  # here, on the script's thread, which knows its session
        self.abandon_after = limits.max_unwatched_seconds()
        self._checked = self._seen = time.monotonic()
        self.thread = threading.Thread(target=self._run, args=(data,), daemon=True, name=name)
        self.thread.start()

    def _heartbeat(self) -> None:
        now = time.monotonic()
        if now - self._checked < self._check_every:
            return
        self._checked = now
        if self._connected():
            self._seen = now
        elif now - self._seen > self.abandon_after and not self.stop_event.is_set():
            self.abandoned = True
            self.stop_event.set()

    def _run(self, data) -> None:
        try:
            self._work(data)
        except cnnviz.CnnvizError as error:
            self.error = str(error)
        except MemoryError:
            self.error = self._out_of_memory
        except Exception as error:  # a bug or an unexpected TensorFlow error: shown, never a dead app
            self.error = f"{self._failure}: {type(error).__name__}: {error}"
        finally:
            # A fit that stopped early leaves its tf.data iterators in reference cycles. Freed now, on
            # this thread; left to the interpreter's exit, their destructors can hang the server's shutdown.
            gc.collect()

    def _work(self, data) -> None:
        raise NotImplementedError


@dataclasses.dataclass
class TrainingJob(_BackgroundJob):
    data_source: str
    model_config: Any  # cnnviz.ModelConfig
    train_config: Any  # cnnviz.TrainConfig
    run_id: int
    events: list = dataclasses.field(default_factory=list)
    result: Any = None  # cnnviz.TrainResult when done
    error: str | None = None
    stop_event: threading.Event = dataclasses.field(default_factory=threading.Event)
    started: float = dataclasses.field(default_factory=time.time)
    thread: threading.Thread | None = None
    initial_weights: list | None = None  # the weights training started from
    # Unique across sessions: caches shared by all sessions key the model by it.
    uid: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex)
    log_dir: str = dataclasses.field(default_factory=_new_log_dir)  # TensorBoard logs of this run

    _failure = "Training failed"
    _out_of_memory = "Out of memory: use a smaller batch size, fewer filters or smaller images."

    def start(self, data) -> None:
        self.data = data  # the Results page scores the model on this data's test split
        self._launch(data, name=f"cnnviz-train-{self.run_id}")

    def _work(self, data) -> None:
        import keras

        job = self

        class RememberInitialWeights(keras.callbacks.Callback):
            # For the Weights page's "before vs after training".
            def on_train_begin(self, logs=None):
                job.initial_weights = [weight.copy() for weight in self.model.get_weights()]

        self.result = cnnviz.train(
            self.model_config,
            data,
            self.train_config,
            callbacks=[RememberInitialWeights()],
            on_event=self._on_event,
            stop_event=self.stop_event,
            log_dir=self.log_dir,
        )

    def _on_event(self, event: dict) -> None:
        self.events.append(event)
        self._heartbeat()

    def batches(self, after_seconds: float = 0.0) -> list[dict]:
        """Batch-level rows of the current (last) epoch: batch, loss, accuracy.

        Empty until the current epoch has run `after_seconds`: short epochs are
        better followed by the epoch curves, which would only jump down the page
        under a batch chart that comes and goes every second.
        """
        events = list(self.events)
        batch_events = [e for e in events if e["event"] == "batch_end"]
        if not batch_events:
            return []
        current = batch_events[-1]["epoch"]
        began = max(
            (e["elapsed"] for e in events if e["event"] == "epoch_end" and e["epoch"] < current), default=0.0
        )
        if batch_events[-1]["elapsed"] - began < after_seconds:
            return []
        return [{"batch": e["batch"], **e["metrics"]} for e in batch_events if e["epoch"] == current]

    def epochs(self) -> list[dict]:
        """One row per finished epoch: epoch, loss, accuracy, val_loss, val_accuracy."""
        return [{"epoch": e["epoch"], **e["metrics"]} for e in list(self.events) if e["event"] == "epoch_end"]

    def progress(self) -> tuple[float, str]:
        """A 0..1 fraction and a line of text for a progress bar."""
        events = list(self.events)
        begin = next((e for e in events if e["event"] == "train_begin"), None)
        if begin is None:
            return 0.0, "Preparing the data and the model..."
        last = next((e for e in reversed(events) if e["event"] in ("batch_end", "epoch_end")), None)
        if last is None:
            return 0.0, "Starting..."
        if last.get("progress") is not None:
            fraction = float(last["progress"])
        else:
            steps = max(1, begin["steps_per_epoch"])
            batch = last.get("batch", steps) if last["event"] == "batch_end" else steps
            fraction = ((last["epoch"] - 1) + batch / steps) / max(1, begin["epochs"])
        metrics = last.get("metrics", {})
        shown = ", ".join(
            f"{name} {value:.3f}" for name, value in metrics.items() if "accuracy" in name or name == "loss"
        )
        return min(max(fraction, 0.0), 1.0), f"epoch {last['epoch']} · {last['elapsed']:.0f} s · {shown}"


def model_bytes(model, class_names) -> bytes:
    """The model as .keras file bytes, for a download button."""
    handle, path = tempfile.mkstemp(suffix=".keras")
    os.close(handle)
    try:
        cnnviz.save_model(model, path, class_names)
        with open(path, "rb") as file:
            return file.read()
    finally:
        os.unlink(path)


@dataclasses.dataclass
class ComparisonJob(_BackgroundJob):
    """`cnnviz.compare` in a background thread, for the Improve page."""

    data_source: str
    variants: list[str]
    model_config: Any  # the baseline cnnviz.ModelConfig
    time_budget: float
    batch_size: int = 32
    events: list = dataclasses.field(default_factory=list)
    results: list = dataclasses.field(default_factory=list)  # cnnviz.compare VariantResults, as they finish
    error: str | None = None
    stop_event: threading.Event = dataclasses.field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    log_dir: str = dataclasses.field(default_factory=_new_log_dir)

    _failure = "Comparison failed"
    _out_of_memory = "Out of memory: use fewer variants, smaller images or a smaller batch."

    def start(self, data) -> None:
        self._launch(data, name="cnnviz-compare")

    def _on_event(self, event: dict) -> None:
        self._heartbeat()
        if event["event"] == "variant_end":
            self.results.append(event["result"])
        elif event["event"] != "batch_end" or not self.events or self.events[-1]["event"] != "batch_end":
            self.events.append(event)
        else:
            self.events[-1] = event  # only the latest batch matters for the progress line

    def _work(self, data) -> None:
        cnnviz.compare(
            data,
            self.variants,
            self.model_config,
            cnnviz.TrainConfig(epochs=1000, batch_size=self.batch_size),
            time_budget=self.time_budget,
            log_dir=self.log_dir,
            on_event=self._on_event,
            stop_event=self.stop_event,
        )

    def progress(self) -> tuple[float, str]:
        """A 0..1 fraction over all variants and a line of text for a progress bar."""
        events = list(self.events)
        begin = next((e for e in reversed(events) if e["event"] == "variant_begin"), None)
        if begin is None:
            return 0.0, "Preparing..."
        done = len(self.results)
        last = events[-1]
        elapsed = last.get("elapsed", 0.0) if last.get("variant") == begin["variant"] else 0.0
        within = min(elapsed / self.time_budget, 1.0) if self.time_budget else 0.0
        fraction = (done + (within if done < begin["total"] else 0.0)) / begin["total"]
        return min(fraction, 1.0), (
            f"variant {begin['index'] + 1} of {begin['total']}: {begin['variant']} · {elapsed:.0f} s"
            + (f" · epoch {last['epoch']}" if "epoch" in last else "")
        )
