"""Cached wrappers around cnnviz for the pages.

Models are passed with a leading underscore (not hashed) next to a string key
that identifies them (see `ui.models.ModelChoice.key`); images and settings
are hashed by value. Arrays come back from `st.cache_data` (a copy per call,
so a page can never change a cached result).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st

import cnnviz
from cnnviz import explanations
from ui.models import ASSETS


@st.cache_data(max_entries=256, show_spinner=False)
def explain(
    _model, model_key: str, image: np.ndarray, method: str, layer: str | None, class_index: int | None
):
    return cnnviz.explain(_model, image, method=method, layer=layer, class_index=class_index)[0]


@st.cache_data(max_entries=256, show_spinner=False)
def explain_batch(_model, model_key: str, images: np.ndarray, method: str):
    return cnnviz.explain(_model, images, method=method)


@st.cache_data(max_entries=64, show_spinner=False)
def predict(_model, model_key: str, image: np.ndarray, top_k: int):
    return cnnviz.predict(_model, image, top_k=top_k)[0]


@st.cache_data(max_entries=64, show_spinner=False)
def layers(_model, model_key: str) -> list[explanations.LayerInfo]:
    return cnnviz.list_layers(_model)


@st.cache_data(max_entries=64, show_spinner=False)
def default_cam_layer(_model, model_key: str) -> str | None:
    try:
        return cnnviz.default_cam_layer(_model)
    except cnnviz.ConfigError:
        return None


@st.cache_data(max_entries=64, show_spinner=False)
def feature_maps(_model, model_key: str, image: np.ndarray, layer: str) -> np.ndarray:
    return cnnviz.feature_maps(_model, image, layers=[layer])[layer]


@st.cache_data(max_entries=32, show_spinner="Climbing the gradient...")
def filter_images(_model, model_key: str, layer: str, filters: tuple[int, ...]) -> np.ndarray:
    return cnnviz.filter_images(_model, layer, filters=list(filters))


@st.cache_data(max_entries=16, show_spinner="Climbing the gradient...")
def class_images(_model, model_key: str) -> np.ndarray:
    return cnnviz.class_images(_model)


@st.cache_resource(max_entries=4, show_spinner="Loading the data...")
def dataset(source: str, image_size: tuple[int, int] | None, seed: int):
    # cache_resource, not cache_data: the arrays are read-only here and up to
    # ~100 MB, which cache_data would copy on every rerun.
    return cnnviz.load_dataset(source, image_size=image_size, seed=seed)


@st.cache_resource(max_entries=8, show_spinner="Scoring the test images...")
def evaluation(_model, model_key: str, _data):
    # One evaluation per model: a model key always comes with the same data.
    return cnnviz.evaluate(_model, _data, split="test")


@st.cache_resource(max_entries=4, show_spinner=False)
def fresh_initialization(_model, model_key: str, _initial_weights=None):
    """The model before training: its recorded starting weights when known (a model trained in
    this session), else the same design freshly initialized (seed 0)."""
    import keras

    keras.utils.set_random_seed(0)
    before = keras.models.clone_model(_model)  # new layers and weights; the original is untouched
    if _initial_weights is not None:
        before.set_weights(_initial_weights)
    return before


@st.cache_data(
    max_entries=4,
    show_spinner="Reading a sample of the folder...",
    hash_funcs={
        cnnviz.ImageStream: lambda stream: (
            stream.name,
            stream.image_shape,
            tuple(stream.train.files[:50]),
            len(stream.train),
        )
    },
)
def stream_sample(stream, limit: int):
    """Decoded sample splits of a streamed folder (see `ImageStream.sample`)."""
    return stream.sample(limit)


@st.cache_data(max_entries=32, show_spinner=False)
def describe_design(config: cnnviz.ModelConfig):
    """Layer table, parameter count and FLOPs of a design (builds it once per config)."""
    if config.backbone is not None:
        config = config.replace(backbone_weights=None)  # the same layers; no download just to describe them
    model = cnnviz.build_model(config)
    return cnnviz.describe_model(model), int(model.count_params()), int(cnnviz.count_flops(model))


def sample_images(prefix: str | None) -> dict[str, Path]:
    """Sample images in assets/samples whose names start with `prefix`."""
    if not prefix:
        return {}
    return {
        path.stem.removeprefix(prefix): path for path in sorted((ASSETS / "samples").glob(f"{prefix}*.png"))
    }


def image_picker(
    key: str, prefix: str | None, camera: bool = False, drawing: bool = False
) -> tuple[np.ndarray, str] | None:
    """Upload widget (optionally the camera or a drawing canvas) plus sample choice.

    Returns (image, caption) or None; a bad upload shows what is wrong and returns None.
    """
    if drawing and st.toggle("Draw a digit", key=f"{key}.use_canvas", help="White ink on black, like MNIST."):
        from ui.canvas import drawing_canvas

        data = drawing_canvas(f"{key}.canvas")
        if data is None:
            st.info("Draw a digit in the black square; the answer appears when you lift the pen.")
            return None
        return cnnviz.load_image(data), "your drawing"
    upload = st.file_uploader(
        "Upload an image",
        type=["png", "jpg", "jpeg", "webp", "bmp", "gif", "tif", "tiff"],
        key=f"{key}.upload",
    )
    if camera and upload is None and st.toggle("Take a photo with the camera", key=f"{key}.use_camera"):
        upload = st.camera_input("Camera", key=f"{key}.camera", label_visibility="collapsed")
    samples = sample_images(prefix)
    sample = None
    if samples:
        sample = st.radio(
            "...or try a sample",
            list(samples),
            horizontal=True,
            key=f"{key}.sample",
            disabled=upload is not None,
        )
    if upload is not None:
        data, caption = upload.getvalue(), upload.name
    elif sample is not None:
        data, caption = samples[sample].read_bytes(), f"sample: {sample}"
    else:
        st.info("Upload an image to start.")
        return None
    try:
        return cnnviz.load_image(data), caption
    except cnnviz.ImageError as error:
        st.error(f"{error} Try another file.")
        return None
