"""Widget helpers the pages share: they draw and return values, nothing else."""

from __future__ import annotations

import numpy as np
import streamlit as st

import cnnviz
from ui import compute
from ui.compute import sample_images


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


def method_layer(choice, method: str, place) -> tuple[str, str | None]:
    """The method to run and its layer: a layer select for methods that read one."""
    if not cnnviz.METHODS[method].needs_layer:
        return method, None
    default_layer = compute.default_cam_layer(choice.model, choice.key)
    if default_layer is None:
        st.warning(
            "This model has no convolution layer to put a class activation map on; showing saliency instead."
        )
        return "saliency", None
    map_layers = [info.name for info in compute.layers(choice.model, choice.key) if info.has_map]
    if st.session_state.get("predict.layer") not in map_layers:  # a new model, or nothing chosen yet
        st.session_state["predict.layer"] = default_layer
    layer = place.selectbox(
        "Layer",
        map_layers,
        key="predict.layer",
        help="Deeper layers see larger, more abstract parts; the default is the last convolution map.",
    )
    return method, layer


def selected_cells(points: list[dict], class_names: tuple[str, ...]) -> list[tuple[int, int]]:
    """Confusion-matrix cells `(true, predicted)` from the points of a plotly selection, as
    Streamlit's `on_select` returns them.

    Accepts points carrying `customdata` (the matrix's marker trace, see
    `cnnviz.plotting.confusion_matrix_figure`) or `x` / `y` class names (the heatmap).
    """
    cells = []
    for point in points or []:
        data = point.get("customdata")
        if isinstance(data, dict):  # Streamlit sends arrays as {"0": ..., "1": ...}
            data = [data[key] for key in sorted(data, key=int)]
        if data is not None and len(data) >= 2:
            cell = (int(data[0]), int(data[1]))
        elif point.get("y") in class_names and point.get("x") in class_names:
            cell = (class_names.index(point["y"]), class_names.index(point["x"]))
        else:
            continue
        if cell not in cells:
            cells.append(cell)
    return cells
