"""Which data the studio trains on: a built-in source, an uploaded zip, or a
folder on the server's disk streamed batch by batch.

The Data page sets it; the Train page reads it with `current_data()`. The
folder source reads paths on the machine running the app, so it is offered
only when that machine's owner starts the app with `CNNVIZ_LOCAL_FOLDERS=1`
(never on a hosted demo by default).
"""

from __future__ import annotations

import hashlib
import os
import tempfile

import numpy as np
import streamlit as st

import cnnviz
from ui import compute, settings
from ui.session import Upload, studio

SOURCES = {
    "shapes": "Shapes: 64x64 colour circles, squares, triangles, stars (bundled)",
    "digits": "Handwritten digits: 28x28 gray (bundled)",
    "mnist": "MNIST: 70,000 handwritten digits (downloads 11 MB once)",
    "fashion_mnist": "Fashion-MNIST: 70,000 clothing images (downloads 30 MB once)",
    "cifar10": "CIFAR-10: 60,000 32x32 photos (downloads 170 MB once)",
    "upload": "Your own images: a .zip with one folder per class",
    "folder": "A folder on this computer, streamed from disk (for data larger than memory)",
}
FOLDER_KEY = "data.folder"  # the folder path's text box (not shared: a link must not carry server paths)
SAMPLE_LIMIT = 600  # images per split decoded for galleries and the Results page


def local_folders_allowed() -> bool:
    return os.environ.get("CNNVIZ_LOCAL_FOLDERS") == "1"


def available_sources() -> dict[str, str]:
    return {key: label for key, label in SOURCES.items() if key != "folder" or local_folders_allowed()}


def open_folder(path: str):
    """Lists a folder for streaming (no pixels read), kept per session and path."""
    session = studio()
    if session.stream is not None and session.stream[0] == path:
        return session.stream[1]
    stream = cnnviz.stream_image_folder(path, validation_split=0.1, test_split=0.1)
    session.stream = (path, stream)
    return stream


def in_memory(data):
    """`data` itself, or an in-memory sample of a streamed folder (for galleries and scoring)."""
    if isinstance(data, cnnviz.ImageStream):
        return compute.stream_sample(data, SAMPLE_LIMIT)
    return data


def load_uploaded_zip(data: bytes, name: str):
    """Loads an uploaded zip (read in place, never extracted) through a private temp file."""
    digest = hashlib.sha1(data).hexdigest()
    session = studio()
    if session.uploaded_data is not None and session.uploaded_data.digest == digest:
        return session.uploaded_data.value
    handle, path = tempfile.mkstemp(suffix=".zip")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        dataset = cnnviz.load_dataset(path)
    finally:
        os.unlink(path)
    session.uploaded_data = Upload(digest, name, dataset)
    return dataset


def size_note(data) -> str:
    """Which size and channels the images train at, and why, in one sentence."""
    height, width, channels = data.image_shape
    kind = "gray (one channel)" if channels == 1 else "colour"
    reason = data.report.size_reason if data.report is not None else ""
    return f"Images train at **{height}x{width}**, {kind}: {reason or 'the size this source comes in'}."


def current_data_or_stop():
    """`current_data()`, or the page shows why the data cannot load and stops there."""
    try:
        return current_data()
    except cnnviz.CnnvizError as error:
        st.error(f"{error} Choose another source on the Data page.")
        st.stop()


def current_data():
    """`(source key, Dataset)` chosen on the Data page (shapes until one is chosen).

    Raises:
        cnnviz.CnnvizError: the source cannot be loaded (e.g. offline and not cached).
    """
    source = settings.value("data.source")
    session = studio()
    if source == "folder" and session.stream is not None:
        return f"folder:{session.stream[1].name}", session.stream[1]
    if source == "upload" and session.uploaded_data is not None:
        return f"upload:{session.uploaded_data.name}", session.uploaded_data.value
    if source in ("folder", "upload"):  # nothing opened or uploaded yet
        source = "shapes"
    return source, compute.dataset(source)


def test_data(choice):
    """`(data, streamed)`: the labelled test images the chosen model never saw (None when unknown),
    and whether they are a sample of a folder streamed from disk."""
    own = studio().trained.data if choice.kind == "session" and studio().trained is not None else None
    streamed = isinstance(own, cnnviz.ImageStream)
    own = in_memory(own) if streamed else own
    return compute.evaluation_data(choice.model, choice.key, choice.data_source, own), streamed


def test_data_or_stop(choice, needs: str, to_see: str):
    """`test_data(choice)`'s data, or the page says why there is none and stops.

    `needs` starts the sentence ("Results need"); `to_see` ends the one about too few images ("see results").
    """
    data, streamed = test_data(choice)
    if streamed:
        st.caption(f"Data streamed from disk: scored on the first {SAMPLE_LIMIT} test images.")
    if data is None:
        st.info(
            f"{needs} the labelled test images the model was made for. They are known for the default models, "
            "for a model trained on the Train page in this session, and for an uploaded model trained by cnnviz "
            "on a built-in source."
        )
        st.page_link("pages/train.py", label="Train a model on your data", icon=":material/model_training:")
        st.stop()
    if len(data.test) == 0:
        st.info(f"This data has no test images (too few images per class); add more images to {to_see}.")
        st.stop()
    return data


def test_patches(choice, layer: str, filters: tuple[int, ...]):
    """The test patches that excite each filter most (`cnnviz.top_patches`, over at most `EXAMPLE_LIMIT`
    test images), or None when the model's test images are not known."""
    data, _ = test_data(choice)
    if data is None or len(data.test) == 0:
        return None
    return compute.top_patches(choice.model, choice.key, layer, filters, data.test.images[:EXAMPLE_LIMIT])


#: Most training images searched for look-alikes ("why A and not B"): features of 2,000 small images
#: take about a second on 2 cores, once per model.
EXAMPLE_LIMIT = 2000


def trained_on(choice):
    """The data the chosen model was trained on, split as it was (a streamed folder stays streamed), or None
    when unknown: known for a model trained here, and for one cnnviz trained on a built-in source."""
    from cnnviz.data import BUILTIN_SOURCES, native_image_size
    from cnnviz.runs import split_seed_of

    if choice.kind == "session":
        trained = studio().trained
        return None if trained is None else trained.data
    if (
        choice.data_source in BUILTIN_SOURCES
        and native_image_size(choice.data_source) == choice.input_shape[:2]
    ):
        return compute.dataset(choice.data_source, None, split_seed_of(choice.model))
    return None


def training_examples(choice):
    """The training images the chosen model learnt from (at most `EXAMPLE_LIMIT`), or None when unknown."""
    data = trained_on(choice)
    data = None if data is None else in_memory(data)
    if data is None or len(data.train) == 0:
        return None
    return data.train.subset(np.arange(min(len(data.train), EXAMPLE_LIMIT)))
