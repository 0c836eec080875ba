"""The use cases both front ends share, each written once: a training run, and the
evaluation of a saved model.

The CLI (`cnnviz train`, `cnnviz evaluate`) and the studio (its Train page's
background job, its Results page) are thin adapters over these functions:

- `run(TrainRequest(...))` trains a design on loaded data and always records
  where the model came from (its provenance) in the model's metadata, so the
  saved file knows its data source, seed, split seed, design and changes.
- `evaluation_data(model, source)` / `evaluate_saved(model, source)` score a
  model on images it never saw: a built-in source's test split is drawn with
  the split seed the model was trained with, and a folder's class names are
  mapped onto the model's.

Example:

>>> data = cnnviz.runs.load_data("shapes")
>>> result = cnnviz.runs.run(cnnviz.runs.TrainRequest(data, "shapes", config=cnnviz.TrainConfig(epochs=3)))
>>> cnnviz.runs.evaluate_saved(result.model, "shapes").accuracy
0.97...
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cnnviz.errors import DatasetError
from cnnviz.training.config import TrainConfig, TrainResult


def train_config(**settings: Any) -> TrainConfig:
    """A `TrainConfig` from the settings a person gave; a time budget given without an
    epoch count runs until it is spent.

    Raises:
        ConfigError: a bad value, naming the field.
    """
    if settings.get("time_budget") and settings.get("epochs") is None:
        settings["epochs"] = None
    return TrainConfig(**settings)


def training_images(data) -> int:
    """How many training images a loaded `cnnviz.Dataset` or `cnnviz.ImageStream` has, before any validation
    hold-out: what the defaults for many small images count (`cnnviz.models.many_small_images`)."""
    return len(data.train)


def augments_by_default(data) -> bool:
    """Whether a run on `data` augments when nobody said (the CLI without `--augment` / `--no-augment`, the
    studio's "Augment: auto"): for many small images (`cnnviz.training.config.default_augmentation`)."""
    from cnnviz.training.config import default_augmentation

    return bool(default_augmentation(data.image_shape, training_images(data)))


def defaults_note(data) -> str | None:
    """A sentence on the defaults that `data` gets as many small images (`cnnviz.models.many_small_images`),
    or `None` when it does not."""
    from cnnviz.models import SMALL_IMAGE_PX, many_small_images
    from cnnviz.training.config import MANY_SMALL_BATCH

    if not many_small_images(data.image_shape, training_images(data)):
        return None
    return (
        f"{training_images(data):,} training images whose shorter side is under {SMALL_IMAGE_PX} px count as "
        f"many small images: unless you choose otherwise, they train in batches of {MANY_SMALL_BATCH} with small random shifts, and the fast design "
        "gives them two convolutions per block, of at most 64 channels."
    )


def load_data(
    source: str,
    *,
    image_size: int | tuple[int, int] | None = None,
    seed: int = 0,
    stream: bool = False,
    cache_dir: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    **options: Any,
):
    """Loads a source: a built-in name, a folder or a zip into memory (`cnnviz.load_dataset`,
    which takes `options` such as `num_samples`), or a folder streamed from disk (`stream=True`).

    Raises:
        DatasetError: the source cannot be used (said in one sentence).
    """
    if stream:
        from cnnviz.streaming import stream_image_folder

        if not Path(source).is_dir():
            raise DatasetError(f"streaming reads a folder of class subfolders; {source} is not a folder.")
        return stream_image_folder(source, image_size=image_size, seed=seed, cache_dir=cache_dir)
    from cnnviz.data import load_dataset

    options = {name: value for name, value in options.items() if value is not None}
    return load_dataset(source, image_size=image_size, seed=seed, progress=progress, **options)


@dataclasses.dataclass(frozen=True)
class TrainRequest:
    """One training run, as a person asks for it in either front end.

    Attributes:
        data: the loaded `cnnviz.Dataset` or `cnnviz.ImageStream`.
        source: where the data came from, recorded in the model: a built-in
            name, a path, or a label such as `"upload:photos.zip"`.
        design: a preset name or a `ConvNetConfig` / `TransferConfig` (fitted
            to the data's image shape and classes).
        changes: fields of the design's family to change (flat names).
        config: the `TrainConfig`.
        data_options: how `source` was loaded beyond its image size and seed (e.g.
            `num_samples`), recorded so that evaluation draws the same split again.
    """

    data: Any
    source: str
    design: Any = "fast"
    changes: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    config: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    data_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def model_config(self):
        """The design to build, for this data."""
        from cnnviz.models import fit_design

        return fit_design(
            self.design,
            self.data.image_shape,
            self.data.num_classes,
            num_images=training_images(self.data),
            **self.changes,
        )

    def provenance(self, model_config) -> dict[str, Any]:
        """What the saved model records about how it was made."""
        from cnnviz.streaming import ImageStream

        options = {name: value for name, value in self.data_options.items() if value is not None}
        if isinstance(self.data, ImageStream):
            validation_split, test_split = self.data.split_fractions
            options |= {"stream": True, "validation_split": validation_split, "test_split": test_split}
        record = {
            "data": self.source,
            "data_options": options,
            "seed": self.config.seed,
            "split_seed": int(getattr(self.data, "seed", 0)),
            "design": self.design if isinstance(self.design, str) else model_config.name,
            "changes": dict(self.changes),
            "model_config": model_config.to_dict(),
            # The rate and batch the run used, also when the config left them to the defaults (None).
            "train_config": {
                **self.config.to_dict(),
                "learning_rate": self.config.peak_learning_rate,
                "batch_size": self.config.batch_size_for(self.data.image_shape, training_images(self.data)),
            },
        }
        path = Path(self.source).expanduser()
        if path.exists():  # a folder or zip: found again from any working directory
            record["data_path"] = str(path.resolve())
        return record


def run(
    request: TrainRequest,
    *,
    on_event: Callable[[Any], None] | None = None,
    stop_event: threading.Event | None = None,
    watched: Callable[[], bool] | None = None,
    unwatched_after: float = 30.0,
    checkpoint_path: str | Path | None = None,
    log_dir: str | Path | None = None,
    strategy=None,
    callbacks: Sequence[Any] = (),
) -> TrainResult:
    """Trains the request's design on its data, recording provenance in the model.

    Args:
        request: the `TrainRequest`.
        on_event, stop_event, watched, unwatched_after, log_dir, strategy,
            callbacks: as for `cnnviz.train`.
        checkpoint_path: optional `.keras` path: written atomically after every
            epoch and, at the end, with the returned model (on the chief worker
            only, under a multi-worker strategy).

    Returns:
        The `TrainResult`; its model carries its class names and provenance
        (`cnnviz.saving.get_metadata(model)["training"]`).
    """
    from cnnviz.distribute import save_as_chief
    from cnnviz.training.loop import train

    model_config = request.model_config()
    result = train(
        model_config,
        request.data,
        request.config,
        callbacks=callbacks,
        on_event=on_event,
        stop_event=stop_event,
        watched=watched,
        unwatched_after=unwatched_after,
        checkpoint_path=checkpoint_path,
        log_dir=log_dir,
        strategy=strategy,
        metadata={"training": request.provenance(model_config)},
    )
    _record_outcome(result)
    if checkpoint_path is not None:
        save_as_chief(result.model, checkpoint_path, strategy)
    return result


def _record_outcome(result) -> None:
    """Adds the run's per-epoch curves and how it ended to the model's provenance (for its model card)."""
    from cnnviz.saving import get_metadata, set_metadata

    training = dict(get_metadata(result.model).get("training", {}))
    training["history"] = {
        name: [float(value) for value in values] for name, values in result.history.items()
    }
    training["outcome"] = {
        "epochs": result.epochs,
        "kept_epoch": result.kept_epoch,
        "train_seconds": round(float(result.train_seconds), 2),
        "stop_reason": result.stop_reason,
        "val_accuracy": result.val_accuracy,
    }
    set_metadata(result.model, training=training)


def split_seed_of(model) -> int:
    """The seed the model's training data was split with (0 when the model does not say)."""
    from cnnviz.saving import get_metadata

    trained_on = get_metadata(model).get("training", {})
    return int(trained_on.get("split_seed", trained_on.get("seed", 0)))


def _same_source(source: str, trained_on: dict) -> bool:
    """Whether `source` is what the model was trained on (by name, or the same folder or zip)."""
    if source == trained_on.get("data"):
        return True
    recorded = trained_on.get("data_path")
    try:
        return recorded is not None and Path(source).expanduser().resolve() == Path(recorded)
    except OSError:
        return False


def _training_split(source: str, trained_on: dict, size, seed: int, load):
    """The source split again as the model's training split it (same options, same seed)."""
    from cnnviz.data import Dataset, Split, native_image_size
    from cnnviz.streaming import stream_image_folder

    options = dict(trained_on.get("data_options", {}))
    if not options.pop("stream", False):
        image_size = None if native_image_size(source) == size else size
        return load(source, image_size=image_size, seed=seed, **options)
    stream = stream_image_folder(source, image_size=size, seed=seed, **options)
    if len(stream.test) == 0:
        raise DatasetError(
            f"{source}: the model was trained on this folder and none of it was held out for testing; "
            "evaluate it on other images."
        )
    images, labels = stream.arrays("test")
    empty = Split(images[:0], labels[:0])
    return Dataset(stream.name, stream.class_names, empty, empty, Split(images, labels), seed=seed)


def evaluation_data(model, data, *, seed: int | None = None, load: Callable[..., Any] | None = None):
    """The labelled images to score `model` on, as a `cnnviz.Dataset` whose test split holds
    them, with labels on the model's classes.

    Args:
        model: a classifier with class names (e.g. from `cnnviz.load_model`).
        data: a source name or path, or a loaded `cnnviz.Dataset`. The source
            the model was trained on (by name, or the same folder or zip) gives
            its test split, drawn again as training drew it: the same options
            (`num_samples`, streamed), and `seed` or else the recorded split
            seed. Another built-in source gives its test split; any other folder
            or zip gives all its images.
        seed: split seed overriding the model's.
        load: the loader, called like `cnnviz.load_dataset` (the studio passes
            its cached one, the CLI one with a progress bar). Defaults to
            `cnnviz.load_dataset`.

    Raises:
        DatasetError: the data names a class the model does not know.
    """
    from cnnviz.data import BUILTIN_SOURCES, Dataset, Split, native_image_size
    from cnnviz.saving import class_names_of, get_metadata

    if load is None:
        from cnnviz.data import load_dataset as load
    if isinstance(data, str):
        # A model that takes any size reads the data at its own (or the loader's default) size.
        size = (
            tuple(int(side) for side in model.input_shape[1:3])
            if None not in model.input_shape[1:3]
            else None
        )
        trained_on = get_metadata(model).get("training", {})
        split_seed = split_seed_of(model) if seed is None else seed
        if _same_source(data, trained_on):
            dataset = _training_split(data, trained_on, size, split_seed, load)
        elif data.strip().lower().replace("-", "_") in BUILTIN_SOURCES:
            image_size = None if native_image_size(data) == size else size
            dataset = load(data, image_size=image_size, seed=split_seed)
        else:
            dataset = load(data, image_size=size, validation_split=0.0, test_split=0.0)
            every = Split.merge(
                [part for part in (dataset.train, dataset.validation, dataset.test) if len(part)]
            )
            dataset = dataclasses.replace(dataset, test=every)
    elif isinstance(data, Dataset):
        dataset = data
    else:
        raise DatasetError("data must be a source name, a path or a cnnviz Dataset.")
    return _on_model_classes(
        dataset, class_names_of(model), str(data) if isinstance(data, str) else data.name
    )


def _on_model_classes(dataset, model_classes: tuple[str, ...], name: str):
    """The dataset's test split only, its labels renumbered as the model numbers its classes."""
    if tuple(dataset.class_names) == tuple(model_classes):
        mapped = dataset.test
    else:
        unknown = [class_name for class_name in dataset.class_names if class_name not in model_classes]
        if unknown:
            raise DatasetError(
                f"{name}: class {unknown[0]!r} is not one the model knows "
                f"({', '.join(model_classes)}); rename or remove that folder."
            )
        numbers = np.asarray([model_classes.index(class_name) for class_name in dataset.class_names])
        mapped = dataclasses.replace(dataset.test, labels=numbers[dataset.test.labels].astype(np.int64))
    empty = mapped.subset(np.zeros(0, dtype=np.int64))
    return dataclasses.replace(
        dataset, class_names=tuple(model_classes), train=empty, validation=empty, test=mapped
    )


def evaluate_saved(model, data, *, seed: int | None = None, load: Callable[..., Any] | None = None):
    """Scores a model on images it never saw (see `evaluation_data`); returns an `EvaluationResult`."""
    from cnnviz.evaluation import evaluate

    return evaluate(model, evaluation_data(model, data, seed=seed, load=load), split="test")


def export_model(
    model,
    path,
    format: str = "onnx",
    data=None,
    *,
    load: Callable[..., Any] | None = None,
):
    """Exports `model` with its heatmap (`cnnviz.export.export`), validated on images it never saw.

    Args:
        model: a classifier with class names (e.g. from `cnnviz.load_model`).
        path: the file (`.onnx`, `.tflite`) or folder (`savedmodel`) to write.
        format: one of `cnnviz.export.FORMATS`.
        data: the labelled images to validate on, as `evaluation_data` takes them; defaults to the data
            the model was trained on (its recorded source), drawn again to its test split.
        load: the loader, as for `evaluation_data`.

    Returns:
        The `ExportReport`.

    Raises:
        ConfigError: no data given and none recorded in the model.
    """
    from cnnviz.errors import ConfigError
    from cnnviz.export import export
    from cnnviz.saving import get_metadata

    if data is None:
        data = get_metadata(model).get("training", {}).get("data")
        if data is None:
            raise ConfigError(
                "the model records no training data to validate the export on; give data (a built-in name, "
                "a folder or a .zip of labelled images)."
            )
    images = evaluation_data(model, data, load=load).test.images
    return export(model, path, format, images)


def model_card(
    model,
    data=None,
    *,
    settings_link: str | None = None,
    load: Callable[..., Any] | None = None,
    examples: int = 8,
) -> str:
    """A model card (`cnnviz.report`): one self-contained HTML file, scored on images the model never saw.

    Args:
        model: a classifier with class names (e.g. from `cnnviz.load_model`).
        data: the labelled images, as `evaluation_data` takes them; defaults to the model's recorded source.
        settings_link: the studio link of the training settings, when the caller has one.
        load: the loader, as for `evaluation_data`.
        examples: how many mistakes and samples to show, at most.

    Returns:
        The HTML text.

    Raises:
        ConfigError: no data given and none recorded in the model.
    """
    import datetime

    import numpy as np

    from cnnviz.errors import ConfigError
    from cnnviz.evaluation import evaluate
    from cnnviz.explanations import explain_each
    from cnnviz.models import describe_model
    from cnnviz.report import render_card
    from cnnviz.saving import class_names_of, get_metadata

    provenance = get_metadata(model).get("training", {})
    if data is None:
        data = provenance.get("data")
        if data is None:
            raise ConfigError(
                "the model records no training data to score it on; give data (a built-in name, a folder "
                "or a .zip of labelled images)."
            )
    dataset = evaluation_data(model, data, load=load)
    result = evaluate(model, dataset, split="test")
    names = class_names_of(model)
    predicted = result.probabilities.argmax(axis=1)
    confidence = result.probabilities[np.arange(len(predicted)), predicted]
    wrong = np.flatnonzero(predicted != result.labels)
    wrong = wrong[np.argsort(-confidence[wrong])][:examples]
    right = [
        int(np.flatnonzero((result.labels == index) & (predicted == index))[0])
        for index in range(len(names))
        if np.any((result.labels == index) & (predicted == index))
    ][:examples]
    images = dataset.test.images

    def shown(indices, caption):
        chosen = [images[index] for index in indices]
        heatmaps = (
            explain_each(model, chosen, class_index=[int(predicted[index]) for index in indices])
            if chosen
            else []
        )
        return [(image, heatmap, caption(index)) for image, heatmap, index in zip(chosen, heatmaps, indices)]

    return render_card(
        title=model.name,
        class_names=names,
        data_summary=f"{dataset.name}: {len(names)} classes, {'x'.join(map(str, dataset.image_shape))}; "
        f"scored on its {len(dataset.test):,} test images, which the model never trained on",
        layers=describe_model(model),
        parameters=int(model.count_params()),
        provenance=provenance,
        result=result,
        mistakes=shown(
            wrong,
            lambda index: (
                f"true {names[result.labels[index]]}, said {names[predicted[index]]} "
                f"({confidence[index]:.0%})"
            ),
        ),
        samples=shown(right, lambda index: f"{names[predicted[index]]} ({confidence[index]:.0%})"),
        settings_link=settings_link,
        created=datetime.date.today().isoformat(),
    )
