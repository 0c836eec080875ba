"""Batch-wise data: image folders too large for memory, streamed from disk by tf.data.

`load_dataset` reads every image into one array, which is simplest and fastest
while the data fits in memory. `stream_image_folder` only lists the files; the
images are read, decoded and resized batch by batch while training runs, in
parallel with it, so memory stays flat however many images there are:

    files --shuffle--> read + decode + resize (parallel) --[cache]--> batch --> augment --> prefetch

`cnnviz.train` accepts the resulting `ImageStream` wherever it accepts a
`Dataset`.

Example:

>>> stream = cnnviz.stream_image_folder("photos/", image_size=(96, 96))
>>> stream.summary()
'photos: 2 classes, 96x96x3, 45000 train / 5000 validation / 0 test (streamed from disk)'
>>> result = cnnviz.train("fast", stream, cnnviz.TrainConfig(epochs=3))
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from cnnviz import limits
from cnnviz.data import (
    Described,
    LoadReport,
    check_fraction,
    is_hidden,
    is_junk,
    native_size,
    normalize_size,
    stratified_split,
)
from cnnviz.errors import DatasetError

#: Formats tf.data decodes natively (GIFs: their first frame).
STREAM_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp")
# Decoded images held for shuffling when the decoded data is cached (bounded in bytes).
_SHUFFLE_BUFFER_BYTES = 64 * 1024 * 1024


@dataclasses.dataclass
class StreamSplit:
    """File paths and labels of one split; nothing is decoded until iterated."""

    files: list[str]
    labels: NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.labels)


def without_autotuning(dataset):
    """`dataset` with tf.data's autotuning off, for every pipeline cnnviz iterates.

    Deleting an iterator joins autotuning's model thread, which sleeps between
    optimizations for periods that double up to a minute. As read in
    TensorFlow's source (`root_dataset.cc`, `model.cc`, tsl's
    `cancellation.cc`), the thread can miss the cancellation's wake-up and
    sleep on to its next optimization. Measured: `fit` returned 25-36 s after
    its last epoch in 5 of 9 runs of 50-60 s, and in none of 8 with autotuning
    off, at the same samples/s. Without it, maps given `AUTOTUNE` run one call
    per core, and `prefetch(AUTOTUNE)` still sizes its own buffer.
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)


