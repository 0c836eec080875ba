"""The Fix-your-data page's logic: the audit in the background, the visitor's decisions, the fixed data,
the retrain on it and the before/after comparison.

The decisions are `cnnviz.cleaning.Fix` rows, the schema the CLI's `--apply` reads; the
original data is never changed (`cnnviz.cleaning.fixed_dataset` makes a new version).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import streamlit as st

import cnnviz
from cnnviz import cleaning
from ui.training import BackgroundJob, TrainingJob

#: Suspects shown per page of the grid.
PAGE_SIZE = 12
BUDGETS = (30, 60, 120, 240)


@dataclasses.dataclass(kw_only=True)
class AuditJob(BackgroundJob):
    """One `cnnviz.audit` run, with its progress."""

    source: str
    folds: int
    budget: float
    message: str = "Starting"
    share: float = 0.0
    audit: Any = None

    failure = "The audit failed"
    out_of_memory = "Out of memory: audit fewer or smaller images."

    def work(self) -> None:
        def progress(message: str, share: float) -> None:
            self.message, self.share = message, share
            if self.watched is not None and not self.watched():
                self.stop_event.set()  # nobody is waiting for it any more

        try:
            self.audit = cnnviz.audit(
                self.data,
                folds=self.folds,
                budget=self.budget,
                progress=progress,
                stop_event=self.stop_event,
            )
        except cleaning.AuditStopped as stopped:
            self.error = str(stopped)[:1].upper() + str(stopped)[1:]


@dataclasses.dataclass
class Fixing:
    """One audit and what the visitor decided about it (kept in the session)."""

    job: AuditJob
    decisions: dict = dataclasses.field(default_factory=dict)  # file -> cleaning.Fix
    heatmaps: dict = dataclasses.field(default_factory=dict)  # audit index -> Grad-CAM map
    retrain: TrainingJob | None = None
    before: Any = None  # the model it is compared with (the last run's, trained on the original data)
    images: Any = None  # the audited images, in order (made once)

    @property
    def audit(self):
        return self.job.audit

    def name(self, index: int) -> str:
        """How fixes name audit image `index`: its file, or its index for in-memory arrays."""
        files = self.audit.files
        return files[index] if files is not None else str(index)

    def decision(self, row: dict) -> str:
        """ "keep", "drop" or "relabel as <class>" for a suspect row."""
        fix = self.decisions.get(self.name(row["index"]))
        if fix is None or fix.action == "keep":
            return "keep"
        return "drop" if fix.action == "drop" else f"relabel as {fix.new_label}"

    def decide(self, row: dict, choice: str) -> None:
        self.retrain = None  # a comparison made before this decision would be stale
        name = self.name(row["index"])
        if choice == "keep":
            self.decisions[name] = cleaning.Fix(name, row["given"], "keep")
        elif choice == "drop":
            self.decisions[name] = cleaning.Fix(name, row["given"], "drop")
        else:
            self.decisions[name] = cleaning.Fix(
                name, row["given"], "relabel", choice.removeprefix("relabel as ")
            )

    def decide_all(self, action: str) -> None:
        """A bulk action over every suspect: "suggested" relabels each as the audit suggests."""
        for row in self.audit.suspects:
            self.decide(row, f"relabel as {row['suggested']}" if action == "suggested" else action)

    def changes(self) -> int:
        """Images whose label changes or which are dropped."""
        return sum(
            fix.action == "drop" or (fix.action == "relabel" and fix.new_label != fix.given)
            for fix in self.decisions.values()
        )

    def fixed_data(self):
        return cleaning.fixed_dataset(self.job.data, list(self.decisions.values()))

    def start_retrain(self, last: TrainingJob, before_model) -> TrainingJob:
        """Trains `last`'s request again on the fixed data (same design, settings and budget), in the background."""
        fixed = self.fixed_data()
        # The design and batch the last run used, not the defaults for the fixed data: a few images dropped
        # could cross the line for many small images and change both.
        request = dataclasses.replace(
            last.request,
            data=fixed,
            source=f"{last.request.source} (fixed)",
            design=last.request.model_config(),
            changes={},
            config=last.result.config,
        )
        self.retrain = TrainingJob(data=fixed, request=request, run_id=last.run_id)
        self.before = before_model
        self.retrain.start("cnnviz-retrain")
        return self.retrain

    def zip(self) -> bytes:
        """The fixed data as a zip of train/ and test/ class folders."""
        return cleaning.dataset_zip(self.fixed_data())

    def csv(self) -> str:
        """The decisions as the fixes file `cnnviz audit --apply` reads."""
        return cleaning.write_fixes(list(self.decisions.values()))


