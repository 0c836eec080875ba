"""Data: choose what to learn from, look at it, and preview augmentation."""

import numpy as np
import streamlit as st

import cnnviz
from cnnviz import plotting
from cnnviz.training.config import TrainConfig
from ui import compute, runtime, settings
from ui.data import (
    FOLDER_KEY,
    SAMPLE_LIMIT,
    current_data,
    in_memory,
    load_uploaded_zip,
    open_folder,
    size_note,
)

runtime.enter_page()
st.title("Data")
st.write(
    "A classifier learns from labelled examples: many images per class. Look at them first: are the classes "
    "balanced, are the images what you expect? Augmentation shows the network slightly changed copies of each "
    "image (shifted, flipped, zoomed) so it learns what matters rather than where it sits."
)
source = settings.draw("data.source")
if source == "folder":
    path = st.text_input(
        "Folder with one subfolder of images per class",
        key=FOLDER_KEY,
        placeholder="/home/me/photos",
        help="Only the file names are read now; training reads the images batch by batch from disk.",
    )
    if not path:
        st.info("Type the path of a folder on this computer; until then the studio uses the shapes.")
        st.stop()
    try:
        open_folder(path)
    except cnnviz.CnnvizError as error:
        st.error(f"{error} Check the path and try again.")
        st.stop()
if source == "upload":
    upload = st.file_uploader(
        "A .zip with one folder per class (e.g. cats/1.jpg, dogs/2.png)", type=["zip"], key="data.zip"
    )
    if upload is None:
        st.info("Upload a zip to use your own images; until then the studio uses the shapes.")
        st.stop()
    try:
        with st.spinner("Reading the images..."):
            load_uploaded_zip(upload.getvalue(), upload.name)
    except cnnviz.CnnvizError as error:
        st.error(f"{error} Fix the zip and upload it again.")
        st.stop()
try:
    name, data = current_data()
except cnnviz.CnnvizError as error:
    st.error(f"{error} Choose a bundled source (shapes or digits) to go on offline.")
    st.stop()

height, width, channels = data.image_shape
top = st.columns(4)
top[0].metric("Classes", data.num_classes)
top[1].metric("Image size", f"{height}x{width}x{channels}")
top[2].metric("Training images", f"{len(data.train):,}")
top[3].metric("Validation / test", f"{len(data.validation):,} / {len(data.test):,}")
st.caption(size_note(data))
if data.report is not None and (data.report.skipped or data.report.ignored):
    st.warning(data.report.summary() + ".")
if isinstance(data, cnnviz.ImageStream):
    st.caption(
        f"Streamed from disk: training reads the images batch by batch and never holds them all in memory. "
        f"The gallery and the balance below show the first {SAMPLE_LIMIT} training images."
    )
data = in_memory(data)

gallery_tab, balance_tab, augment_tab = st.tabs(
    ["Samples per class", "Class balance", "Augmentation preview"]
)
with gallery_tab:
    per_class = 6
    picks, titles = [], []
    for index, class_name in enumerate(data.class_names[:10]):
        chosen = np.flatnonzero(data.train.labels == index)[:per_class]
        picks += list(data.train.images[chosen])
        titles += [class_name] * len(chosen)
    st.plotly_chart(plotting.image_grid_figure(picks, titles, columns=per_class), key="data.gallery")
    if data.num_classes > 10:
        st.caption(f"Showing 10 of {data.num_classes} classes.")
with balance_tab:
    counts = np.bincount(data.train.labels, minlength=data.num_classes)
    st.plotly_chart(plotting.class_balance_figure(data.class_names, counts), key="data.balance")
    if counts.min() < 0.5 * counts.max():
        st.warning("Some classes have less than half the images of others: expect more mistakes on those.")
with augment_tab:
    left, right = st.columns([1, 2])
    auto = "turns it on" if cnnviz.runs.augments_by_default(data) else "leaves it off"
    left.caption(
        f"These settings are used when **Augment** is on in the Train page (auto {auto} for these images)."
    )
    augmentation = {
        settings.SETTINGS[key].field: settings.draw(key, left) for key in settings.field_keys("data")
    }
    config = TrainConfig(**augmentation)
    originals = data.train.images[:6]
    copies = [compute.augment_preview(originals, config, seed) for seed in range(2)]
    grid = [image for row in zip(originals, *copies) for image in row]
    titles = ["original", "augmented", "augmented again"] * len(originals)
    right.plotly_chart(plotting.image_grid_figure(grid, titles, columns=6), key="data.augment")
st.caption(f"Training on the Train page uses: **{name}**.")
