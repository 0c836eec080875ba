"""The one place for every size limit on what enters cnnviz.

Each limit has a default and an environment variable that overrides it, read at
call time so a hosted demo can tighten them without code changes.
"""

import os

_DEFAULTS = {
    # Largest image, in pixels, that the loader will decode (~ a 48 MP photo).
    "CNNVIZ_MAX_IMAGE_PIXELS": 50_000_000,
    # Largest image file, in bytes.
    "CNNVIZ_MAX_IMAGE_BYTES": 50 * 1024 * 1024,
    # Most entries a dataset zip may hold.
    "CNNVIZ_MAX_ZIP_ENTRIES": 100_000,
    # Most bytes a dataset zip may unpack to.
    "CNNVIZ_MAX_ZIP_BYTES": 2 * 1024**3,
    # Most files a dataset folder or zip may hold.
    "CNNVIZ_MAX_DATASET_FILES": 100_000,
    # Most files a folder streamed from disk may hold (only names are kept in memory).
    "CNNVIZ_MAX_STREAM_FILES": 10_000_000,
    # Most bytes a model file may hold or unpack to (the sizes its zip declares and the bytes actually read).
    "CNNVIZ_MAX_MODEL_BYTES": 300 * 1024**2,
    # Most parameters (weights) a model file may ask for, counted from its config before any allocation.
    "CNNVIZ_MAX_MODEL_PARAMS": 60_000_000,
    # Most activations (values) one image may make in a model, counted from its config at the largest input.
    "CNNVIZ_MAX_ACTIVATIONS": 100_000_000,
    # Longest side, in pixels, at which a model that takes any input size reads an image (larger ones are scaled down).
    "CNNVIZ_MAX_INPUT_SIDE": 512,
    # Most studio sessions served at once; a visitor past it sees "busy, try again in a minute".
    # 20 is the knee on 2 cores (bench/load.py, docs/RELIABILITY.md): more, and the p95 answer passes 2 s.
    "CNNVIZ_MAX_SESSIONS": 20,
    # Most classes in one dataset.
    "CNNVIZ_MAX_CLASSES": 1000,
    # Most epochs one training run in the studio may ask for (its slider's end).
    "CNNVIZ_MAX_EPOCHS": 50,
    # Longest time budget, in seconds, of one training run in the studio (its slider's end).
    "CNNVIZ_MAX_TIME_BUDGET": 600,
    # Longest a studio run goes on, in seconds, once its browser tab is closed (then it stops as if Stop was pressed).
    "CNNVIZ_MAX_UNWATCHED_SECONDS": 30,
}


def get_limit(name: str) -> int:
    """Returns the limit `name`, from the environment if set there.

    Args:
        name: str, one of the `CNNVIZ_MAX_*` names.

    Returns:
        The limit as an int.

    Raises:
        ValueError: the environment holds a value that is not a positive int.
    """
    default = _DEFAULTS[name]
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a whole number; unset it or give e.g. {default}.")
    if value <= 0:
        raise ValueError(f"{name}={raw!r} must be positive; unset it or give e.g. {default}.")
    return value


def max_image_pixels() -> int:
    return get_limit("CNNVIZ_MAX_IMAGE_PIXELS")


def max_image_bytes() -> int:
    return get_limit("CNNVIZ_MAX_IMAGE_BYTES")


def max_zip_entries() -> int:
    return get_limit("CNNVIZ_MAX_ZIP_ENTRIES")


def max_zip_bytes() -> int:
    return get_limit("CNNVIZ_MAX_ZIP_BYTES")


def max_dataset_files() -> int:
    return get_limit("CNNVIZ_MAX_DATASET_FILES")


def max_classes() -> int:
    return get_limit("CNNVIZ_MAX_CLASSES")


def max_epochs() -> int:
    return get_limit("CNNVIZ_MAX_EPOCHS")


def max_time_budget() -> int:
    return get_limit("CNNVIZ_MAX_TIME_BUDGET")


def max_unwatched_seconds() -> int:
    return get_limit("CNNVIZ_MAX_UNWATCHED_SECONDS")


def max_model_bytes() -> int:
    return get_limit("CNNVIZ_MAX_MODEL_BYTES")


def max_model_params() -> int:
    return get_limit("CNNVIZ_MAX_MODEL_PARAMS")


def max_input_side() -> int:
    return get_limit("CNNVIZ_MAX_INPUT_SIDE")


def max_sessions() -> int:
    return get_limit("CNNVIZ_MAX_SESSIONS")


def max_activations() -> int:
    return get_limit("CNNVIZ_MAX_ACTIVATIONS")
