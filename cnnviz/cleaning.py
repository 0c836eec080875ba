"""Fix your data: images whose label is probably wrong, near-duplicates, outliers and confused class pairs.

`audit(data)` trains `folds` models, each on all but one fold of the training
images (training and validation splits together) for a number of epochs or its
share of the time budget, so that every image gets predicted probabilities from a model that
never saw it. Confident learning (cleanlab's `find_label_issues` and
`get_label_quality_scores`, Northcutt et al. 2021) ranks the images whose given
label those out-of-fold probabilities contradict most. The test split is never
touched: fixes change the training images only, and a before/after comparison
uses the same test images.

The audit says how far it can be trusted: the out-of-fold accuracy of its models.
Below `TRUSTED_ACCURACY` they cannot tell a wrong label from their own mistake, so
the ranking is withheld (`Audit.trusted` is False) and the verdict says why.

Fixes are rows of one schema, shared by the studio and `cnnviz audit --apply`:
`file,given,action,new_label` with `action` one of `keep`, `relabel`, `drop`
(`read_fixes`, `write_fixes`, `apply_fixes`, `fixed_dataset`).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from cnnviz.errors import ConfigError, DatasetError
from cnnviz.events import BatchEnd

__all__ = [
    "ACTIONS",
    "Audit",
    "AuditStopped",
    "Fix",
    "TRUSTED_ACCURACY",
    "apply_fixes",
    "audit",
    "dataset_zip",
    "fixed_dataset",
    "read_fixes",
    "write_fixes",
]

#: Out-of-fold accuracy below which the audit's models are too weak for their disagreements to mean a wrong label.
TRUSTED_ACCURACY = 0.7
#: What a fix may do to an image.
ACTIONS = ("keep", "relabel", "drop")
#: Two images closer than this (32x32 grey thumbnails, mean removed, unit length) count as near-duplicates:
#: the same picture re-saved or resized, not two pictures of the same kind.
DUPLICATE_DISTANCE = 0.05
#: An image whose distance to its 5 nearest training images (penultimate features) is this many times the
#: usual one is an outlier.
OUTLIER_RATIO = 3.0
_LIST_LIMIT = 50


class AuditStopped(ConfigError):
    """The audit was stopped before its last fold; nothing was kept."""


@dataclasses.dataclass(frozen=True)
class Audit:
    """What `audit` found.

    Attributes:
        class_names: the classes.
        files: each audited image's file (relative to the source), or None for arrays.
        labels: int64 `(N,)` the given labels.
        probabilities: float32 `(N, classes)`: out-of-fold predicted probabilities.
        suspects: dicts `{"index", "file", "given", "suggested", "score"}`, most likely wrong first;
            `score` is 1 - cleanlab's label quality (self-confidence). Empty when not `trusted`.
        ranking: the same ranking whether trusted or not (for a look behind the verdict).
        duplicates: dicts `{"files", "indices", "labels", "same_label", "distance"}`.
        outliers: dicts `{"index", "file", "label", "score"}` (score: distance ratio, at least `OUTLIER_RATIO`).
        confused_pairs: dicts `{"classes", "examples", "joint_probability"}`, most overlapping first.
        unreadable: dicts `{"file", "reason"}`: files the source could not read (never ranked).
        fold_accuracy: out-of-fold accuracy of each fold's model.
        accuracy: out-of-fold accuracy over all images.
        trusted: whether `accuracy` reaches `TRUSTED_ACCURACY`.
        verdict: one sentence on what the ranking is worth.
        seconds: wall time of the audit.
        models: the fold models (model `folds_of[i]` never saw image `i`: explain an image with it).
        folds_of: int64 `(N,)`: the fold each image was held out in.
    """

    class_names: tuple[str, ...]
    files: list[str] | None
    labels: NDArray[np.int64]
    probabilities: NDArray[np.float32]
    suspects: list[dict]
    ranking: list[dict]
    duplicates: list[dict]
    outliers: list[dict]
    confused_pairs: list[dict]
    unreadable: list[dict]
    fold_accuracy: list[float]
    accuracy: float
    trusted: bool
    verdict: str
    seconds: float
    models: tuple = ()
    folds_of: NDArray[np.int64] | None = None

    def to_json(self) -> dict:
        """The `cnnviz audit --json` document."""
        strip = lambda rows: [{k: v for k, v in row.items() if k not in ("index", "indices")} for row in rows]  # noqa: E731
        return {
            "suspects": strip(self.suspects),
            "duplicates": strip(self.duplicates),
            "outliers": strip(self.outliers),
            "confused_pairs": self.confused_pairs,
            "unreadable": self.unreadable,
            "out_of_fold_accuracy": round(self.accuracy, 4),
            "fold_accuracy": [round(value, 4) for value in self.fold_accuracy],
            "trusted": self.trusted,
            "verdict": self.verdict,
            "images": int(len(self.labels)),
            "seconds": round(self.seconds, 2),
        }

    def suggested_fixes(self, limit: int | None = None) -> list[Fix]:
        """A `relabel` fix for each suspect (the first `limit`): its label to the class the models chose."""
        return [
            Fix(
                row["file"] if row["file"] is not None else str(row["index"]),
                row["given"],
                "relabel",
                row["suggested"],
            )
            for row in self.suspects[:limit]
        ]


def _pool(data):
    """The audited images: training and validation splits together, with their files."""
    parts = [part for part in (data.train, data.validation) if len(part)]
    if not parts:
        raise DatasetError(f"{data.name}: there are no training images to audit.")
    images = np.concatenate([part.images for part in parts])
    if images.ndim == 3:  # grey images without a channel axis
        images = images[..., None]
    labels = np.concatenate([part.labels for part in parts]).astype(np.int64)
    files = None if any(part.files is None for part in parts) else [f for part in parts for f in part.files]
    return images, labels, files


def _check_folds(labels, class_names, folds: int) -> None:
    if not 2 <= int(folds) <= 10:
        raise ConfigError(f"folds must be 2 to 10, got {folds}.")
    counts = np.bincount(labels, minlength=len(class_names))
    short = [f"{name} ({count})" for name, count in zip(class_names, counts) if count < folds]
    if short:
        raise ConfigError(
            f"an audit with {folds} folds needs at least {folds} training images per class; "
            f"too few in: {', '.join(short)}. Add images to those classes, or use fewer folds (at least 2)."
        )


DEFAULT_BUDGET = 120.0  # seconds for all folds together, when neither a budget nor epochs are given


def fold_config(folds: int, budget: float | None, epochs: int | None, seed: int):
    """The `TrainConfig` each of `folds` fold models trains with (see `audit` for `budget` and `epochs`).

    No validation images are held out of a fold: the held-out fold is what the audit is for, and a small
    class would have none to spare.
    """
    from cnnviz.training.config import TrainConfig

    if budget is None and epochs is None:
        budget = DEFAULT_BUDGET
    if budget is not None and (
        isinstance(budget, bool) or not isinstance(budget, (int, float)) or not float(budget) > 0
    ):
        raise ConfigError(f"budget must be a positive number of seconds, got {budget!r}.")
    return TrainConfig(
        epochs=epochs,
        time_budget=None if budget is None else float(budget) / folds,
        seed=seed,
        validation_split=0.0,
    )


def audit(
    data,
    design="fast",
    folds: int = 3,
    budget: float | None = None,
    seed: int = 0,
    *,
    epochs: int | None = None,
    changes: Mapping | None = None,
    progress: Callable[[str, float], None] | None = None,
    stop_event: threading.Event | None = None,
) -> Audit:
    """Finds the training images whose label is probably wrong, near-duplicates, outliers and confused classes.

    Args:
        data: a `cnnviz.Dataset`, or a source for `cnnviz.load_dataset` (a folder, a zip, a built-in name).
            Its test split is left alone.
        design: what each fold trains (a preset name or a config), as for `cnnviz.train`: a preset is
            fitted to each fold's training images (`cnnviz.models.fit_design`), as `cnnviz.train` fits it.
        folds: int, 2 to 10. Defaults to `3`.
        budget: float, seconds of training for all folds together. Defaults to `120` without
            `epochs`, and to no limit with them.
        seed: int, for the folds and the training runs.
        epochs: int, epochs each fold trains, or `None` (the default) to train until the budget is
            spent. Epochs give the same training on a fast machine and a slow one; with a budget
            too, whichever ends first stops the fold.
        changes: fields of the design's family to change (flat names), as `cnnviz train --set` gives them.
        progress: optional callable `(message, share done)`.
        stop_event: optional `threading.Event`; setting it stops the audit within one training batch
            and raises `AuditStopped` (nothing is kept).

    Returns:
        An `Audit`.

    Raises:
        ConfigError: bad settings, or a class with fewer images than folds.
        AuditStopped: `stop_event` was set.
    """
    import cnnviz
    from cnnviz.data import Dataset
    from cnnviz.embedding import features as penultimate
    from cnnviz.models import fit_design

    started = time.perf_counter()
    report = progress or (lambda message, share: None)
    fold_config(2, budget, epochs, seed)  # bad settings are told before any image is read
    if not isinstance(data, Dataset):
        report("Reading the images", 0.0)
        data = cnnviz.load_dataset(data, seed=seed)
    images, labels, files = _pool(data)
    class_names = tuple(data.class_names)
    _check_folds(labels, class_names, folds)

    def fitted(num_images: int | None):
        return fit_design(
            design, images.shape[1:], max(len(class_names), 2), num_images=num_images, **(changes or {})
        )

    fitted(None)  # a bad design or change is told before any training
    from sklearn.model_selection import StratifiedKFold

    splitter = StratifiedKFold(n_splits=int(folds), shuffle=True, random_state=seed)
    probabilities = np.zeros((len(labels), len(class_names)), np.float32)
    outlier_scores = np.zeros(len(labels), np.float64)
    fold_accuracy = []
    models = []
    folds_of = np.zeros(len(labels), np.int64)
    config = fold_config(folds, budget, epochs, seed)
    for fold, (train_index, held_index) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
        report(f"Training fold {fold + 1} of {folds} ({len(train_index)} images)", 0.95 * fold / folds)

        def on_event(event, fold=fold, count=len(train_index)) -> None:
            if not isinstance(event, BatchEnd):
                return
            done = event.progress  # with a budget: its share spent, or the epochs' share when further
            if done is None:  # epochs alone end the fold
                done = (event.epoch - 1 + event.batch / event.steps) / config.epochs
            share = (fold + min(1.0, done)) / folds
            report(f"Training fold {fold + 1} of {folds} ({count} images)", 0.95 * share)

        result = cnnviz.train(
            fitted(len(train_index)),
            (images[train_index], labels[train_index]),
            dataclasses.replace(config, seed=seed + fold),
            stop_event=stop_event,
            on_event=on_event,
        )
        if stop_event is not None and stop_event.is_set():
            raise AuditStopped("the audit was stopped; nothing was kept. Run it again to finish it.")
        models.append(result.model)
        folds_of[held_index] = fold
        held = cnnviz.predict_probabilities(result.model, images[held_index])
        probabilities[held_index] = held
        fold_accuracy.append(float(np.mean(held.argmax(axis=1) == labels[held_index])))
        # A seeded sample of the fold's training images (not the first ones: a pool may be ordered by class).
        sample = np.random.default_rng(seed + fold).permutation(train_index)[:2000]
        outlier_scores[held_index] = _outlier_scores(
            penultimate(result.model, images[sample]), penultimate(result.model, images[held_index])
        )
    report("Ranking the labels", 0.97)
    accuracy = float(np.mean(probabilities.argmax(axis=1) == labels))
    trusted = accuracy >= TRUSTED_ACCURACY
    ranking = _ranking(labels, probabilities, files, class_names)
    if trusted:
        verdict = (
            f"The audit's models are right on {accuracy:.0%} of the images they did not see: where they "
            f"confidently disagree with a label, the label is worth a look ({len(ranking)} images)."
        )
    else:
        verdict = (
            f"The audit's models are right on only {accuracy:.0%} of the images they did not see (under "
            f"{TRUSTED_ACCURACY:.0%}): too weak to tell a wrong label from their own mistake, so no suspects "
            "are reported. Give the audit more epochs or a larger budget, or more images per class."
        )
    return Audit(
        class_names=class_names,
        files=files,
        labels=labels,
        probabilities=probabilities,
        suspects=ranking if trusted else [],
        ranking=ranking,
        duplicates=_duplicates(images, labels, files, class_names),
        outliers=_outliers(outlier_scores, labels, files, class_names),
        confused_pairs=_confused_pairs(labels, probabilities, class_names),
        unreadable=[
            {"file": file, "reason": reason} for file, reason in (data.report.skipped if data.report else [])
        ],
        fold_accuracy=fold_accuracy,
        accuracy=accuracy,
        trusted=trusted,
        verdict=verdict,
        seconds=time.perf_counter() - started,
        models=tuple(models),
        folds_of=folds_of,
    )


def _ranking(labels, probabilities, files, class_names) -> list[dict]:
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    issues = find_label_issues(labels, probabilities, return_indices_ranked_by="self_confidence")
    quality = get_label_quality_scores(labels, probabilities, method="self_confidence")
    return [
        {
            "index": int(index),
            "file": None if files is None else files[index],
            "given": class_names[labels[index]],
            "suggested": class_names[int(probabilities[index].argmax())],
            "score": round(float(1.0 - quality[index]), 4),
        }
        for index in issues
    ]


def _thumbnails(images) -> NDArray[np.float32]:
    """32x32 grey thumbnails, mean removed, unit length: near-duplicates are near each other."""
    from PIL import Image

    grey = images.astype(np.float32).mean(axis=-1) if images.ndim == 4 else images.astype(np.float32)
    small = np.stack([np.asarray(Image.fromarray(g).resize((32, 32), Image.BILINEAR)) for g in grey])
    small = small.reshape(len(small), -1)
    small -= small.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(small, axis=1, keepdims=True)
    return small / np.where(norms > 0, norms, 1.0)


def _duplicates(images, labels, files, class_names) -> list[dict]:
    from sklearn.neighbors import NearestNeighbors

    if len(images) < 2:
        return []
    thumbs = _thumbnails(images)
    pairs = (
        NearestNeighbors(radius=DUPLICATE_DISTANCE).fit(thumbs).radius_neighbors(thumbs, return_distance=True)
    )
    found = []
    for first, (distances, neighbours) in enumerate(zip(*pairs)):
        for distance, second in zip(distances, neighbours):
            if second > first:
                found.append((float(distance), first, int(second)))
    # The same image under two labels first (one of the two is wrong), then the closest.
    found.sort(key=lambda pair: (bool(labels[pair[1]] == labels[pair[2]]), pair[0]))
    rows = []
    for distance, first, second in found[:_LIST_LIMIT]:
        rows.append(
            {
                "indices": [first, second],
                "files": None if files is None else [files[first], files[second]],
                "labels": [class_names[labels[first]], class_names[labels[second]]],
                "same_label": bool(labels[first] == labels[second]),
                "distance": round(distance, 4),
            }
        )
    return rows


def _outlier_scores(train_features, held_features, neighbours: int = 5) -> NDArray[np.float64]:
    """Each held-out image's mean distance to its nearest training images, over the training images' own."""
    from sklearn.neighbors import NearestNeighbors

    count = min(neighbours, len(train_features) - 1)
    if count < 1:
        return np.zeros(len(held_features))
    index = NearestNeighbors(n_neighbors=count + 1).fit(train_features)
    usual = index.kneighbors(train_features)[0][:, 1:].mean(axis=1)  # itself left out
    distance = index.kneighbors(held_features, n_neighbors=count)[0].mean(axis=1)
    scale = float(np.median(usual))
    return distance / scale if scale > 0 else np.zeros(len(held_features))


def _outliers(scores, labels, files, class_names) -> list[dict]:
    order = [int(i) for i in np.argsort(-scores) if scores[i] >= OUTLIER_RATIO][:_LIST_LIMIT]
    return [
        {
            "index": index,
            "file": None if files is None else files[index],
            "label": class_names[labels[index]],
            "score": round(float(scores[index]), 2),
        }
        for index in order
    ]


def _confused_pairs(labels, probabilities, class_names) -> list[dict]:
    from cleanlab.dataset import find_overlapping_classes

    table = find_overlapping_classes(labels=labels, pred_probs=probabilities)
    rows = []
    for _, row in table.head(10).iterrows():
        if int(row["Num Overlapping Examples"]) <= 0:
            continue
        rows.append(
            {
                "classes": [class_names[int(row["Class Index A"])], class_names[int(row["Class Index B"])]],
                "examples": int(row["Num Overlapping Examples"]),
                "joint_probability": round(float(row["Joint Probability"]), 4),
            }
        )
    return rows


@dataclasses.dataclass(frozen=True)
class Fix:
    """One row of a fixes file: what to do with one training image."""

    file: str
    given: str
    action: str
    new_label: str = ""


_HEADER = ["file", "given", "action", "new_label"]


def write_fixes(fixes: list[Fix]) -> str:
    """The fixes as CSV text: `file,given,action,new_label`."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(_HEADER)
    for fix in fixes:
        writer.writerow([fix.file, fix.given, fix.action, fix.new_label if fix.action == "relabel" else ""])
    return out.getvalue()


