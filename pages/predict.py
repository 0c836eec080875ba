"""Home / Predict: upload an image, see the class and where the network looked."""

import plotly.express as px
import streamlit as st

import cnnviz
from cnnviz import explanations
from ui import compute
from ui.models import require_model

METHOD_LABELS = {
    "gradcam": "Grad-CAM",
    "gradcam++": "Grad-CAM++",
    "layercam": "LayerCAM",
    "scorecam": "Score-CAM",
    "saliency": "Saliency",
    "smoothgrad": "SmoothGrad",
    "integrated_gradients": "Integrated gradients",
    "occlusion": "Occlusion",
}

st.title("What does the network see?")
st.write(
    "Upload an image and a small convolutional network classifies it. The bars show how sure it is about each "
    "class; the heatmap shows which pixels drove the decision (red = most important)."
)
choice = require_model()


# A fragment: a new upload, sample or setting reruns only this part, not the
# whole app (sidebar, navigation), which keeps the answer quick.
@st.fragment
def predict_panel(choice) -> None:
    picked = compute.image_picker(
        "predict",
        choice.sample_prefix,
        camera=True,
        drawing=choice.input_shape[-1] == 1 or choice.sample_prefix == "digit_",
    )
    if picked is None:
        return
    image, caption = picked

    prediction = compute.predict(choice.model, choice.key, image, 5)
    method = st.radio(
        "Heatmap method",
        list(METHOD_LABELS),
        format_func=METHOD_LABELS.get,
        horizontal=True,
        key="predict.method",
        help="Grad-CAM and its variants weigh a layer's maps by the class's gradients; saliency, SmoothGrad and "
        "integrated gradients follow the gradient back to each pixel; occlusion covers patches and watches the "
        "probability drop.",
    )
    controls = st.columns([3, 1])
    layer = None
    if method in explanations.CAM_METHODS:
        map_layers = [info.name for info in compute.layers(choice.model, choice.key) if info.has_map]
        default_layer = compute.default_cam_layer(choice.model, choice.key)
        if default_layer is None:
            st.warning(
                "This model has no convolution layer to put a class activation map on; showing saliency instead."
            )
            method = "saliency"
        else:
            layer = controls[0].selectbox(
                "Layer",
                map_layers,
                index=map_layers.index(default_layer),
                key="predict.layer",
                help="Deeper layers see larger, more abstract parts; the default is the last convolution map.",
            )
    opacity = controls[1].slider("Opacity", 0.0, 1.0, 0.45, 0.05, key="predict.opacity")

    try:
        with st.spinner(f"Computing {METHOD_LABELS[method]}..."):
            heatmap = compute.explain(choice.model, choice.key, image, method, layer, None)
    except cnnviz.CnnvizError as error:
        st.error(f"{error} Try another method or layer.")
        return

    left, middle, right = st.columns([1, 1, 1.3])
    left.image(image, caption=caption, width="stretch")
    middle.image(
        cnnviz.overlay(image, heatmap, opacity=opacity),
        caption=f"{METHOD_LABELS[method]}" + (f" on {layer}" if layer else ""),
        width="stretch",
    )
    right.metric("Prediction", prediction["class"], f"{prediction['probability']:.1%} sure")
    chart = px.bar(
        x=[entry["probability"] for entry in prediction["top_k"]],
        y=[entry["class"] for entry in prediction["top_k"]],
        orientation="h",
        labels={"x": "probability", "y": ""},
        range_x=[0, 1],
    )
    chart.update_layout(
        yaxis={"autorange": "reversed", "type": "category"},
        height=230,
        margin={"l": 0, "r": 0, "t": 10, "b": 0},
    )
    right.plotly_chart(chart, key="predict.chart")


predict_panel(choice)
