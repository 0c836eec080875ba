"""Saving and loading models, with their class names, atomically and safely.

A `.keras` file is a zip; cnnviz adds one small `cnnviz.json` entry holding the
class names and where the model came from. The image preprocessing lives in the
model itself (its input shape and `rescale` layer), so a loaded model predicts
correctly on a raw image file. Files are written to a temporary name and
renamed, so a crash never leaves a half-written model behind.
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import struct
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from cnnviz.errors import ModelFileError

METADATA_ENTRY = "cnnviz.json"
TIMELINE_ENTRY = "timeline.npz"  # the training timeline (`cnnviz.timeline`), when the model has one
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
    staged = temporary.removesuffix(".keras") + ".staged.keras"  # Keras' own file, copied into `temporary`
    try:
        from cnnviz.timeline import dump_timeline, timeline_of

        keras.saving.save_model(model, staged)
        entries = {METADATA_ENTRY: json.dumps(metadata)}
        timeline = timeline_of(model)
        if timeline:
            entries[TIMELINE_ENTRY] = dump_timeline(timeline)
        portable = not getattr(model, "compiled", False) or _optimizer_is_keras_own(model)
        _copy_archive(staged, temporary, entries, drop_compile_config=not portable)
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
    finally:
        if os.path.exists(staged):
            os.remove(staged)
    return path


def _optimizer_is_keras_own(model) -> bool:
    """Whether Keras alone can rebuild the compiled model's optimizer (and any it wraps) from a saved config."""
    optimizer = getattr(model, "optimizer", None)
    while optimizer is not None:
        if not type(optimizer).__module__.startswith("keras."):
            return False
        optimizer = getattr(optimizer, "inner_optimizer", None)  # LossScaleOptimizer wraps another
    return True


def _copy_archive(source: str, target: str, entries: dict[str, Any], drop_compile_config: bool) -> None:
    """Copies the Keras archive `source` into `target`, adding `entries` (name -> text or bytes).

    With `drop_compile_config`, `config.json` loses its compile settings. Keras
    rebuilds a saved model's optimizer by class name when it loads a file, so a
    model trained with cnnviz's `ConvMuon` would load only where cnnviz is
    imported; without compile settings it loads anywhere, uncompiled (the
    optimizer's variables stay in the weights file, unused). cnnviz loads
    models with `compile=False` and compiles them afresh to train.
    """
    with zipfile.ZipFile(source) as reading, zipfile.ZipFile(target, "w") as writing:
        for info in reading.infolist():
            if info.filename == "config.json" and drop_compile_config:
                config = json.loads(reading.read(info))
                config.pop("compile_config", None)
                writing.writestr(info, json.dumps(config))
            else:
                # Its own ZipInfo: opening for writing resets the sizes and CRC the reader checks against.
                with reading.open(info) as entry, writing.open(copy.copy(info), "w") as copied:
                    shutil.copyfileobj(entry, copied, _CHUNK)
        for name, content in entries.items():
            writing.writestr(name, content)


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_WEIGHTS_ENTRY = "model.weights.h5"
_MAX_JSON_BYTES = 16 * 1024**2  # config.json and cnnviz.json: a MobileNetV2 config is ~0.2 MB
_MAX_ENTRIES = 10_000
_MAX_TIMELINE_BYTES = 64 * 1024**2  # 50 epochs of 16 probes at 128 px and 500 feature vectors: ~15 MB
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
    config, metadata, timeline = _checked_archive(path)
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
    if timeline is not None:
        from cnnviz.timeline import attach

        attach(model, timeline)
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


