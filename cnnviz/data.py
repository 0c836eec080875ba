"""Datasets: one `Dataset` type for every source cnnviz can learn from.

Sources, all through `load_dataset(source, ...)`:

- `"shapes"`: bundled procedural shapes with bounding boxes (64x64 RGB).
- `"digits"`: scikit-learn's bundled 8x8 digits, framed like MNIST at 28x28.
- `"mnist"`, `"fashion_mnist"`, `"cifar10"`: keras.datasets, downloaded once
  into the Keras cache (`$KERAS_HOME/datasets`, by default `~/.keras/datasets`).
- a folder with one subfolder per class, or a `.zip` of one.
"""

from __future__ import annotations

import dataclasses
import os
import stat
import zipfile
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

import numpy as np
from numpy.typing import NDArray

from cnnviz import limits
from cnnviz.errors import DatasetError, ImageError
from cnnviz.images import IMAGE_SUFFIXES, load_image, resize_image

BUILTIN_SOURCES = ("shapes", "digits", "mnist", "fashion_mnist", "cifar10")
# The (height, width) each built-in source comes in when no image size is asked for.
_NATIVE_SIZES = {
    "shapes": (64, 64),
    "digits": (28, 28),
    "mnist": (28, 28),
    "fashion_mnist": (28, 28),
    "cifar10": (32, 32),
}

_JUNK_NAMES = {".ds_store", "thumbs.db", "desktop.ini"}

FASHION_MNIST_CLASSES = (
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle_boot",
)
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


@dataclasses.dataclass
class Split:
    """One split of a dataset.

    Attributes:
        images: uint8 array `(N, H, W, C)`.
        labels: int64 array `(N,)` of class indices.
        boxes: optional int32 array `(N, 4)` of `(x_min, y_min, x_max, y_max)`.
        files: optional list of the N source files, as paths relative to the folder or zip (folder and zip
            sources).
    """

    images: NDArray[np.uint8]
    labels: NDArray[np.int64]
    boxes: NDArray[np.int32] | None = None
    files: list[str] | None = None

    def __len__(self) -> int:
        return len(self.labels)

    @classmethod
    def merge(cls, parts: list[Split]) -> Split:
        """One split holding the images of `parts`, in order."""
        boxes = (
            None
            if any(part.boxes is None for part in parts)
            else np.concatenate([part.boxes for part in parts])
        )
        files = (
            None if any(part.files is None for part in parts) else [f for part in parts for f in part.files]
        )
        return cls(
            np.concatenate([part.images for part in parts]),
            np.concatenate([part.labels for part in parts]).astype(np.int64),
            boxes,
            files,
        )

    def subset(self, indices: NDArray) -> Split:
        return Split(
            self.images[indices],
            self.labels[indices],
            None if self.boxes is None else self.boxes[indices],
            None if self.files is None else [self.files[i] for i in indices],
        )


@dataclasses.dataclass
class LoadReport:
    """What happened while loading a folder or zip.

    Attributes:
        loaded: number of images loaded.
        skipped: list of `(file, reason)` for files that could not be used.
        ignored: number of junk entries ignored (`__MACOSX/`, `.DS_Store`, ...).
        per_class: images loaded per class name.
        size_reason: why the images have the size they are trained at, in words
            (e.g. "all images are 28x28").
    """

    loaded: int = 0
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    ignored: int = 0
    per_class: dict[str, int] = dataclasses.field(default_factory=dict)
    size_reason: str = ""

    def summary(self) -> str:
        text = f"{self.loaded} images loaded"
        if self.skipped:
            text += f", {len(self.skipped)} unreadable files skipped"
        if self.ignored:
            text += f", {self.ignored} system files ignored"
        return text


class Described:
    """The class count and one-line summary `Dataset` and `streaming.ImageStream` share."""

    _summary_note = ""  # said after the split sizes

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def summary(self) -> str:
        height, width, channels = self.image_shape
        return (
            f"{self.name}: {self.num_classes} classes, {height}x{width}x{channels}, "
            f"{len(self.train)} train / {len(self.validation)} validation / {len(self.test)} test"
            + self._summary_note
        )


@dataclasses.dataclass
class Dataset(Described):
    """Images, labels and class names in train / validation / test splits.

    Attributes:
        name: str, where the data came from.
        class_names: tuple of str, index `i` names label `i`.
        train, validation, test: `Split`s; validation may be empty.
        report: `LoadReport` for folder and zip sources, else `None`.
        seed: int, the seed the splits were drawn with (and `shapes` generated
            with): the same source and seed give the same test images.
    """

    name: str
    class_names: tuple[str, ...]
    train: Split
    validation: Split
    test: Split
    report: LoadReport | None = None
    seed: int = 0

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(int(size) for size in self.train.images.shape[1:])


