"""Saving and loading models, with their class names, atomically and safely.

A `.keras` file is a zip; cnnviz adds one small `cnnviz.json` entry holding the
class names and where the model came from. The image preprocessing lives in the
model itself (its input shape and `rescale` layer), so a loaded model predicts
correctly on a raw image file. Files are written to a temporary name and
renamed, so a crash never leaves a half-written model behind.
"""

from __future__ import annotations

import json
import math
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


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_WEIGHTS_ENTRY = "model.weights.h5"
_MAX_JSON_BYTES = 16 * 1024**2  # config.json and cnnviz.json: a MobileNetV2 config is ~0.2 MB
_MAX_ENTRIES = 10_000
_CHUNK = 1024**2


def load_model(path: str | os.PathLike):
    """Loads a `.keras` model safely: no code from the file runs, and memory stays bounded.

    Before Keras sees the file, cnnviz checks it against the model limits
    (`CNNVIZ_MAX_MODEL_BYTES`, `CNNVIZ_MAX_MODEL_PARAMS`, see `cnnviz.limits`):
    the sizes the zip declares, the bytes its entries actually inflate to (read
    in chunks, stopped at the limit whatever the zip declares), the parameter
    count that the config asks for (counted without allocating them) and the
    sizes of the arrays in the weights file. Keras then loads it in safe mode.

    Args:
        path: a `.keras` file saved by cnnviz or by Keras.

    Returns:
        The Keras model, with its class names available through `class_names_of`.

    Raises:
        ModelFileError: missing file, a legacy `.h5` file, not a `.keras` zip,
            a file or model over the limits, a model that needs unsafe code
            (e.g. a Lambda layer), or one that is not an image classifier.
    """
    import keras

    path = Path(path)
    config, metadata = _checked_archive(path)
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except ModelFileError:
        raise
    except Exception as error:  # Keras raises many kinds here; all mean "unusable file"
        raise _load_error(path, error) from None
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


def _load_error(path: Path, error: Exception) -> ModelFileError:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if "safe_mode" in str(error) or "Lambda" in str(error):
        return ModelFileError(
            f"{path.name}: the model contains code (e.g. a Lambda layer) and is refused for safety; "
            "rebuild it with standard layers."
        )
    return ModelFileError(f"{path.name}: cannot load this model ({text[:200]}).")


def _megabytes(count: int) -> str:
    return f"{count / 1024**2:,.0f} MB" if count >= 1024**2 else f"{count / 1024:,.1f} KB"


def _checked_archive(path: Path) -> tuple[dict, dict]:
    """The model's config and cnnviz metadata, once the file has passed every size check."""
    from cnnviz import limits

    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file.")
    with open(path, "rb") as file:
        head = file.read(len(_HDF5_SIGNATURE))
    if head == _HDF5_SIGNATURE:
        raise ModelFileError(
            f"{path.name}: a legacy HDF5 (.h5) model, refused because Keras' safe mode does not cover it. "
            "Re-save it as .keras where you trust it: keras.models.load_model('model.h5').save('model.keras')."
        )
    if not zipfile.is_zipfile(path):
        raise ModelFileError(
            f"{path.name}: not a Keras 3 .keras model file; save the model with model.save('x.keras')."
        )
    limit = limits.max_model_bytes()
    over = f"over the model size limit of {_megabytes(limit)} (CNNVIZ_MAX_MODEL_BYTES)"
    if path.stat().st_size > limit:
        raise ModelFileError(f"{path.name}: the file is {_megabytes(path.stat().st_size)}, {over}.")
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
            if len(entries) > _MAX_ENTRIES:
                raise ModelFileError(f"{path.name}: {len(entries):,} entries; not a .keras model file.")
            declared = sum(entry.file_size for entry in entries)
            if declared > limit:
                raise ModelFileError(f"{path.name}: it unpacks to {_megabytes(declared)}, {over}.")
            names = {entry.filename for entry in entries}
            if "config.json" not in names:
                raise ModelFileError(f"{path.name}: zip has no model config; not a .keras model file.")
            config = json.loads(_read_capped(archive, "config.json", _MAX_JSON_BYTES, path))
            metadata = (
                json.loads(_read_capped(archive, METADATA_ENTRY, _MAX_JSON_BYTES, path))
                if METADATA_ENTRY in names
                else {}
            )
            if not isinstance(config, dict) or not isinstance(metadata, dict):
                raise ModelFileError(f"{path.name}: damaged model file (its config is not a JSON object).")
            _check_parameter_count(config, path)
            if _WEIGHTS_ENTRY in names:
                _check_weights(archive, path, limit, over)
    except (zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError, EOFError, OSError) as error:
        raise ModelFileError(f"{path.name}: damaged model file ({str(error)[:200]}).") from None
    return config, metadata


