"""One way to read labelled images, whatever the caller gave: `as_source(data)`.

`train`, `evaluate` and `compare` accept a `cnnviz.Dataset`, a `cnnviz.ImageStream`
(a folder read from disk batch by batch) or `(images, labels[, val_images,
val_labels])` arrays. Each is turned into a `DataSource` here, once, in the
manner of Keras' `get_data_adapter`: every user of the data then asks the
source for a split's size, its arrays or a tf.data pipeline of float batches.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from numpy.typing import NDArray

from cnnviz.errors import ConfigError

SPLITS = ("train", "validation", "test")


class DataSource:
    """Labelled images in splits (`"train"`, `"validation"`, `"test"`).

    Attributes:
        class_names: tuple of names, or `None` for bare arrays.
        num_classes: int.
        image_shape: `(height, width, channels)`.
        streamed: whether images are read from disk batch by batch.
    """

    class_names: tuple[str, ...] | None
    num_classes: int
    image_shape: tuple[int, int, int]
    streamed = False

    def size(self, split: str) -> int:
        raise NotImplementedError

    def arrays(self, split: str, limit: int | None = None) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
        """The split (its first `limit` images) decoded into memory: uint8 images `(N, H, W, C)` and labels `(N,)`."""
        raise NotImplementedError

    def batches(self, split: str, batch_size: int, shuffle: bool = False, seed: int = 0):
        """A tf.data pipeline of `(uint8 images, labels)` batches of the split; with `shuffle`, an
        endless one, reshuffled every epoch (`train` gives Keras the steps per epoch)."""
        raise NotImplementedError

    def dataset(self, split: str, batch_size: int, *, shuffle=False, seed=0, augmentation=None):
        """A tf.data pipeline of `(float32 0..255 images, labels)` batches, augmented if asked.

        Images stay uint8 until they are batched: a quarter of the memory traffic of float32.
        tf.data's autotuning is off (see `cnnviz.streaming.without_autotuning`).
        """
        from cnnviz.streaming import without_autotuning

        return without_autotuning(self._dataset(split, batch_size, shuffle, seed, augmentation))

    def _dataset(self, split: str, batch_size: int, shuffle: bool, seed: int, augmentation):
        import tensorflow as tf

        dataset = self.batches(split, batch_size, shuffle=shuffle, seed=seed)
        dataset = dataset.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=tf.data.AUTOTUNE)
        if augmentation is not None:
            # One batch at a time: the random layers draw from their seed generators in batch order, so a
            # seed gives the same augmented batches every run (in parallel, the draws land on batches in any order).
            dataset = dataset.map(lambda x, y: (augmentation(x, training=True), y))
        return dataset.prefetch(tf.data.AUTOTUNE)

    def accuracy(self, model, split: str = "validation", batch_size: int = 256) -> float:
        """Share of the split's images that `model` classifies right."""
        correct = total = 0
        for images, labels in self.dataset(split, batch_size):
            predicted = np.asarray(model(images, training=False)).argmax(axis=1)
            correct += int(np.sum(predicted == np.asarray(labels)))
            total += len(predicted)
        return correct / max(total, 1)


