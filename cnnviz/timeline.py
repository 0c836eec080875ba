"""A timeline of the network learning: fixed probe images, recorded before training and after every epoch.

This module holds the snapshots, their storage and their pictures (no TensorFlow);
`cnnviz.training.timeline.TimelineRecorder` records them during `fit`.

`TrainConfig(timeline=K)` keeps K validation images spread over the classes and
records a `Snapshot` at epoch 0 (before any step) and after every epoch: what
the model says about each probe, where Grad-CAM (at the default layer; saliency
for a model with no convolution map) looks for its true class, the first
layer's kernels, the validation accuracy, and the penultimate features of up to
`MAX_FEATURE_IMAGES` validation images (training images when there is no
validation split), for a map of how the classes separate. Each snapshot shows
the weights at that epoch's end; the returned model holds the best weights seen,
which may be an earlier epoch's. A long run keeps at most `MAX_SNAPSHOTS`. `TrainResult.timeline` holds them;
`cnnviz.save_model` stores them inside the `.keras` file (`timeline.npz`) and
`cnnviz.load_model` gives them back (`timeline_of(model)`).
"""

from __future__ import annotations

import dataclasses
import io
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cnnviz.errors import ConfigError, ModelFileError

__all__ = [
    "MAX_FEATURE_IMAGES",
    "Snapshot",
    "attach",
    "dump_timeline",
    "frames",
    "load_timeline",
    "probe_indices",
    "thin",
    "strips",
    "timeline_of",
    "write_timeline",
]

#: Validation images whose penultimate features each snapshot keeps (float16).
MAX_FEATURE_IMAGES = 500
#: The model attribute that carries the timeline (saved with the model).
_ATTRIBUTE = "_cnnviz_timeline"
#: The arrays of a snapshot, as stored.
_FIELDS = ("labels", "probabilities", "heatmaps", "kernels", "features", "feature_labels")


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """The network at one epoch.

    Attributes:
        epoch: int, 0 before training, then the epochs completed.
        images: uint8 `(K, H, W, C)`, the probe images (the same array in every snapshot).
        labels: int64 `(K,)`, the probe images' true classes (the same in every snapshot).
        probabilities: float32 `(K, classes)`: what the model said about each probe.
        heatmaps: float32 `(K, H, W)` in [0, 1]: Grad-CAM at the default layer, for the true class
            (saliency for a model with no convolution map).
        kernels: uint8 `(F, kh, kw, 3)` or `(F, kh, kw)`: the first convolution's kernels as images.
        val_accuracy: float, or `None` (before training, or without validation images).
        features: float16 `(M, D)`: penultimate features of up to `MAX_FEATURE_IMAGES` validation
            images (training images without a validation split; empty for a model with no dense
            layer, or for some epochs of a saved long run with wide features).
        feature_labels: int64 `(M,)`: their classes.
        seconds: float, what recording this snapshot took.
    """

    epoch: int
    images: NDArray[np.uint8]
    labels: NDArray[np.int64]
    probabilities: NDArray[np.float32]
    heatmaps: NDArray[np.float32]
    kernels: NDArray[np.uint8]
    val_accuracy: float | None
    features: NDArray[np.float16]
    feature_labels: NDArray[np.int64]
    seconds: float = 0.0

    @property
    def predictions(self) -> NDArray[np.int64]:
        return self.probabilities.argmax(axis=1)


def probe_indices(labels: NDArray, count: int) -> NDArray[np.int64]:
    """`count` positions spread over the classes: the first image of each class, then the second, ..."""
    labels = np.asarray(labels)
    per_class = [np.flatnonzero(labels == label) for label in np.unique(labels)]
    chosen: list[int] = []
    for rank in range(max((len(members) for members in per_class), default=0)):
        for members in per_class:
            if rank < len(members) and len(chosen) < count:
                chosen.append(int(members[rank]))
    return np.asarray(chosen, np.int64)


def attach(model, snapshots: list[Snapshot]) -> None:
    """Carries the timeline on the model object, so `save_model` writes it."""
    object.__setattr__(model, _ATTRIBUTE, list(snapshots))


def timeline_of(model) -> list[Snapshot] | None:
    """The timeline a model was trained with (`TrainConfig(timeline=K)`), or `None`."""
    return getattr(model, _ATTRIBUTE, None)


#: Most snapshots a run keeps: past it, every other snapshot between the first and the last goes.
MAX_SNAPSHOTS = 101
#: Most bytes of features a saved timeline keeps (a wide backbone's 1,280 features of 500 images are 1.3 MB
#: per snapshot): past it, only every k-th snapshot keeps its features.
FEATURE_BUDGET = 32 * 1024**2
#: Most bytes a saved timeline may unpack to before `load_timeline` refuses it.
MAX_INFLATED_BYTES = 160 * 1024**2