def _checked_archive(path: Path) -> tuple[dict, dict, list | None]:
    """The model's config, cnnviz metadata and training timeline, once the file has passed every size check."""
    from cnnviz import limits

    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file.")
    with open(path, "rb") as file:
        head = file.read(len(_HDF5_SIGNATURE))
    if head == _HDF5_SIGNATURE:
        raise ModelFileError(
            f"{path.name}: a legacy HDF5 (.h5) file, refused because Keras' safe mode does not cover it. "
            "Re-save it as .keras where you trust it: keras.models.load_model('model.h5').save('model.keras') "
            "for a whole model, or build the model, load_weights('weights.h5') and save('model.keras')."
        )
    if not zipfile.is_zipfile(path):
        raise ModelFileError(
            f"{path.name}: not a Keras 3 .keras model file; save the model with model.save('x.keras')."
        )
    limit = limits.max_model_bytes()
    over = f"over the model size limit of {_megabytes(limit)} (CNNVIZ_MAX_MODEL_BYTES)"
    if path.stat().st_size > limit:
        raise ModelFileError(f"{path.name}: the file is {_megabytes(path.stat().st_size)}, {over}.")
    # Before zipfile reads the whole index into memory: a small file can declare millions of entries.
    entries = _declared_entry_count(path)
    if entries > _MAX_ENTRIES:
        raise ModelFileError(f"{path.name}: {entries:,} entries; not a .keras model file.")
    try:
        with zipfile.ZipFile(path) as archive:
            declared = sum(entry.file_size for entry in archive.infolist())
            if declared > limit:
                raise ModelFileError(f"{path.name}: it unpacks to {_megabytes(declared)}, {over}.")
            names = set(archive.namelist())
            for required in ("config.json", _WEIGHTS_ENTRY):
                if required not in names:
                    raise ModelFileError(
                        f"{path.name}: no {required} inside; not a .keras model file saved by model.save('x.keras')."
                    )
            config = json.loads(_read_capped(archive, "config.json", _MAX_JSON_BYTES, path))
            metadata = (
                json.loads(_read_capped(archive, METADATA_ENTRY, _MAX_JSON_BYTES, path))
                if METADATA_ENTRY in names
                else {}
            )
            from cnnviz.timeline import load_timeline

            timeline = (
                load_timeline(_read_capped(archive, TIMELINE_ENTRY, _MAX_TIMELINE_BYTES, path), path.name)
                if TIMELINE_ENTRY in names
                else None
            )
            if not isinstance(config, dict) or not isinstance(metadata, dict):
                raise ModelFileError(f"{path.name}: damaged model file (its config is not a JSON object).")
            _check_inputs(config, path)
            parameters = _check_size(config, path)
            stored = _check_weights(archive, path, limit, over)
            if stored < parameters:
                raise ModelFileError(
                    f"{path.name}: its weights file holds {stored:,} values for {parameters:,} parameters; "
                    "damaged, or not saved by model.save('x.keras')."
                )
    except ModelFileError:
        raise
    except Exception as error:  # zip, deflate, JSON, HDF5: whatever a damaged or crafted file breaks
        raise ModelFileError(
            f"{path.name}: damaged model file ({str(error)[:200] or type(error).__name__})."
        ) from None
    return config, metadata, timeline


def _declared_entry_count(path: Path) -> int:
    """How many entries the zip's end-of-central-directory record (or its zip64 form) declares."""
    with open(path, "rb") as file:
        file.seek(0, os.SEEK_END)
        size = file.tell()
        file.seek(max(0, size - (1 << 16) - 22))
        tail = file.read()
    end = tail.rfind(b"PK\x05\x06")
    if end < 0 or end + 22 > len(tail):
        return 0  # zipfile will say it is damaged
    (count,) = struct.unpack_from("<H", tail, end + 10)
    zip64 = tail.rfind(b"PK\x06\x06", 0, end)
    if count == 0xFFFF and zip64 >= 0 and zip64 + 40 <= len(tail):
        (count,) = struct.unpack_from("<Q", tail, zip64 + 32)
    return count


def _input_layers(node) -> list[dict]:
    """Every InputLayer config in a model config, nested models included."""
    found = []
    if isinstance(node, dict):
        if node.get("class_name") == "InputLayer" and isinstance(node.get("config"), dict):
            found.append(node["config"])
        node = list(node.values())
    if isinstance(node, list):
        for child in node:
            found += _input_layers(child)
    return found


def _check_inputs(config: dict, path: Path) -> None:
    """Refuses a fixed batch or an input side larger than cnnviz reads, before the model is rebuilt."""
    from cnnviz import limits

    largest = 4 * limits.max_input_side()
    for layer in _input_layers(config):
        shape = layer.get("batch_shape") or layer.get("batch_input_shape") or []
        if not isinstance(shape, list) or not all(side is None or isinstance(side, int) for side in shape):
            raise ModelFileError(f"{path.name}: damaged model file (an input shape {str(shape)[:80]}).")
        if shape and shape[0] not in (None, 1):
            raise ModelFileError(
                f"{path.name}: its input takes batches of exactly {shape[0]} images; save the model with a "
                "free batch size (keras.Input(shape=...) without batch_size)."
            )
        sides = [side for side in shape[1:-1] if side is not None]
        if any(side > largest for side in sides):
            raise ModelFileError(
                f"{path.name}: its input is {'x'.join(map(str, shape[1:]))}, over the largest side cnnviz reads "
                f"({largest:,} px, 4 x CNNVIZ_MAX_INPUT_SIDE)."
            )