def stratified_split(labels: NDArray, fractions: tuple[float, ...], seed: int) -> list[NDArray[np.int64]]:
    """Splits indices per class so every split keeps the class balance."""
    rng = np.random.default_rng(seed)
    parts: list[list[NDArray]] = [[] for _ in range(len(fractions) + 1)]
    for label in np.unique(labels):
        indices = np.flatnonzero(labels == label)
        rng.shuffle(indices)
        count = len(indices)
        sizes = [int(round(count * fraction)) for fraction in fractions]
        # Keep at least one training image per class.
        while sum(sizes) >= count and any(sizes):
            sizes[int(np.argmax(sizes))] -= 1
        start = 0
        for part, size in zip(parts, sizes):
            part.append(indices[start : start + size])
            start += size
        parts[-1].append(indices[start:])
    result = []
    for part in parts:
        merged = np.concatenate(part) if part else np.zeros(0, dtype=np.int64)
        rng.shuffle(merged)
        result.append(merged.astype(np.int64))
    # Training split last in `parts`; return it first.
    return [result[-1]] + result[:-1]


def _split_arrays(
    name: str,
    class_names: tuple[str, ...],
    images: NDArray,
    labels: NDArray,
    validation_split: float,
    test_split: float,
    seed: int,
    boxes: NDArray | None = None,
    files: list[str] | None = None,
    report: LoadReport | None = None,
) -> Dataset:
    whole = Split(images, labels.astype(np.int64), boxes, files)
    train_idx, val_idx, test_idx = stratified_split(labels, (validation_split, test_split), seed)
    return Dataset(
        name,
        class_names,
        whole.subset(train_idx),
        whole.subset(val_idx),
        whole.subset(test_idx),
        report,
        seed,
    )


def _carve_validation(dataset: Dataset, validation_split: float, seed: int) -> Dataset:
    """Takes a validation split out of a dataset that came with train / test only."""
    if validation_split <= 0:
        return dataset
    train_idx, val_idx = stratified_split(dataset.train.labels, (validation_split,), seed)
    train = dataset.train
    return dataclasses.replace(dataset, train=train.subset(train_idx), validation=train.subset(val_idx))


def check_fraction(name: str, value: float) -> float:
    if not 0.0 <= float(value) < 1.0:
        raise DatasetError(f"{name} must be in [0, 1), got {value!r}.")
    return float(value)


def native_image_size(source: str) -> tuple[int, int] | None:
    """The `(height, width)` a built-in source loads at by default; `None` for folders and zips."""
    return _NATIVE_SIZES.get(str(source).strip().lower().replace("-", "_"))


#: The largest side a folder or zip trains at by default; larger images are scaled down to it.
MAX_NATIVE_SIDE = 128
#: The smallest side a folder or zip trains at by default; smaller images are scaled up to it.
MIN_NATIVE_SIDE = 8


def native_size(sizes: list[tuple[int, int]]) -> tuple[tuple[int, int], str]:
    """The `(height, width)` a folder's images train at, and why, from their `(height, width)` sizes.

    Images that share one size train at it; otherwise at the median height and width. Either way the
    longer side is scaled down to `MAX_NATIVE_SIDE` (keeping the aspect ratio) when it is longer.
    """
    if not sizes:
        raise DatasetError("no images to size.")
    counts = Counter((int(height), int(width)) for height, width in sizes)
    if len(counts) == 1:
        (height, width), _ = counts.most_common(1)[0]
        reason = f"all images are {height}x{width}"
    else:
        height = _round_half_up(float(np.median([size[0] for size in sizes])))
        width = _round_half_up(float(np.median([size[1] for size in sizes])))
        reason = f"the images differ in size ({len(counts)} sizes); {height}x{width} is the median"
    longest, shortest = max(height, width), min(height, width)
    if longest > MAX_NATIVE_SIDE:
        scale = MAX_NATIVE_SIDE / longest
        height, width = (max(MIN_NATIVE_SIDE, _round_half_up(side * scale)) for side in (height, width))
        reason += f", scaled down to {height}x{width} (at most {MAX_NATIVE_SIDE} px a side)"
    elif shortest < MIN_NATIVE_SIDE:
        scale = MIN_NATIVE_SIDE / shortest
        height, width = (min(MAX_NATIVE_SIDE, _round_half_up(side * scale)) for side in (height, width))
        reason += f", scaled up to {height}x{width} (at least {MIN_NATIVE_SIDE} px a side)"
    return (height, width), reason