def read_fixes(text: str, class_names) -> list[Fix]:
    """Parses and checks fixes CSV text; every problem is reported with its line number.

    Raises:
        ConfigError: a wrong header, an unknown action, a relabel without a known class, a file listed twice.
    """
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as error:
        raise ConfigError(f"the fixes file is not readable CSV ({error}).") from None
    if not rows or [cell.strip() for cell in rows[0]] != _HEADER:
        raise ConfigError(f"a fixes file starts with the header line {','.join(_HEADER)}.")
    names = set(class_names)
    fixes, seen, problems = [], set(), []
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != 4:
            problems.append(f"line {number}: expected 4 fields, got {len(row)}")
            continue
        file, given, action, new_label = (cell.strip() for cell in row)
        if action not in ACTIONS:
            problems.append(f"line {number}: action must be keep, relabel or drop, got {action!r}")
        elif action == "relabel" and new_label not in names:
            problems.append(
                f"line {number}: relabel needs new_label, one of {', '.join(class_names)}; got {new_label!r}"
            )
        elif file in seen:
            problems.append(f"line {number}: {file} is listed twice")
        else:
            seen.add(file)
            fixes.append(Fix(file, given, action, new_label if action == "relabel" else ""))
    if problems:
        raise ConfigError(
            "the fixes file has problems: "
            + "; ".join(problems[:10])
            + ("; ..." if len(problems) > 10 else "")
            + "."
        )
    return fixes