def choices(row: dict, class_names) -> list[str]:
    """What a suspect's action box offers: keep, relabel as the suggestion (first), as any other class, drop."""
    others = [name for name in class_names if name not in (row["given"], row["suggested"])]
    return ["keep", f"relabel as {row['suggested']}", *(f"relabel as {name}" for name in others), "drop"]


def top_classes(audit, index: int, count: int = 3) -> str:
    """ "dog 81 %, cat 12 %, fox 4 %": the out-of-fold top classes of an audited image."""
    probabilities = audit.probabilities[index]
    order = np.argsort(-probabilities)[:count]
    return ", ".join(f"{audit.class_names[i]} {probabilities[i]:.0%}" for i in order)


def heatmaps(fixing: Fixing, rows: list[dict], images) -> list:
    """Grad-CAM of each suspect for its suggested class, by the fold model that never saw it (kept)."""
    audit = fixing.audit
    missing = [row for row in rows if row["index"] not in fixing.heatmaps]
    for fold in sorted({int(audit.folds_of[row["index"]]) for row in missing}):
        chosen = [row for row in missing if audit.folds_of[row["index"]] == fold]
        batch = images[[row["index"] for row in chosen]]
        classes = [audit.class_names.index(row["suggested"]) for row in chosen]
        maps = cnnviz.explain(audit.models[fold], batch, method="gradcam", class_index=classes)
        for row, heatmap in zip(chosen, maps):
            fixing.heatmaps[row["index"]] = heatmap
    return [fixing.heatmaps[row["index"]] for row in rows]


def audited_images(fixing: Fixing):
    """The audited images, in the audit's order (training, then validation); made once per audit."""
    if fixing.images is None:
        data = fixing.job.data
        fixing.images = np.concatenate([part.images for part in (data.train, data.validation) if len(part)])
    return fixing.images


@dataclasses.dataclass(frozen=True)
class Comparison:
    """The same test images before and after the fixes."""

    before: Any  # cnnviz EvaluationResult
    after: Any
    changed: np.ndarray  # test indices whose prediction changed

    @property
    def difference(self) -> np.ndarray:
        return self.after.confusion_matrix - self.before.confusion_matrix


@st.cache_resource(max_entries=4, show_spinner="Scoring both models on the same test images...")
def compare(_before_model, _after_model, _test_data, key: str) -> Comparison:
    before = cnnviz.evaluate(_before_model, _test_data, split="test")
    after = cnnviz.evaluate(_after_model, _test_data, split="test")
    return Comparison(before, after, np.flatnonzero(before.predictions != after.predictions))


def retrain_share(job: TrainingJob) -> tuple[float, str]:
    """How far a retrain is, for a progress bar: by epochs, or by time for a time-budgeted run."""
    epochs = [event for event in list(job.events) if type(event).__name__ == "EpochEnd"]
    config = job.request.config
    if config.time_budget and not config.epochs:
        elapsed = epochs[-1].elapsed if epochs else 0.0
        return min(1.0, elapsed / config.time_budget), f"Retraining: {len(epochs)} epochs, {elapsed:.0f} s"
    total = config.epochs or 10
    return min(1.0, len(epochs) / total), f"Retraining: {len(epochs)} of {total} epochs"


def changed_captions(comparison: Comparison, test, class_names, limit: int = 12) -> tuple[list, list[str]]:
    """The test images whose prediction changed, captioned "true: before → after"."""
    shown = comparison.changed[:limit]
    before, after = comparison.before.predictions, comparison.after.predictions
    captions = [
        f"{class_names[test.labels[i]]}: {class_names[before[i]]} → {class_names[after[i]]}" for i in shown
    ]
    return [test.images[i] for i in shown], captions
