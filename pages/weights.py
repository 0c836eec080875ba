"""Weights: the filters a network learnt, and how training moved its weights."""

import streamlit as st

from cnnviz import plotting
from ui import compute, runtime
from ui.models import require_model
from ui.session import studio

runtime.enter_page()
st.title("Weights")
st.write(
    "A convolution filter is a small grid of weights slid over the image. The first layer's filters can be "
    "shown as tiny colour images: they learn edge and colour detectors. Histograms show how the weights of "
    "each layer are spread, and how far training moved them from where they started."
)
choice = require_model()
conv_layers = [info.name for info in compute.layers(choice.model, choice.key) if info.is_conv]
if not conv_layers:
    st.warning("This model has no convolution layers.")
    st.stop()

kernels_tab, histograms_tab, change_tab = st.tabs(
    ["Filters", "Weight histograms", "Before vs after training"]
)
with kernels_tab:
    left, right = st.columns(2)
    layer = left.selectbox("Convolution layer", conv_layers, key="weights.layer")
    modes = {
        "auto": "colour (first layer) or averaged",
        "mean": "averaged over input channels",
        "channels": "one per input channel",
    }
    mode = right.radio("Show", list(modes), format_func=modes.get, horizontal=True, key="weights.mode")
    kernels = compute.kernel_images(choice.model, choice.key, layer, mode)
    per_channel = mode == "channels"
    if kernels.ndim == 4 and not per_channel:
        description = "colour images"
    else:
        description = "red = positive, blue = negative, white = zero"
    if per_channel:
        description = f"a row per filter, a column per input channel; {description}"
    st.plotly_chart(
        plotting.kernel_figure(
            kernels, f"{layer}: {len(kernels)} filters ({description})", per_channel=per_channel
        ),
        key="weights.kernels",
    )

with histograms_tab:
    histograms = compute.weight_histograms(choice.model, choice.key)
    kinds = sorted({entry["kind"] for entry in histograms})
    chosen = st.multiselect(
        "Weights",
        kinds,
        default=[kind for kind in ("kernel",) if kind in kinds] or kinds[:1],
        key="weights.kinds",
    )
    if chosen:
        st.plotly_chart(plotting.weight_histogram_figure(histograms, tuple(chosen)), key="weights.histograms")
    else:
        st.info("Pick at least one kind of weight.")

with change_tab:
    trained = studio().trained
    initial = trained.initial_weights if choice.kind == "session" and trained is not None else None
    if initial is not None:
        st.write(
            "Compared with the weights this model started from when you trained it: the bars say how far each "
            "weight tensor moved, relative to its starting size."
        )
    else:
        st.write(
            "Compared with the same design freshly initialized (seed 0; this model's own starting weights were "
            "not recorded): the bars say how far each weight tensor moved, relative to its starting size."
        )
    changes = compute.weight_changes(choice.model, choice.key, initial)
    st.plotly_chart(plotting.weight_change_figure(changes), key="weights.changes")
    names = [entry["name"] for entry in changes if entry["name"].endswith("kernel")]
    name = st.selectbox("Compare one tensor", names, key="weights.change_name")
    st.plotly_chart(plotting.weight_change_figure(changes, name), key="weights.change_one")
