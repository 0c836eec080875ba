"""Saving and loading models, with their class names, atomically and safely.

A `.keras` file is a zip; cnnviz adds one small `cnnviz.json` entry holding the
class names and where the model came from. The image preprocessing lives in the
model itself (its input shape and `rescale` layer), so a loaded model predicts
correctly on a raw image file. Files are written to a temporary name and
renamed, so a crash never leaves a half-written model behind.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from cnnviz.errors import ModelFileError

METADATA_ENTRY = "cnnviz.json"
_METADATA_ATTRIBUTE = "_cnnviz_metadata_json"


def set_metadata(model, **values: Any) -> None:
    """Attaches cnnviz metadata (e.g. `class_names`) to a model object."""
    metadata = get_metadata(model)
    metadata.update(values)
    # A JSON string is stored as-is by Keras' attribute tracking.
    object.__setattr__(model, _METADATA_ATTRIBUTE, json.dumps(metadata))


def get_metadata(model) -> dict[str, Any]:
    """The cnnviz metadata of a model (empty dict if it has none)."""
    raw = getattr(model, _METADATA_ATTRIBUTE, None)
    return json.loads(raw) if raw else {}


def class_names_of(model) -> tuple[str, ...]:
    """The model's class names, or `class_0`, `class_1`, ... if it has none."""
    names = get_metadata(model).get("class_names")
    num_classes = int(model.output_shape[-1])
    if names and len(names) == num_classes:
        return tuple(str(name) for name in names)
    return tuple(f"class_{index}" for index in range(num_classes))


def save_model(model, path: str | os.PathLike, class_names: tuple[str, ...] | None = None) -> Path:
    """Saves `model` as a `.keras` file with its class names, atomically.

    Args:
        model: a Keras model.
        path: destination ending in `.keras`.
        class_names: optional class names; defaults to the model's metadata.

    Returns:
        The path written.

    Raises:
        ModelFileError: the path does not end in `.keras` or cannot be written.
    """
    import keras

    path = Path(path)
    if path.suffix != ".keras":
        raise ModelFileError(f"{path}: model files must end in .keras.")
    if class_names is not None:
        set_metadata(model, class_names=[str(name) for name in class_names])
    metadata = get_metadata(model)
    metadata.setdefault("class_names", list(class_names_of(model)))
    metadata["cnnviz_format"] = 1
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".keras", dir=path.parent)
        os.close(handle)
    except OSError as error:
        raise ModelFileError(f"{path}: cannot write here ({error.strerror or error}).") from None
    try:
        keras.saving.save_model(model, temporary)
        with zipfile.ZipFile(temporary, "a") as archive:
            archive.writestr(METADATA_ENTRY, json.dumps(metadata))
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
    return path


def load_model(path: str | os.PathLike):
    """Loads a `.keras` model safely (`safe_mode=True`: no code from the file runs).

    Args:
        path: a `.keras` file saved by cnnviz or by Keras.

    Returns:
        The Keras model, with its class names available through `class_names_of`.

    Raises:
        ModelFileError: missing file, not a `.keras` zip, a model that needs
            unsafe code (e.g. a Lambda layer), or one that is not an image
            classifier.
    """
    import keras

    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"{path}: no such model file.")
    if not zipfile.is_zipfile(path):
        raise ModelFileError(
            f"{path.name}: not a Keras 3 .keras model file; save the model with model.save('x.keras')."
        )
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if "config.json" not in names:
                raise ModelFileError(f"{path.name}: zip has no model config; not a .keras model file.")
            metadata = json.loads(archive.read(METADATA_ENTRY)) if METADATA_ENTRY in names else {}
    except (zipfile.BadZipFile, json.JSONDecodeError, KeyError) as error:
        raise ModelFileError(f"{path.name}: damaged model file ({error}).") from None
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except ModelFileError:
        raise
    except Exception as error:  # Keras raises many kinds here; all mean "unusable file"
        text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if "safe_mode" in str(error) or "Lambda" in str(error):
            raise ModelFileError(
                f"{path.name}: the model contains code (e.g. a Lambda layer) and is refused for safety; "
                "rebuild it with standard layers."
            ) from None
        raise ModelFileError(f"{path.name}: cannot load this model ({text[:200]}).") from None
    if not isinstance(model, keras.Model):
        raise ModelFileError(f"{path.name}: does not hold a Keras model.")
    inputs = model.inputs
    if len(inputs) != 1 or len(inputs[0].shape) != 4 or len(model.outputs) != 1:
        raise ModelFileError(
            f"{path.name}: expected an image classifier with one (height, width, channels) input "
            "and one output."
        )
    if metadata:
        set_metadata(model, **metadata)
    return model