@dataclasses.dataclass
class ArraySource(DataSource):
    """Images held in memory, split by name."""

    splits: dict[str, tuple[NDArray, NDArray]]
    class_names: tuple[str, ...] | None = None

    def __post_init__(self):
        if not self.splits:
            raise ConfigError("there are no images.")
        for images, labels in self.splits.values():
            if images.ndim != 4 or len(images) != len(labels) or len(images) == 0:
                raise ConfigError(
                    f"expected images (N, H, W, C) and N labels, got {images.shape} and {labels.shape}."
                )
            if labels.min() < 0:
                raise ConfigError("labels must be class indices 0, 1, 2, ...")
        images = next(iter(self.splits.values()))[0]
        self.image_shape = tuple(int(side) for side in images.shape[1:])
        if self.class_names is None:
            self.num_classes = max(int(labels.max()) + 1 for _, labels in self.splits.values())
        else:
            self.num_classes = len(self.class_names)

    def size(self, split: str) -> int:
        return len(self.splits[split][1]) if split in self.splits else 0

    def arrays(self, split: str, limit: int | None = None):
        if split not in SPLITS:
            raise ConfigError(f"split must be train, validation or test, got {split!r}.")
        if split not in self.splits:
            return np.zeros((0, *self.image_shape), np.uint8), np.zeros(0, np.int64)
        images, labels = self.splits[split]
        return (images, labels) if limit is None else (images[:limit], labels[:limit])

    def batches(self, split: str, batch_size: int, shuffle: bool = False, seed: int = 0):
        import tensorflow as tf

        images, labels = self.arrays(split)
        if not shuffle:
            return tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch_size)
        # Epoch e is the permutation stateless_shuffle draws from (seed, e): the order depends on the run's
        # seed alone, not on TensorFlow's global seed or on what else the process did before.
        images, labels = tf.constant(images), tf.constant(labels)
        count = len(labels)

        def epoch(number):
            order = tf.random.experimental.stateless_shuffle(
                tf.range(count, dtype=tf.int64), seed=tf.stack([tf.constant(seed, tf.int64), number])
            )
            return tf.data.Dataset.from_tensor_slices(order).batch(batch_size)

        return (
            tf.data.Dataset.range(2**62)
            .flat_map(epoch)
            .map(
                lambda index: (tf.gather(images, index), tf.gather(labels, index)),
                num_parallel_calls=tf.data.AUTOTUNE,
            )
        )

    def with_validation(self, fraction: float, seed: int) -> ArraySource:
        """This source, with `fraction` of the training images held out if it has no validation split."""
        if self.size("validation") or fraction <= 0 or self.size("train") < 10:
            return self
        images, labels = self.splits["train"]
        from cnnviz.data import stratified_split

        train_index, val_index = stratified_split(labels, (fraction,), seed)
        splits = dict(self.splits)
        splits["train"] = (images[train_index], labels[train_index])
        splits["validation"] = (images[val_index], labels[val_index])
        return ArraySource(splits, self.class_names)


class StreamSource(DataSource):
    """A folder streamed from disk batch by batch (`cnnviz.ImageStream`)."""

    streamed = True

    def __init__(self, stream):
        self.stream = stream
        self.class_names = stream.class_names
        self.num_classes = stream.num_classes
        self.image_shape = stream.image_shape

    def size(self, split: str) -> int:
        if split not in SPLITS:
            raise ConfigError(f"split must be train, validation or test, got {split!r}.")
        return len(getattr(self.stream, split))

    def arrays(self, split: str, limit: int | None = None):
        return self.stream.arrays(split, limit)

    def batches(self, split: str, batch_size: int, shuffle: bool = False, seed: int = 0):
        # Decoding in parallel, out of order, is what makes streaming fast: a streamed run is not
        # bit-reproducible, and its shuffle is TensorFlow's seeded op.
        dataset = self.stream.dataset(split, batch_size, shuffle=shuffle, seed=seed)
        return dataset.repeat() if shuffle else dataset

    def with_validation(self, fraction: float, seed: int) -> StreamSource:
        return self  # a stream's splits are fixed when the folder is listed


def as_source(data) -> DataSource:
    """The `DataSource` for a Dataset, an ImageStream, `(images, labels[, val_images, val_labels])`
    arrays, or a DataSource (returned as it is).

    Raises:
        ConfigError: anything else, or arrays of the wrong shape.
    """
    from cnnviz.data import Dataset
    from cnnviz.streaming import ImageStream

    if isinstance(data, DataSource):
        return data
    if isinstance(data, ImageStream):
        return StreamSource(data)
    if isinstance(data, Dataset):
        splits = {name: (part.images, part.labels) for name in SPLITS if len(part := getattr(data, name))}
        if not splits:
            raise ConfigError(f"{data.name}: there are no images.")
        return ArraySource(splits, tuple(data.class_names))
    if isinstance(data, (tuple, list)) and len(data) in (2, 4):
        images = _with_channels(np.asarray(data[0]))
        splits = {"train": (images, np.asarray(data[1]).reshape(-1))}
        if len(data) == 4:
            splits["validation"] = (_with_channels(np.asarray(data[2])), np.asarray(data[3]).reshape(-1))
        return ArraySource(splits)
    raise ConfigError("data must be a cnnviz Dataset, an ImageStream or a tuple (images, labels).")


def _with_channels(images: NDArray) -> NDArray:
    return images[..., None] if images.ndim == 3 else images
