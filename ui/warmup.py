"""TensorFlow and the default models, loaded once per server in a background thread.

`import tensorflow` takes 4 to 7 s. A server starts that import in the background on its first script run
(`start`), and until it is done (`ready`) the Predict page answers with the default models' ONNX exports
(`ui.quick`), which onnxruntime loads in a fraction of a second. Pages that need Keras wait for `model`.
"""

from __future__ import annotations

import threading

import cnnviz
from ui import ASSETS

_DONE = threading.Event()
_START = threading.Event()
_LOCK = threading.Lock()
_STATE: dict = {"thread": None, "models": {}, "error": None}
#: The default model files loaded in the background, the first one first.
FILES = ("shapes.keras", "digits.keras")


def _load(delay: float) -> None:
    _START.wait(delay)  # cut short by a page that needs the models now (model)
    try:
        for file_name in FILES:
            _STATE["models"][file_name] = cnnviz.load_model(ASSETS / "models" / file_name)
    except Exception as error:  # kept and raised to the page that asks (model), never lost in the thread
        _STATE["error"] = error
    finally:
        _DONE.set()


def start(delay: float = 0.0) -> None:
    """Starts loading TensorFlow and the default models, once per server, after `delay` seconds; returns at once.

    The delay lets the first visitor's browser fetch the page's images first: importing TensorFlow holds
    the interpreter, and the server's web requests with it, for seconds.
    """
    with _LOCK:
        if _STATE["thread"] is None:
            # Imported here first, in the calling script thread: TensorFlow's import also imports them, and
            # two threads importing pandas at once (each holding a module the other needs) get a partly
            # initialized pandas ("has no attribute 'Series'", found with 10 visitors at once).
            import pandas  # noqa: F401
            import pyarrow  # noqa: F401

            _STATE["thread"] = threading.Thread(
                target=_load, args=(delay,), name="cnnviz-warmup", daemon=True
            )
            _STATE["thread"].start()


def ready() -> bool:
    """Whether the default models are loaded (TensorFlow with them)."""
    return _DONE.is_set()


def model(file_name: str):
    """A default model, waiting for the background load if it is still going on."""
    start()
    _START.set()  # no more waiting: somebody needs them
    _DONE.wait()
    if _STATE["error"] is not None:
        raise _STATE["error"]
    return _STATE["models"][file_name]