def _read_capped(archive: zipfile.ZipFile, name: str, cap: int, path: Path, sink=None) -> bytes:
    """Reads one entry in chunks, stopping past `cap` bytes whatever the zip declares.

    With `sink` (a binary file), the bytes are written there instead of returned.
    """
    read = 0
    chunks = []
    with archive.open(name) as entry:
        while chunk := entry.read(_CHUNK):
            read += len(chunk)
            if read > cap:
                raise ModelFileError(
                    f"{path.name}: {name} inflates past {_megabytes(cap)}, over the limit; "
                    "not a model cnnviz will load."
                )
            if sink is None:
                chunks.append(chunk)
            else:
                sink.write(chunk)
    return b"".join(chunks)


def _check_parameter_count(config: dict, path: Path) -> None:
    """Refuses a config that asks for more parameters than the limit, before any is allocated."""
    from cnnviz import limits

    try:
        count = _config_parameter_count(config)
    except Exception as error:  # a safe-mode refusal, raised again by Keras' own loading otherwise
        raise _load_error(path, error) from None
    limit = limits.max_model_params()
    if count > limit:
        raise ModelFileError(
            f"{path.name}: the model has {count:,} parameters, over the limit of {limit:,} "
            "(CNNVIZ_MAX_MODEL_PARAMS)."
        )


def _config_parameter_count(config: dict) -> int:
    """How many weights the config's model asks for, counted on variables that are never allocated.

    The model is rebuilt in a Keras `StatelessScope`, which defers every
    variable's initializer and lists the variable instead. The variables listed
    are counted, also when the rebuild fails part-way (Keras' own loading
    would have allocated them before failing the same way), and then dropped
    from Keras' list so that nothing ever allocates them.

    Raises:
        Exception: Keras' safe-mode refusal of a layer that holds code.
    """
    import keras
    from keras.src.backend.common import global_state

    config = {key: value for key, value in config.items() if key != "compile_config"}
    pending = list(global_state.get_global_attribute("uninitialized_variables", []) or [])
    try:
        with keras.StatelessScope(initialize_variables=False):
            try:
                keras.saving.deserialize_keras_object(config, safe_mode=True)
            except Exception as error:
                if "safe_mode" in str(error) or "Lambda" in str(error):
                    raise
                # Any other failure is Keras' own loading error to report, once the size is known safe.
        created = global_state.get_global_attribute("uninitialized_variables", []) or []
        # Dropout's random-seed states are variables too, but not weights: leave them out.
        weights = [variable for variable in created[len(pending) :] if "seed_generator" not in variable.path]
        return sum(math.prod(variable.shape) for variable in weights)
    finally:
        global_state.set_global_attribute("uninitialized_variables", pending)


def _check_weights(archive: zipfile.ZipFile, path: Path, limit: int, over: str) -> None:
    """Inflates the weights entry to a temporary file under a hard cap, then sizes its arrays.

    An HDF5 array may declare a shape far larger than the bytes it stores;
    Keras would allocate the declared size when it reads it.
    """
    import h5py

    declared = archive.getinfo(_WEIGHTS_ENTRY).file_size
    with tempfile.TemporaryFile(prefix="cnnviz-weights-") as copy:
        _read_capped(archive, _WEIGHTS_ENTRY, min(declared, limit), path, sink=copy)
        copy.seek(0)
        try:
            weights = h5py.File(copy, "r")
        except OSError:
            raise ModelFileError(f"{path.name}: damaged model file (its weights are not HDF5).") from None
        with weights:
            arrays = []
            weights.visititems(
                lambda _, item: arrays.append(item) if isinstance(item, h5py.Dataset) else None
            )
            total = sum(math.prod(array.shape) * array.dtype.itemsize for array in arrays)
    if total > limit:
        raise ModelFileError(f"{path.name}: its weights declare {_megabytes(total)}, {over}.")
