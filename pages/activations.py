"""Activations: what each layer responds to for one image, and what excites a filter or a class."""

import streamlit as st

from cnnviz import plotting
from ui import compute, runtime
from ui.data import test_patches
from ui.models import require_model
from ui.session import studio
from ui.widgets import image_picker

runtime.enter_page()
st.title("Activations")
st.write(
    "Every convolution layer turns the image into a stack of feature maps, one per filter: bright where the "
    "filter found its pattern. Early layers react to edges and colours, deeper ones to parts of objects."
)
choice = require_model()
map_layers = [info for info in compute.layers(choice.model, choice.key) if info.has_map]
if not map_layers:
    st.warning("This model has no layers with image-like outputs to show.")
    st.stop()

maps_tab, maximize_tab = st.tabs(["Feature maps", "What excites a filter or a class"])
with maps_tab:
    picked = image_picker("activations", choice.sample_prefix)
    if picked is not None:
        image, caption = picked
        names = [info.name for info in map_layers]
        layer = st.select_slider("Layer", names, value=names[min(2, len(names) - 1)], key="activations.layer")
        info = next(item for item in map_layers if item.name == layer)
        left, right = st.columns([1, 4])
        left.image(image, caption=caption, width="stretch")
        left.caption(
            f"{info.class_name}, output {'x'.join(str(side or 'any') for side in info.output_shape)}"
        )
        maps = compute.feature_maps(choice.model, choice.key, image, layer)
        right.plotly_chart(plotting.feature_map_figure(maps, layer), key="activations.maps")

with maximize_tab:
    st.write(
        "Two answers to *what does this filter look for?* On the left, an image **made for it**: start from "
        "faint noise and change it, step by step, to make the filter respond as strongly as possible. The image "
        "is drawn from smooth waves (a Fourier spectrum) and shaken a little at every step, so what comes out is a "
        "pattern, not pixel noise. On the right, the **test images that excite it most**, each cut to the part "
        "of the image the filter can see (its receptive field)."
    )
    conv_like = [info.name for info in map_layers]
    left, right = st.columns(2)
    with left.form("activations.filters_form"):
        layer = st.selectbox("Layer", conv_like, index=len(conv_like) - 1, key="activations.max_layer")
        count = st.slider("Filters", 4, 32, 12, 4, key="activations.max_count")
        run_filters = st.form_submit_button("Show filter patterns", type="primary")
    # Results stay on screen after the click (the cache makes redrawing free).
    session = studio()
    if run_filters:
        info = next(item for item in map_layers if item.name == layer)
        filters = tuple(range(min(count, int(info.output_shape[-1]))))
        session.shown_filters = (choice.key, layer, filters)
    if right.button("Show what each class looks like", key="activations.class_button"):
        session.shown_classes = choice.key
    shown = session.shown_filters
    if shown and shown[0] == choice.key:
        _, layer, filters = shown
        images = compute.filter_images(choice.model, choice.key, layer, filters)
        patches = test_patches(choice, layer, filters)
        if patches is None:
            st.caption(
                "The test images this model was made for are not known here, so only the made patterns show; "
                "train a model on the Train page, or pick a default model, to see its top patches too."
            )
        st.plotly_chart(
            plotting.filter_patterns_figure(images, list(filters), patches, layer),
            key="activations.filter_grid",
        )
    if session.shown_classes == choice.key:
        images = compute.class_images(choice.model, choice.key)
        st.plotly_chart(
            plotting.image_grid_figure(
                images,
                list(choice.class_names),
                columns=min(6, len(images)),
                title="Each class, as the model sees it",
            ),
            key="activations.class_grid",
        )
