"""Records the timeline (`cnnviz.timeline`) while `fit` runs: a Keras callback."""

from __future__ import annotations

import time

import keras
import numpy as np
from numpy.typing import NDArray

from cnnviz.timeline import MAX_FEATURE_IMAGES, Snapshot, attach, probe_indices, thin
from cnnviz.training.control import bad_loss

__all__ = ["TimelineRecorder", "attach", "feature_images"]


def _feature_split(source) -> str:
    return "validation" if source.size("validation") else "train"


def feature_images(data, config=None) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
    """The images (and labels) whose features each snapshot of a run on `data` keeps, in the same order.

    Args:
        data: what the run trained on (a `Dataset`, an `ImageStream` or arrays, as for `cnnviz.train`).
        config: the run's `TrainConfig`, where data without a validation split had one held out
            (its `validation_split` and `seed` choose which images); not needed otherwise.

    Returns:
        uint8 `(M, H, W, C)` images and int64 `(M,)` labels: the first `MAX_FEATURE_IMAGES`
        validation images, or training images when there is no validation split.
    """
    from cnnviz.training.sources import as_source

    source = as_source(data)
    if config is not None:
        source = source.with_validation(config.validation_split, config.seed)
    return source.arrays(_feature_split(source), limit=MAX_FEATURE_IMAGES)


class TimelineRecorder(keras.callbacks.Callback):
    """Records a `Snapshot` before training and after every epoch (see the module docstring)."""

    def __init__(
        self,
        images: NDArray,
        labels: NDArray,
        feature_images: NDArray,
        feature_labels: NDArray,
        on_event=None,
    ):
        super().__init__()
        self.on_event = on_event
        self.images = np.asarray(images)
        self.labels = np.asarray(labels, np.int64)
        self.feature_images = np.asarray(feature_images)
        self.feature_labels = np.asarray(feature_labels, np.int64)
        self.snapshots: list[Snapshot] = []

    @classmethod
    def from_source(cls, source, count: int, on_event=None) -> TimelineRecorder | None:
        """Probes from the validation split (the training split when there is none)."""
        images, labels = source.arrays(_feature_split(source), limit=max(MAX_FEATURE_IMAGES, 20 * count))
        if len(images) == 0:
            return None
        chosen = probe_indices(labels, count)
        return cls(
            images[chosen], labels[chosen], images[:MAX_FEATURE_IMAGES], labels[:MAX_FEATURE_IMAGES], on_event
        )

    def on_train_begin(self, logs=None):
        if not self.snapshots:
            self.record(0, None)

    def on_epoch_end(self, epoch, logs=None):
        if bad_loss(logs) is not None:
            return  # the NaN guard rolls this epoch back; the curves skip it too
        logs = logs or {}
        accuracy = logs.get("val_accuracy")
        self.record(epoch + 1, None if accuracy is None else float(accuracy))

    def record(self, epoch: int, val_accuracy: float | None) -> None:
        from cnnviz.embedding import features
        from cnnviz.errors import ConfigError
        from cnnviz.explanations import explain
        from cnnviz.introspect import cam_layers
        from cnnviz.weights import conv_layer_names, kernel_images

        start = time.perf_counter()
        model = self.model
        probabilities = np.asarray(model(self.images.astype(np.float32), training=False), np.float32)
        if cam_layers(model, 1):
            heatmaps = explain(model, self.images, method="gradcam", class_index=self.labels)
        else:
            heatmaps = explain(model, self.images, method="saliency", class_index=self.labels)
        # A model of one's own may have no 2-D first convolution or no dense head: none of those, then.
        try:
            kernels = (
                np.rint(kernel_images(model) * 255).astype(np.uint8) if conv_layer_names(model) else None
            )
        except ConfigError:
            kernels = None
        try:
            vectors = features(model, self.feature_images).astype(np.float16)
            vector_labels = self.feature_labels
        except ConfigError:
            vectors, vector_labels = np.zeros((0, 0), np.float16), self.feature_labels[:0]
        self.snapshots.append(
            Snapshot(
                epoch,
                self.images,
                self.labels,
                probabilities,
                heatmaps.astype(np.float32),
                np.zeros((0, 1, 1), np.uint8) if kernels is None else kernels,
                val_accuracy,
                vectors,
                vector_labels,
                time.perf_counter() - start,
            )
        )
        self.snapshots = thin(self.snapshots)
        if self.on_event is not None:
            from cnnviz.events import TimelineSnapshot

            self.on_event(TimelineSnapshot(self.snapshots[-1]))
