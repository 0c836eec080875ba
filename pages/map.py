"""Map: every test image as a dot, placed by what the network makes of it just before it decides."""

import numpy as np
import streamlit as st

from cnnviz import plotting
from ui import compute, maps, runtime
from ui.data import test_data_or_stop
from ui.models import require_model

runtime.enter_page()
st.title("Map of what it learnt")
st.write(
    "Just before it decides, the network turns each image into a list of numbers: its *penultimate features*. "
    "Images it finds alike get alike numbers. Here each image is a dot, placed so that alike images sit close "
    "together: classes the network can tell apart form separate islands, and a dot in another class's island "
    "is an image it confuses. Click a dot to see the image, where the model looked, and its 5 nearest neighbours."
)
choice = require_model()
snapshots = maps.snapshots_with_features(choice.model)
views = ["Test images, the model now"] + (["Training timeline, a map per epoch"] if snapshots else [])
left, middle, right = st.columns(3)
view = left.radio("Images", views, key="map.view")
method = middle.radio("Map", list(maps.METHODS), format_func=maps.METHODS.get, key="map.method")
if not snapshots:
    left.caption("Train a model on the Train page to watch this map form, epoch by epoch.")
bar = st.empty()


def neighbours_row(images, labels, features, index: int, caption: str) -> None:
    nearest = maps.neighbours(features, index)
    st.markdown(f"**Its 5 nearest neighbours** {caption}")
    for column, neighbour in zip(st.columns(8), nearest):
        column.image(images[neighbour], caption=choice.class_names[labels[neighbour]], width="stretch")


if view == views[0]:
    data = test_data_or_stop(choice, "The map needs", "see the map")
    shown = maps.test_map(choice, data)
    color_by = right.radio(
        "Colour by",
        ["class", "correct"],
        format_func={"class": "true class", "correct": "right or wrong"}.get,
        key="map.color",
    )
    points = maps.points((choice.key, "test", len(shown.labels), method), shown.features, method, bar)
    figure = plotting.embedding_figure(
        points,
        shown.labels,
        choice.class_names,
        shown.predictions,
        color_by,
        f"{len(points)} test images, {maps.method_name(method)}",
    )
    index = maps.picked_index(
        st.plotly_chart(figure, on_select="rerun", selection_mode="points", key="map.chart"), len(points)
    )
    if index is not None:
        image, label, called = shown.images[index], shown.labels[index], shown.predictions[index]
        layer = compute.default_cam_layer(choice.model, choice.key)
        heatmap = compute.explain(
            choice.model, choice.key, image, "gradcam" if layer else "saliency", layer, int(called)
        )
        first, second, _ = st.columns([1, 1, 2])
        verdict = "right" if called == label else "wrong"
        first.image(
            image,
            caption=f"Test image {index}: a {choice.class_names[label]}, called "
            f"{choice.class_names[called]} ({verdict})",
            width="stretch",
        )
        second.image(
            compute.overlay(image, heatmap, 0.5),
            caption=f"Where it looked for {choice.class_names[called]} ({'Grad-CAM' if layer else 'saliency'})",
            width="stretch",
        )
        neighbours_row(
            shown.images, shown.labels, shown.features, index, "(in the network's eyes, not pixels)"
        )
    else:
        st.caption("Click a dot to see its image.")
else:
    epochs = [snapshot.epoch for snapshot in snapshots]
    epoch = right.select_slider("Epoch", epochs, value=epochs[-1], key="map.epoch")
    snapshot = snapshots[epochs.index(epoch)]
    last = snapshots[-1]
    reference = maps.points(
        (choice.key, "timeline", last.epoch, method), last.features.astype(np.float32), method, bar
    )
    vectors = snapshot.features.astype(np.float32)
    points = maps.points((choice.key, "timeline", epoch, method), vectors, method, bar, reference)
    figure = plotting.embedding_figure(
        points,
        snapshot.feature_labels,
        choice.class_names,
        title=f"Epoch {epoch}: {len(points)} validation images, {maps.method_name(method)}"
        + ("" if snapshot.val_accuracy is None else f", validation accuracy {snapshot.val_accuracy:.1%}"),
    )
    index = maps.picked_index(
        st.plotly_chart(figure, on_select="rerun", selection_mode="points", key="map.timeline"), len(points)
    )
    st.caption(
        "Each epoch's map is turned to match the last one, so the islands stay put while they form. "
        "Epoch 0 is before training: the classes lie mixed."
    )
    images = maps.timeline_images(choice, snapshot) if index is not None else None
    if index is not None and images is None:
        st.info("The images behind this timeline are not known here (it was recorded on other data).")
    elif index is not None:
        label = snapshot.feature_labels[index]
        st.image(images[index], caption=f"Validation image {index}: a {choice.class_names[label]}", width=200)
        neighbours_row(images, snapshot.feature_labels, vectors, index, f"at epoch {epoch}")