def fixed_dataset(data, fixes: list[Fix]):
    """A new `Dataset` with the fixes applied to its training and validation images; `data` is unchanged.

    Fixes name images by file (or, for arrays, by their audit index as text); the test split is kept as it is.

    Raises:
        ConfigError: a fix names an image that is not among the training images.
    """
    from cnnviz.data import Split

    images, labels, files = _pool(data)
    names = files if files is not None else [str(index) for index in range(len(labels))]
    position = {name: index for index, name in enumerate(names)}
    unknown = [fix.file for fix in fixes if fix.file not in position]
    if unknown:
        raise ConfigError(
            f"{len(unknown)} fixes name images that are not training images here, e.g. {unknown[0]}."
        )
    class_index = {name: index for index, name in enumerate(data.class_names)}
    labels = labels.copy()
    keep = np.ones(len(labels), bool)
    for fix in fixes:
        if fix.action == "relabel":
            labels[position[fix.file]] = class_index[fix.new_label]
        elif fix.action == "drop":
            keep[position[fix.file]] = False
    train_count = len(data.train)
    part = lambda selected: Split(  # noqa: E731
        images[selected], labels[selected], None, None if files is None else [files[i] for i in selected]
    )
    everything = np.arange(len(labels))
    train = part(everything[:train_count][keep[:train_count]])
    validation = part(everything[train_count:][keep[train_count:]])
    return dataclasses.replace(data, train=train, validation=validation, name=f"{data.name} (fixed)")