@dataclasses.dataclass
class ImageStream(Described):
    """A folder of class subfolders read from disk batch by batch.

    Attributes:
        name: str, the folder's name.
        class_names: tuple of str, index `i` names label `i`.
        image_shape: `(height, width, channels)` every image is decoded to.
        train, validation, test: `StreamSplit`s.
        report: a `LoadReport` (files listed per class, files skipped).
        cache_dir: folder for tf.data's on-disk cache of decoded images, or
            `None` to decode every epoch. With a cache, the first epoch
            decodes and writes; later epochs read raw pixels back.
        seed: int, the seed the splits were drawn with.
        split_fractions: `(validation_split, test_split)` they were drawn with.
    """

    name: str
    class_names: tuple[str, ...]
    image_shape: tuple[int, int, int]
    train: StreamSplit
    validation: StreamSplit
    test: StreamSplit
    report: LoadReport
    cache_dir: Path | None = None
    seed: int = 0
    split_fractions: tuple[float, float] = (0.1, 0.0)

    _summary_note = " (streamed from disk)"

    def dataset(self, split: str = "train", batch_size: int = 32, shuffle: bool = False, seed: int = 0):
        """A `tf.data.Dataset` of `(uint8 images (B, H, W, C), int64 labels (B,))`.

        Unreadable files are skipped with a logged warning, never a crash.

        Args:
            split: `"train"`, `"validation"` or `"test"`.
            batch_size: int.
            shuffle: reshuffle every epoch. Defaults to `False`.
            seed: int, shuffle seed.
        """
        import tensorflow as tf

        part = self._split(split)
        height, width, channels = self.image_shape

        def resize(image):
            image = tf.image.resize(image, (height, width), antialias=True)
            return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)

        def decode(path, label):
            image = tf.io.decode_image(
                tf.io.read_file(path), channels=channels, expand_animations=False, dtype=tf.uint8
            )
            # Most folders hold one size: then resizing is skipped (it would halve the decode rate).
            same = tf.reduce_all(tf.shape(image)[:2] == (height, width))
            image = tf.cond(same, lambda: image, lambda: resize(image))
            image.set_shape((height, width, channels))
            return image, label

        dataset = tf.data.Dataset.from_tensor_slices((part.files, part.labels.astype(np.int64)))
        if self.cache_dir is None:
            if shuffle:  # shuffling names is cheap: the whole split, every epoch
                dataset = dataset.shuffle(len(part), seed=seed, reshuffle_each_iteration=True)
            dataset = dataset.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=not shuffle)
            dataset = dataset.ignore_errors(log_warning=True)
        else:
            dataset = dataset.map(decode, num_parallel_calls=tf.data.AUTOTUNE).ignore_errors(log_warning=True)
            dataset = dataset.cache(str(self._cache_file(split)))
            if shuffle:  # a bounded buffer of decoded images, so memory stays flat
                buffer = max(256, min(len(part), _SHUFFLE_BUFFER_BYTES // (height * width * channels)))
                dataset = dataset.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
        return without_autotuning(dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE))

    def arrays(self, split: str = "validation", limit: int | None = None) -> tuple[NDArray, NDArray]:
        """Decodes (the first `limit` images of) a split into memory: `(images, labels)`."""
        part = self._split(split)
        count = len(part) if limit is None else min(limit, len(part))
        subset = dataclasses.replace(self, cache_dir=None)
        subset.validation = StreamSplit(part.files[:count], part.labels[:count])
        images, labels = [], []
        for batch_images, batch_labels in subset.dataset("validation", batch_size=256):
            images.append(batch_images.numpy())
            labels.append(batch_labels.numpy())
        if not images:
            return np.zeros((0, *self.image_shape), np.uint8), np.zeros(0, np.int64)
        return np.concatenate(images), np.concatenate(labels)

    def sample(self, limit: int = 1000):
        """An in-memory `cnnviz.Dataset` of the first `limit` images of each split
        (the training split is in shuffled order, so it mixes the classes): for
        galleries, previews and a quick evaluation."""
        from cnnviz.data import Dataset, Split

        splits = []
        for split in ("train", "validation", "test"):
            images, labels = self.arrays(split, limit)
            files = self._split(split).files[: len(labels)]
            splits.append(Split(images, labels, None, files))
        return Dataset(f"{self.name} (sample)", self.class_names, *splits, report=self.report, seed=self.seed)

    def _split(self, split: str) -> StreamSplit:
        if split not in ("train", "validation", "test"):
            raise DatasetError(f"split must be train, validation or test, got {split!r}.")
        return getattr(self, split)

    def _cache_file(self, split: str) -> Path:
        # Keyed by the exact files and shape: a changed folder never reads a stale cache.
        part = self._split(split)
        digest = hashlib.sha1(repr((self.image_shape, part.files)).encode()).hexdigest()[:16]
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        return self.cache_dir / f"{self.name}-{split}-{digest}"


def _list_class_files(root: Path, report: LoadReport) -> tuple[tuple[str, ...], list[str], list[int]]:
    """Lists class folders and their images without reading any image."""
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder; give a folder with one subfolder of images per class.")
    max_files = limits.get_limit("CNNVIZ_MAX_STREAM_FILES")
    top = sorted(
        (entry for entry in os.scandir(root) if entry.is_dir(follow_symlinks=False)),
        key=lambda entry: entry.name,
    )
    top = [entry for entry in top if not is_junk((entry.name,)) and not is_hidden((entry.name,))]
    if len(top) == 1 and not any(
        entry.is_file() and entry.name.lower().endswith(STREAM_SUFFIXES) for entry in os.scandir(top[0].path)
    ):
        return _list_class_files(Path(top[0].path), report)  # a single wrapping folder
    class_names, files, labels = [], [], []
    for entry in top:
        count = 0
        for directory, subdirs, names in os.walk(entry.path, followlinks=False):
            subdirs.sort()
            for file_name in sorted(names):
                parts = Path(directory, file_name).relative_to(root).parts
                if is_junk(parts) or is_hidden(parts):
                    report.ignored += 1
                elif not file_name.lower().endswith(STREAM_SUFFIXES):
                    report.skipped.append(
                        ("/".join(parts), "not PNG, JPEG, GIF or BMP (tf.data cannot stream it)")
                    )
                elif os.path.islink(os.path.join(directory, file_name)):
                    report.skipped.append(("/".join(parts), "symbolic link, not followed"))
                else:
                    files.append(os.path.join(directory, file_name))
                    labels.append(len(class_names))
                    count += 1
        if len(files) > max_files:
            raise DatasetError(
                f"{root.name}: more than {max_files:,} images (CNNVIZ_MAX_STREAM_FILES); raise the limit."
            )
        if count:
            class_names.append(entry.name)
            report.per_class[entry.name] = count
    if len(class_names) < 2:
        raise DatasetError(
            f"{root.name}: found {len(class_names)} class folder(s) with images; put each class's images "
            "(PNG, JPEG, GIF or BMP) in its own subfolder, at least two classes."
        )
    if len(class_names) > limits.max_classes():
        raise DatasetError(
            f"{root.name}: {len(class_names)} classes is over the limit of {limits.max_classes()}."
        )
    report.loaded = len(files)
    return tuple(class_names), files, labels


def _peek_shape(files: list[str], count: int = 64) -> tuple[list[tuple[int, int]], bool]:
    """The `(height, width)` sizes and grayness of up to `count` images spread over the list (headers only)."""
    from PIL import Image

    # Spread over the whole list (sorted by class), not its start. Sizes are the files' own: a photo whose EXIF
    # turns it upright (as the in-memory loader does) is counted unturned.
    picks = np.linspace(0, len(files) - 1, min(count, len(files))).astype(int) if files else []
    sizes, gray = [], True
    for path in (files[index] for index in picks):
        try:
            with Image.open(path) as image:
                sizes.append((image.height, image.width))
                if image.mode not in ("L", "LA", "I", "I;16", "1"):
                    gray = False
        except OSError:
            continue
    if not sizes:
        raise DatasetError(f"none of the {count} images looked at could be read; check the folder.")
    return sizes, gray


def stream_image_folder(
    root: str | os.PathLike,
    image_size: int | tuple[int, int] | None = None,
    channels: int | None = None,
    validation_split: float = 0.1,
    test_split: float = 0.0,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
) -> ImageStream:
    """Lists a folder of class subfolders for streaming; reads no image data.

    Args:
        root: folder with one subfolder of images per class (a single
            wrapping folder is looked through). PNG, JPEG, GIF and BMP files
            are used; others are listed in `report.skipped`.
        image_size: `(height, width)` or one side; `None` = the size the
            images share, else their median size, scaled down to fit 128 px
            (`cnnviz.data.native_size`, from 64 images spread over the folder;
            `report.size_reason` says which).
        channels: 1 or 3; `None` = 1 if the first images are grayscale.
        validation_split: float, fraction held out for validation (stratified).
        test_split: float, fraction held out for testing.
        seed: int, split seed.
        cache_dir: folder for an on-disk cache of decoded images (faster
            epochs after the first, memory still flat), or `None`.

    Returns:
        An `ImageStream`.

    Raises:
        DatasetError: not a folder, fewer than two classes, or over a limit.
    """
    root = Path(root)
    report = LoadReport()
    class_names, files, labels = _list_class_files(root, report)
    size = normalize_size(image_size)
    sizes, gray = _peek_shape(files)
    if size is None:
        (height, width), report.size_reason = native_size(sizes)
    else:
        height, width = size
        report.size_reason = f"resized to the {height}x{width} asked for"
    if channels is None:
        channels = 1 if gray else 3
    if channels not in (1, 3):
        raise DatasetError(f"channels must be 1 or 3, got {channels!r}.")
    labels_array = np.asarray(labels, dtype=np.int64)
    fractions = (
        check_fraction("validation_split", validation_split),
        check_fraction("test_split", test_split),
    )
    train_index, validation_index, test_index = stratified_split(labels_array, fractions, seed)

    def split(index) -> StreamSplit:
        return StreamSplit([files[i] for i in index], labels_array[index])

    return ImageStream(
        root.name,
        class_names,
        (int(height), int(width), int(channels)),
        split(train_index),
        split(validation_index),
        split(test_index),
        report,
        None if cache_dir is None else Path(cache_dir),
        seed,
        fractions,
    )