def thin(snapshots: list[Snapshot], most: int = MAX_SNAPSHOTS) -> list[Snapshot]:
    """At most `most` snapshots: the first, the last and, between them, every other one until they fit."""
    snapshots = list(snapshots)
    while len(snapshots) > max(2, most):
        snapshots = snapshots[:1] + snapshots[1:-1][1::2] + snapshots[-1:]
    return snapshots


def dump_timeline(snapshots: list[Snapshot]) -> bytes:
    """The timeline as `.npz` bytes: heatmaps as uint8, features as float16; no pickles.

    Features beyond `FEATURE_BUDGET` bytes are kept on every k-th snapshot only (the others get none).
    """
    total = sum(snapshot.features.nbytes for snapshot in snapshots)
    every = max(1, -(-total // FEATURE_BUDGET))
    arrays: dict[str, Any] = {
        "epochs": np.asarray([snapshot.epoch for snapshot in snapshots], np.int64),
        "val_accuracy": np.asarray(
            [np.nan if snapshot.val_accuracy is None else snapshot.val_accuracy for snapshot in snapshots],
            np.float64,
        ),
        "seconds": np.asarray([snapshot.seconds for snapshot in snapshots], np.float64),
        "images": snapshots[0].images if snapshots else np.zeros((0, 1, 1, 1), np.uint8),
    }
    for index, snapshot in enumerate(snapshots):
        for field in _FIELDS:
            value = getattr(snapshot, field)
            if field == "heatmaps":
                value = np.rint(np.clip(value, 0, 1) * 255).astype(np.uint8)
            elif field in ("features", "feature_labels") and index % every and index != len(snapshots) - 1:
                value = value[:0]
            arrays[f"{index}/{field}"] = value
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def load_timeline(data: bytes, name: str = "model") -> list[Snapshot]:
    """The snapshots `dump_timeline` wrote; `ModelFileError` for anything else.

    The file may come from anyone: its members must unpack to at most `MAX_INFLATED_BYTES` (checked
    before any is read), hold numbers of the expected kinds and dimensions, and fit each other.
    """
    import zipfile

    damaged = f"{name}: its timeline is damaged"
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            inflated = sum(entry.file_size for entry in archive.infolist())
        if inflated > MAX_INFLATED_BYTES:
            raise ModelFileError(
                f"{name}: its timeline unpacks to {inflated / 1024**2:,.0f} MB, over the limit."
            )
        with np.load(io.BytesIO(data), allow_pickle=False) as stored:
            epochs = _checked(stored["epochs"], "iu", 1, damaged)
            accuracies = _checked(stored["val_accuracy"], "f", 1, damaged)
            seconds = _checked(stored["seconds"], "f", 1, damaged)
            images = _checked(stored["images"], "u", 4, damaged)
            if not len(epochs) == len(accuracies) == len(seconds):
                raise ModelFileError(f"{damaged} (per-epoch arrays of different lengths).")
            snapshots = []
            for index, epoch in enumerate(epochs):
                values = {
                    field: _checked(stored[f"{index}/{field}"], kinds, dimensions, damaged)
                    for field, kinds, dimensions in _KINDS
                }
                count, classes = len(images), values["probabilities"].shape[-1]
                if (
                    values["labels"].shape != (count,)
                    or values["probabilities"].shape != (count, classes)
                    or values["heatmaps"].shape != images.shape[:3]
                    or len(values["features"]) != len(values["feature_labels"])
                    or values["labels"].min(initial=0) < 0
                    or values["labels"].max(initial=0) >= max(classes, 1)
                ):
                    raise ModelFileError(f"{damaged} (arrays that do not fit each other).")
                values["heatmaps"] = values["heatmaps"].astype(np.float32) / 255.0
                values["probabilities"] = values["probabilities"].astype(np.float32)
                accuracy = float(accuracies[index])
                snapshots.append(
                    Snapshot(
                        int(epoch),
                        images=images,
                        val_accuracy=None if np.isnan(accuracy) else accuracy,
                        seconds=float(seconds[index]),
                        **values,
                    )
                )
    except ModelFileError:
        raise
    except (KeyError, ValueError, OSError, IndexError, TypeError, MemoryError, zipfile.BadZipFile) as error:
        raise ModelFileError(f"{damaged} ({str(error)[:120] or type(error).__name__}).") from None
    return snapshots


#: Each stored snapshot array: its name, the dtype kinds it may have, its dimensions.
_KINDS = (
    ("labels", "iu", 1),
    ("probabilities", "f", 2),
    ("heatmaps", "u", 3),
    ("kernels", "u", None),
    ("features", "f", 2),
    ("feature_labels", "iu", 1),
)


def _checked(array: NDArray, kinds: str, dimensions: int | None, damaged: str) -> NDArray:
    if array.dtype.kind not in kinds or (dimensions is not None and array.ndim != dimensions):
        raise ModelFileError(f"{damaged} (an array of {array.dtype} with {array.ndim} dimensions).")
    return array


def _name(class_names: tuple[str, ...], index: int) -> str:
    return class_names[index] if 0 <= index < len(class_names) else f"class_{index}"


def _tile_size(images: NDArray) -> tuple[int, int]:
    """Tiles at least 96 px wide, so a caption fits under each."""
    height, width = images.shape[1:3]
    scale = max(1.0, 96 / width)
    return round(height * scale), round(width * scale)


def strips(snapshots: list[Snapshot], class_names: tuple[str, ...], opacity: float = 0.45) -> list:
    """One PIL image per probe: its heatmap overlay at every snapshot, left to right, with the epoch,
    the top class and its probability under each (green when right, red when wrong)."""
    from PIL import Image, ImageDraw

    from cnnviz.render import overlay

    if not snapshots:
        raise ConfigError("the timeline is empty.")
    images = snapshots[0].images
    height, width = _tile_size(images)
    caption = 30
    result = []
    for probe, image in enumerate(images):
        strip = Image.new("RGB", (width * len(snapshots), height + caption), "white")
        draw = ImageDraw.Draw(strip)
        for column, snapshot in enumerate(snapshots):
            tile = Image.fromarray(overlay(image, snapshot.heatmaps[probe], opacity=opacity))
            strip.paste(tile.resize((width, height), Image.Resampling.NEAREST), (column * width, 0))
            predicted = int(snapshot.probabilities[probe].argmax())
            right = predicted == int(snapshot.labels[probe])
            text = f"epoch {snapshot.epoch}\n{_name(class_names, predicted)[:12]} {snapshot.probabilities[probe, predicted]:.0%}"
            draw.text((column * width + 3, height + 2), text, fill=(46, 125, 50) if right else (198, 40, 40))
        result.append(strip)
    return result


def frames(
    snapshots: list[Snapshot], class_names: tuple[str, ...], columns: int = 4, opacity: float = 0.45
) -> list:
    """One PIL image per snapshot: every probe's overlay in a grid, titled with the epoch and accuracy."""
    from PIL import Image, ImageDraw

    from cnnviz.render import overlay

    images = snapshots[0].images
    height, width = _tile_size(images)
    columns = max(1, min(columns, len(images)))
    rows = -(-len(images) // columns)
    result = []
    for snapshot in snapshots:
        frame = Image.new("RGB", (columns * width, rows * (height + 16) + 20), "white")
        draw = ImageDraw.Draw(frame)
        accuracy = (
            "" if snapshot.val_accuracy is None else f", validation accuracy {snapshot.val_accuracy:.1%}"
        )
        draw.text((4, 4), f"epoch {snapshot.epoch}{accuracy}", fill="black")
        for probe, image in enumerate(images):
            top, left = 20 + (probe // columns) * (height + 16), (probe % columns) * width
            tile = Image.fromarray(overlay(image, snapshot.heatmaps[probe], opacity=opacity))
            frame.paste(tile.resize((width, height), Image.Resampling.NEAREST), (left, top))
            predicted = int(snapshot.probabilities[probe].argmax())
            right = predicted == int(snapshot.labels[probe])
            draw.text(
                (left + 2, top + height + 2),
                _name(class_names, predicted)[:12],
                fill=(46, 125, 50) if right else (198, 40, 40),
            )
        result.append(frame)
    return result


def write_timeline(snapshots: list[Snapshot], class_names: tuple[str, ...], folder) -> dict[str, Any]:
    """Writes `probe_<i>.png` strips and `timeline.gif` (one frame per snapshot) into `folder`."""
    from pathlib import Path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for index, strip in enumerate(strips(snapshots, class_names)):
        target = folder / f"probe_{index}.png"
        strip.save(target)
        written.append(str(target))
    animation = frames(snapshots, class_names)
    gif = folder / "timeline.gif"
    animation[0].save(gif, save_all=True, append_images=animation[1:], duration=600, loop=0)
    return {"strips": written, "gif": str(gif)}