def _check_size(config: dict, path: Path) -> int:
    """Refuses a model over the parameter or activation limit, before anything is allocated; its parameters."""
    from cnnviz import limits

    parameters, activations, error = _config_sizes(config)
    if error is not None and ("safe_mode" in str(error) or "Lambda" in str(error)):
        raise _load_error(path, error)
    limit = limits.max_model_params()
    if parameters > limit:  # also when the rebuild failed part-way: what it had asked for already
        raise ModelFileError(
            f"{path.name}: the model has {parameters:,} parameters, over the limit of {limit:,} "
            "(CNNVIZ_MAX_MODEL_PARAMS)."
        )
    if error is not None:
        text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelFileError(
            f"{path.name}: cannot check this model's size before loading it ({text[:200]}); "
            "rebuild it with standard layers and save it with model.save('x.keras')."
        )
    limit = limits.max_activations()
    if activations > limit:
        raise ModelFileError(
            f"{path.name}: one image makes {activations:,} activations, over the limit of {limit:,} "
            "(CNNVIZ_MAX_ACTIVATIONS)."
        )
    return parameters


def _config_sizes(config: dict) -> tuple[int, int, Exception | None]:
    """The weights the config's model holds, the activations one image makes, and the rebuild's error.

    Nothing is allocated.

    The model is rebuilt in a Keras `StatelessScope`, which defers every
    variable's initializer and records its shape instead; the deferred
    variables are then dropped from Keras' (per-thread) list, so nothing ever
    initializes them. An input side the model leaves open is set to
    `CNNVIZ_MAX_INPUT_SIDE` for the rebuild, so the activations are those of
    the largest image cnnviz gives it.

    When the rebuild fails (a safe-mode refusal among others), the weights
    counted are those asked for until then, and the activations are 0.
    """
    import keras
    from keras.src.backend.common import global_state

    from cnnviz import limits

    config = json.loads(json.dumps({key: value for key, value in config.items() if key != "compile_config"}))
    side = limits.max_input_side()
    for layer in _input_layers(config):
        shape = layer.get("batch_shape") or layer.get("batch_input_shape")
        if shape:
            shape[1:-1] = [side if value is None else value for value in shape[1:-1]]
    pending = list(global_state.get_global_attribute("uninitialized_variables", []) or [])
    model, error = None, None
    try:
        with keras.StatelessScope(initialize_variables=False):
            try:
                model = keras.saving.deserialize_keras_object(config, safe_mode=True)
            except Exception as failure:
                error = failure
        created = global_state.get_global_attribute("uninitialized_variables", []) or []
        # Dropout's random-seed state is a variable, not a weight: 2 numbers, left out.
        weights = [
            variable
            for variable in created[len(pending) :]
            if not (variable.name == "seed_generator_state" and tuple(variable.shape) == (2,))
        ]
        parameters = sum(math.prod(variable.shape) for variable in weights)
        activations = 0
        layers = model._flatten_layers(include_self=False, recursive=True) if model is not None else []
        for layer in layers:
            for node in getattr(layer, "_inbound_nodes", []):
                for tensor in node.output_tensors:
                    activations += math.prod(side or 1 for side in tensor.shape[1:])
        return parameters, activations, error
    finally:
        global_state.set_global_attribute("uninitialized_variables", pending)


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


def _check_weights(archive: zipfile.ZipFile, path: Path, limit: int, over: str) -> int:
    """Inflates the weights entry to a temporary file, then sizes its arrays; how many values they hold.

    zipfile stops inflating at the size the entry declares (already within the
    limit) and a longer stream then fails its CRC check. An HDF5 array may
    declare a shape far larger than the bytes it stores; Keras would allocate
    the declared size when it reads it, so the declared sizes are summed from
    the metadata alone.
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
            values = sum(math.prod(array.shape or ()) for array in arrays)
            total = sum(math.prod(array.shape or ()) * array.dtype.itemsize for array in arrays)
    if total > limit:
        raise ModelFileError(f"{path.name}: its weights declare {_megabytes(total)}, {over}.")
    return values
