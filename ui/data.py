"""Which data the studio trains on: a built-in source or an uploaded zip.

The Data page sets it; the Train page reads it with `current_data()`.
"""

from __future__ import annotations

import hashlib
import os
import tempfile

import streamlit as st

import cnnviz
from ui import compute

SOURCES = {
    "shapes": "Shapes: 64x64 colour circles, squares, triangles, stars (bundled)",
    "digits": "Handwritten digits: 28x28 gray (bundled)",
    "mnist": "MNIST: 70,000 handwritten digits (downloads 11 MB once)",
    "fashion_mnist": "Fashion-MNIST: 70,000 clothing images (downloads 30 MB once)",
    "cifar10": "CIFAR-10: 60,000 32x32 photos (downloads 170 MB once)",
    "upload": "Your own images: a .zip with one folder per class",
}
SOURCE_KEY = "data.source"
UPLOADED_KEY = "data.uploaded"


def load_uploaded_zip(data: bytes, name: str):
    """Loads an uploaded zip (read in place, never extracted) through a private temp file."""
    digest = hashlib.sha1(data).hexdigest()
    stored = st.session_state.get(UPLOADED_KEY)
    if stored is not None and stored[0] == digest:
        return stored[1]
    handle, path = tempfile.mkstemp(suffix=".zip")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        dataset = cnnviz.load_dataset(path)
    finally:
        os.unlink(path)
    st.session_state[UPLOADED_KEY] = (digest, dataset, name)
    return dataset


def current_data():
    """`(source key, Dataset)` chosen on the Data page (shapes until one is chosen).

    Raises:
        cnnviz.CnnvizError: the source cannot be loaded (e.g. offline and not cached).
    """
    source = st.session_state.get(SOURCE_KEY, "shapes")
    if source not in SOURCES:  # a stale or hand-edited link
        source = "shapes"
    if source == "upload":
        stored = st.session_state.get(UPLOADED_KEY)
        if stored is None:
            source = "shapes"
        else:
            return f"upload:{stored[2]}", stored[1]
    return source, compute.dataset(source, None, 0)