def _round_half_up(value: float) -> int:
    return int(value + 0.5)


def _resize_all(images: NDArray, size: tuple[int, int] | None) -> NDArray:
    if size is None or tuple(images.shape[1:3]) == tuple(size):
        return images
    return np.stack([resize_image(image, size) for image in images])


def normalize_size(image_size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if image_size is None:
        return None
    if isinstance(image_size, (int, np.integer)):
        image_size = (int(image_size), int(image_size))
    height, width = (int(side) for side in image_size)
    if not (8 <= height <= 1024 and 8 <= width <= 1024):
        raise DatasetError(f"image size must be between 8 and 1024 pixels, got {image_size}.")
    return height, width


def load_dataset(
    source: str | os.PathLike,
    *,
    image_size: int | tuple[int, int] | None = None,
    validation_split: float = 0.1,
    test_split: float = 0.2,
    num_samples: int | None = None,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> Dataset:
    """Loads a dataset from a built-in name, a folder or a zip.

    Args:
        source: `"shapes"`, `"digits"`, `"mnist"`, `"fashion_mnist"`, `"cifar10"`,
            a folder with one subfolder of images per class, or a `.zip` of one.
            A folder (or zip) that holds `train/` and `test/` folders uses them as
            the splits.
        image_size: int or `(height, width)` to resize images to. Defaults to
            the source's own size; for folders and zips, the size their images
            share, else the median size, scaled down to fit 128 px (see
            `native_size`; `report.size_reason` says which).
        validation_split: float, fraction of training data held out for
            validation. Defaults to `0.1`.
        test_split: float, fraction held out for testing where the source has
            no test split of its own. Defaults to `0.2`.
        num_samples: int, number of images `shapes` draws (default 6000), or a
            cap on the training images of the other built-in sources.
        seed: int, seed for generation and splitting. Defaults to `0`.
        progress: optional callable `(done, total)` called while reading files.

    Returns:
        A `Dataset`.

    Raises:
        DatasetError: unknown source, a folder or zip that cannot be used, or a
            keras.datasets download that is not possible (offline, not cached).
    """
    validation_split = check_fraction("validation_split", validation_split)
    test_split = check_fraction("test_split", test_split)
    if validation_split + test_split >= 0.9:
        raise DatasetError(
            f"validation_split + test_split must leave some training data, got "
            f"{validation_split} + {test_split}."
        )
    if num_samples is not None and int(num_samples) < 1:
        raise DatasetError(f"num_samples must be positive, got {num_samples}.")
    size = normalize_size(image_size)
    text = os.fspath(source)
    key = text.strip().lower().replace("-", "_")
    if key == "shapes":
        return _load_shapes(num_samples or 6000, size, validation_split, test_split, seed)
    if key == "digits":
        return _load_digits(size, validation_split, test_split, seed, num_samples)
    if key in ("mnist", "fashion_mnist", "cifar10"):
        return _load_keras_dataset(key, size, validation_split, seed, num_samples)
    path = Path(text).expanduser()
    if path.is_file() and not zipfile.is_zipfile(path):
        raise DatasetError(
            f"{path.name}: not a zip file; give a .zip of class folders, a folder, "
            f"or one of {', '.join(BUILTIN_SOURCES)}."
        )
    if path.is_dir() or path.is_file():
        return _load_files(path, size, validation_split, test_split, seed, progress)
    raise DatasetError(
        f"unknown data source {text!r}: give one of {', '.join(BUILTIN_SOURCES)}, "
        "a folder of class subfolders, or a .zip of one."
    )


def _load_shapes(count, size, validation_split, test_split, seed) -> Dataset:
    from cnnviz.shapes import SHAPE_CLASSES, generate_shapes

    side = 64 if size is None else size[0]
    if size is not None and size[0] != size[1]:
        raise DatasetError(f"shapes images are square; got image size {size}.")
    images, labels, boxes = generate_shapes(int(count), seed=seed, image_size=side)
    return _split_arrays(
        "shapes", SHAPE_CLASSES, images, labels, validation_split, test_split, seed, boxes=boxes
    )


def _load_digits(size, validation_split, test_split, seed, num_samples) -> Dataset:
    from PIL import Image
    from sklearn.datasets import load_digits

    bunch = load_digits()
    raw = np.clip(bunch.images * (255.0 / 16.0), 0, 255).astype(np.uint8)
    labels = bunch.target.astype(np.int64)
    if num_samples:
        raw, labels = raw[:num_samples], labels[:num_samples]
    # Framed like MNIST: the digit fills a 20x20 box centred in 28x28.
    images = np.zeros((len(raw), 28, 28, 1), dtype=np.uint8)
    for index, digit in enumerate(raw):
        big = Image.fromarray(digit).resize((20, 20), Image.Resampling.BICUBIC)
        images[index, 4:24, 4:24, 0] = np.asarray(big)
    images = _resize_all(images, size)
    class_names = tuple(str(digit) for digit in range(10))
    return _split_arrays("digits", class_names, images, labels, validation_split, test_split, seed)


def _load_keras_dataset(key, size, validation_split, seed, num_samples) -> Dataset:
    import keras

    loaders = {
        "mnist": (keras.datasets.mnist.load_data, tuple(str(d) for d in range(10)), "mnist.npz"),
        "fashion_mnist": (
            keras.datasets.fashion_mnist.load_data,
            FASHION_MNIST_CLASSES,
            "fashion-mnist/",
        ),
        "cifar10": (keras.datasets.cifar10.load_data, CIFAR10_CLASSES, "cifar-10-batches-py-target"),
    }
    load, class_names, cache_name = loaders[key]
    cache_dir = Path(keras_home()) / "datasets"
    try:
        (x_train, y_train), (x_test, y_test) = load()
    except Exception as error:  # keras raises bare Exception on fetch failures
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DatasetError(
            f"{key} is not in the Keras cache ({cache_dir / cache_name}) and could not be "
            f"downloaded ({reason}); connect to the internet once, or copy the file there."
        ) from None
    x_train, x_test = (x if x.ndim == 4 else x[..., None] for x in (x_train, x_test))
    y_train, y_test = (np.asarray(y).reshape(-1).astype(np.int64) for y in (y_train, y_test))
    if num_samples:
        x_train, y_train = x_train[:num_samples], y_train[:num_samples]
    train = Split(_resize_all(x_train.astype(np.uint8), size), y_train)
    no_validation = train.subset(np.zeros(0, dtype=np.int64))
    test = Split(_resize_all(x_test.astype(np.uint8), size), y_test)
    dataset = Dataset(key, class_names, train, no_validation, test, seed=seed)
    return _carve_validation(dataset, validation_split, seed)


def keras_home() -> str:
    """The Keras cache folder: `$KERAS_HOME`, else `~/.keras` (as Keras documents it)."""
    return os.environ.get("KERAS_HOME") or str(Path.home() / ".keras")


# --- folders and zips -------------------------------------------------------


def is_junk(parts: tuple[str, ...]) -> bool:
    return any(part == "__MACOSX" or part.lower() in _JUNK_NAMES or part.startswith("._") for part in parts)


def is_hidden(parts: tuple[str, ...]) -> bool:
    return any(part.startswith(".") for part in parts)


class _Entry:
    """A file in a folder or zip: a relative path and a way to read its bytes."""

    def __init__(self, parts: tuple[str, ...], read: Callable[[], bytes]):
        self.parts = parts
        self.read = read
        # Where it is, relative to the source, before any wrapping or train/ and test/ folder is taken off
        # `parts`: what `Split.files` and the report name.
        self.path = "/".join(parts)

    @property
    def name(self) -> str:
        return "/".join(self.parts)


def _folder_entries(root: Path, report: LoadReport) -> list[_Entry]:
    entries = []
    max_files = limits.max_dataset_files()
    for directory, subdirs, files in os.walk(root, followlinks=False):
        subdirs.sort()
        for file_name in sorted(files):
            full = Path(directory) / file_name
            parts = full.relative_to(root).parts
            if is_junk(parts) or is_hidden(parts):
                report.ignored += 1
                continue
            if full.is_symlink():
                report.skipped.append(("/".join(parts), "symbolic link, not followed"))
                continue
            entries.append(_Entry(parts, full.read_bytes))
            if len(entries) > max_files:
                raise DatasetError(
                    f"{root.name}: more than {max_files:,} files (CNNVIZ_MAX_DATASET_FILES); "
                    "use a smaller dataset or raise the limit."
                )
    return entries


def _zip_entries(path: Path, report: LoadReport) -> list[_Entry]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise DatasetError(f"{path.name}: not a readable zip file ({error}).") from None
    infos = archive.infolist()
    if len(infos) > limits.max_zip_entries():
        raise DatasetError(
            f"{path.name}: {len(infos):,} entries, over the limit of {limits.max_zip_entries():,} "
            "(CNNVIZ_MAX_ZIP_ENTRIES)."
        )
    declared = sum(info.file_size for info in infos)
    max_bytes = limits.max_zip_bytes()
    if declared > max_bytes:
        raise DatasetError(
            f"{path.name}: unpacks to {declared / 2**20:,.0f} MB, over the limit of "
            f"{max_bytes / 2**20:,.0f} MB (CNNVIZ_MAX_ZIP_BYTES); refused."
        )
    entries = []
    budget = {"left": max_bytes}
    max_image = limits.max_image_bytes()

    def reader(info: zipfile.ZipInfo) -> Callable[[], bytes]:
        def read() -> bytes:
            cap = min(max_image, budget["left"]) + 1
            with archive.open(info) as handle:
                data = handle.read(cap)
            if len(data) >= cap:
                raise ImageError(f"{info.filename}: unpacks to more than its declared size or the limits.")
            budget["left"] -= len(data)
            return data

        return read

    for info in infos:
        if info.is_dir():
            continue
        name = info.filename.replace("\\", "/")
        posix = PurePosixPath(name)
        parts = posix.parts
        if posix.is_absolute() or ".." in parts or (len(name) > 1 and name[1] == ":"):
            report.skipped.append((name, "unsafe path in zip (absolute or '..'), skipped"))
            continue
        if is_junk(parts) or is_hidden(parts):
            report.ignored += 1
            continue
        if stat.S_ISLNK(info.external_attr >> 16):
            report.skipped.append((name, "symbolic link in zip, skipped"))
            continue
        entries.append(_Entry(parts, reader(info)))
    if len(entries) > limits.max_dataset_files():
        raise DatasetError(
            f"{path.name}: more than {limits.max_dataset_files():,} files "
            "(CNNVIZ_MAX_DATASET_FILES); use a smaller dataset or raise the limit."
        )
    return entries


def _unwrap_single_top(entries: list[_Entry]) -> list[_Entry]:
    """Drops a single top folder that wraps everything (`photos/cats/1.jpg`)."""
    while entries and all(len(entry.parts) >= 3 for entry in entries):
        tops = {entry.parts[0] for entry in entries}
        if len(tops) != 1:
            break
        for entry in entries:
            entry.parts = entry.parts[1:]
    return entries


def _class_entries(label: str, entries: list[_Entry], report: LoadReport):
    """The image entries inside class folders, each one's split (when the tree has train/ and test/),
    and the class names."""
    entries = _unwrap_single_top(entries)
    for entry in entries:
        if len(entry.parts) == 1:
            report.skipped.append((entry.path, "not inside a class folder"))
    entries = [entry for entry in entries if len(entry.parts) >= 2]
    top_names = {entry.parts[0].lower() for entry in entries}
    has_splits = {"train", "test"} <= top_names and all(
        entry.parts[0].lower() in ("train", "test", "validation", "val") and len(entry.parts) >= 3
        for entry in entries
    )
    split_of = {}
    if has_splits:
        for entry in entries:
            split_of[id(entry)] = {"val": "validation"}.get(entry.parts[0].lower(), entry.parts[0].lower())
            entry.parts = entry.parts[1:]
    class_names = tuple(sorted({entry.parts[0] for entry in entries}))
    if not class_names:
        raise DatasetError(
            f"{label}: no class folders with images found; put images in one subfolder per "
            "class, e.g. cats/1.jpg and dogs/2.jpg."
        )
    if len(class_names) > limits.max_classes():
        raise DatasetError(
            f"{label}: {len(class_names):,} classes, over the limit of {limits.max_classes():,} "
            "(CNNVIZ_MAX_CLASSES)."
        )
    candidates = []
    for entry in entries:
        if Path(entry.parts[-1]).suffix.lower() in IMAGE_SUFFIXES:
            candidates.append(entry)
        else:
            report.skipped.append((entry.path, "not an image file type"))
    return candidates, split_of if has_splits else None, class_names


def _decode_entries(candidates, class_names, split_of, report, progress):
    """Decodes every candidate in a small thread pool: images, labels, file names and splits."""

    def decode(entry: _Entry):
        try:
            image = load_image(entry.read())
        except (ImageError, OSError) as error:
            return entry, None, str(error).split(": ", 1)[-1]
        return entry, image, None

    images, labels, files, splits = [], [], [], []
    total = len(candidates)
    # PIL decodes outside the GIL, so a small pool reads twice as fast on 2 cores.
    with ThreadPoolExecutor(max_workers=min(4, (os.cpu_count() or 1) + 1)) as pool:
        for done, (entry, image, error) in enumerate(pool.map(decode, candidates), start=1):
            if progress is not None:
                progress(done, total)
            if image is None:
                report.skipped.append((entry.path, error))
                continue
            images.append(image)
            labels.append(class_names.index(entry.parts[0]))
            files.append(entry.path)
            splits.append((split_of or {}).get(id(entry), ""))
    return images, labels, files, splits


def _drop_empty_classes(label: str, class_names, labels, report: LoadReport):
    """A class folder without images cannot be learned: drop it and say so. Needs two classes left."""
    counts = Counter(labels)
    empty = [name for index, name in enumerate(class_names) if counts[index] == 0]
    if empty:
        keep = [name for name in class_names if name not in empty]
        remap = {class_names.index(name): new for new, name in enumerate(keep)}
        labels = [remap[old] for old in labels]
        class_names = tuple(keep)
        for name in empty:
            report.skipped.append((name + "/", "class folder has no readable images"))
    if len(class_names) < 2:
        raise DatasetError(
            f"{label}: only one class ({class_names[0]!r}) has images; a classifier needs at "
            "least two class folders."
        )
    return class_names, labels


def _read_entries(
    label: str,
    entries: list[_Entry],
    size: tuple[int, int] | None,
    validation_split: float,
    test_split: float,
    seed: int,
    report: LoadReport,
    progress: Callable[[int, int], None] | None,
) -> Dataset:
    candidates, split_of, class_names = _class_entries(label, entries, report)
    images, labels, files, splits = _decode_entries(candidates, class_names, split_of, report, progress)
    if not images:
        raise DatasetError(f"{label}: no readable images found ({report.summary()}).")
    class_names, labels = _drop_empty_classes(label, class_names, labels, report)
    if size is None:
        size, report.size_reason = native_size([image.shape[:2] for image in images])
    else:
        report.size_reason = f"resized to the {size[0]}x{size[1]} asked for"
    # Grayscale stays grayscale, also when a format stored it as RGB (WebP).
    channels = 1 if all(_is_gray(image) for image in images) else 3
    array = np.stack([resize_image(image, size, channels) for image in images])
    label_array = np.asarray(labels, dtype=np.int64)
    report.loaded = len(images)
    report.per_class = {
        name: int(count)
        for name, count in zip(class_names, np.bincount(label_array, minlength=len(class_names)))
    }
    if split_of is None:
        return _split_arrays(
            label,
            class_names,
            array,
            label_array,
            validation_split,
            test_split,
            seed,
            files=files,
            report=report,
        )
    split_array = np.asarray(splits)
    whole = Split(array, label_array, None, files)
    train, test, validation = (
        whole.subset(np.flatnonzero(split_array == name)) for name in ("train", "test", "validation")
    )
    dataset = Dataset(label, class_names, train, validation, test, report, seed)
    return _carve_validation(dataset, validation_split, seed) if len(validation) == 0 else dataset


def _is_gray(image: NDArray) -> bool:
    if image.shape[-1] == 1:
        return True
    # Lossy formats (WebP, JPEG) leave a few levels of colour noise in gray images.
    channels = image.astype(np.int16)
    return bool(np.abs(channels[..., 0:1] - channels[..., 1:]).max() <= 3)


def _load_files(
    path: Path,
    image_size: tuple[int, int] | None,
    validation_split: float,
    test_split: float,
    seed: int,
    progress: Callable[[int, int], None] | None,
) -> Dataset:
    """Loads a folder with one subfolder of images per class, or a zip of one, read in place and never
    extracted: entries with absolute paths, `..` or symbolic links are skipped, and the zip's declared and
    actual unpacked sizes are checked against `cnnviz.limits`. See `load_dataset`."""
    report = LoadReport()
    if path.is_dir():
        label, entries = path.name, _folder_entries(path, report)
    else:
        label, entries = path.stem, _zip_entries(path, report)
    return _read_entries(label, entries, image_size, validation_split, test_split, seed, report, progress)