def _free_name(target: Path, taken: set) -> Path:
    """`target`, or `name-2.ext`, `name-3.ext`, ...: the first not yet taken (then taken)."""
    candidate, number = target, 1
    while candidate in taken:
        number += 1
        candidate = target.with_name(f"{target.stem}-{number}{target.suffix}")
    taken.add(candidate)
    return candidate


def apply_fixes(
    source: str | os.PathLike, fixes: list[Fix], out: str | os.PathLike, data=None, seed: int = 0
) -> dict:
    """Writes a fixed copy of a folder the audit read, as `out/train/<class>/` and `out/test/<class>/`.

    Kept images are copied, relabelled ones go to their new class's folder, dropped ones
    are left out. The test split is the one the audit set aside (`seed` draws it, as for
    the audit, unless the folder has its own train/ and test/ folders): it is copied as
    it is, and a fix that names a test image is refused. `source` is never changed; `out`
    must not exist yet (it is written whole, then renamed into place, so a failure leaves
    nothing half-written). `cnnviz.load_dataset(out)` reads the same test images back.

    Args:
        source: the folder of class folders.
        fixes: `Fix` rows (see `read_fixes`); files are paths relative to `source`, as the audit gives them.
        out: a new folder.
        data: the source as `cnnviz.load_dataset(source, seed=seed)` loads it, if already at hand.
        seed: the audit's seed.

    Returns:
        Counts: `{"kept", "relabelled", "dropped", "test"}`.
    """
    import cnnviz

    source, out = Path(source).resolve(), Path(out).resolve()
    if not source.is_dir():
        raise ConfigError(
            f"{source} is not a folder; fixes apply to the folder of class folders the audit read."
        )
    if out.exists():
        raise ConfigError(
            f"{out} already exists; give a new folder for the fixed copy (it is written whole)."
        )
    if out == source or source in out.parents:
        raise ConfigError("the fixed copy must go outside the source folder: the source is never changed.")
    data = data if data is not None else cnnviz.load_dataset(source, seed=seed)
    class_names = tuple(data.class_names)
    split_of, label_of = {}, {}
    for split_name in ("train", "validation", "test"):
        part = getattr(data, split_name)
        if part.files is None:
            raise ConfigError(f"{source}: its images have no file names to match fixes with.")
        for file, label in zip(part.files, part.labels):
            split_of[file], label_of[file] = split_name, int(label)
    problems = []
    for fix in fixes:
        if fix.file not in split_of:
            problems.append(f"{fix.file} is not an image in {source.name}")
        elif split_of[fix.file] == "test":
            problems.append(
                f"{fix.file} is a test image (the test split stays as it is, to compare before and after)"
            )
        elif fix.action not in ACTIONS:
            problems.append(f"{fix.file}: action must be keep, relabel or drop, got {fix.action!r}")
        elif fix.action == "relabel" and fix.new_label not in class_names:
            problems.append(
                f"{fix.file}: new_label must be one of {', '.join(class_names)}, got {fix.new_label!r}"
            )
    if problems:
        more = "; ..." if len(problems) > 5 else ""
        raise ConfigError(f"{len(problems)} fixes cannot be applied: " + "; ".join(problems[:5]) + more + ".")
    by_file = {fix.file: fix for fix in fixes}
    counts = {"kept": 0, "relabelled": 0, "dropped": 0, "test": 0}
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".cnnviz-fixed-", dir=out.parent))
    taken: set = set()
    try:
        # Relabelled images last: on a name clash in their new class, they are the ones renamed.
        ordered = sorted(split_of, key=lambda file: file in by_file and by_file[file].action == "relabel")
        for file in ordered:
            fix = by_file.get(file)
            label = label_of[file]
            if split_of[file] == "test":
                counts["test"] += 1
            elif fix is not None and fix.action == "drop":
                counts["dropped"] += 1
                continue
            elif fix is not None and fix.action == "relabel" and class_names.index(fix.new_label) != label:
                label = class_names.index(fix.new_label)
                counts["relabelled"] += 1
            else:
                counts["kept"] += 1
            folder = "test" if split_of[file] == "test" else "train"
            target = _free_name(staging / folder / class_names[label] / Path(file).name, taken)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / file, target)
        for folder in ("train", "test"):  # a class every image left is still a class
            for name in class_names:
                (staging / folder / name).mkdir(parents=True, exist_ok=True)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return counts


def dataset_zip(data) -> bytes:
    """Every image of `data` as a zip of `train/<class>/` and `test/<class>/` folders of PNG files (validation
    images go with train), under their own file names where known. `cnnviz.load_dataset` reads it back with
    the same test images."""
    import zipfile

    from PIL import Image

    buffer = io.BytesIO()
    used: set = set()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for split_name in ("train", "validation", "test"):
            part = getattr(data, split_name)
            for index in range(len(part)):
                label = data.class_names[int(part.labels[index])]
                stem = Path(part.files[index]).stem if part.files is not None else f"{split_name}-{index:05d}"
                folder = "test" if split_name == "test" else "train"
                name = _free_name(Path(folder) / label / f"{stem}.png", used).as_posix()
                image = part.images[index]
                png = io.BytesIO()
                Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(png, format="PNG")
                archive.writestr(name, png.getvalue())
    return buffer.getvalue()
