"""Home / Predict: upload an image, see the class and where the network looked."""

import streamlit as st

import cnnviz
from cnnviz import plotting
from ui import compute, runtime, warmup
from ui.data import training_examples
from ui.models import require_model
from ui.quick import answer, quick_choice
from ui.widgets import image_picker, method_layer

runtime.enter_page()
st.title("What does the network see?")
st.write(
    "Upload an image and a small convolutional network classifies it. The bars show how sure it is about each "
    "class; the heatmap shows which pixels drove the decision (red = most important)."
)


@st.fragment(run_every=1.0)
def quick_panel(quick) -> None:
    """Until TensorFlow is loaded: the answer from the model's ONNX export, then the full page."""
    if warmup.ready():
        st.rerun()  # the full page, with the same upload
    picked = image_picker("predict", quick.sample_prefix, camera=True, drawing=quick.drawing)
    if picked is None:
        return
    image, caption = picked
    prediction = answer(quick, image)
    st.radio("Heatmap method", ["Grad-CAM"], disabled=True, horizontal=True, key="predict.quick_method")
    controls = st.columns([3, 1])
    controls[0].caption("The other heatmap methods and the layer choice: loading TensorFlow...")
    opacity = controls[1].slider("Opacity", 0.0, 1.0, 0.45, 0.05, key="predict.opacity")
    left, middle, right = st.columns([1, 1, 1.3])
    left.image(image, caption=caption, width="stretch")
    middle.image(compute.overlay(image, prediction["heatmap"], opacity), caption="Grad-CAM", width="stretch")
    right.metric("Prediction", prediction["class"], f"{prediction['probability']:.1%} sure")
    right.plotly_chart(plotting.probability_figure(prediction["top_k"]), key="predict.quick_chart")


# A fragment: a new upload, sample or setting reruns only this part, not the
# whole app (sidebar, navigation), which keeps the answer quick.
@st.fragment
def predict_panel(choice) -> None:
    drawing = choice.input_shape[-1] == 1 or choice.sample_prefix == "digit_"
    picked = image_picker("predict", choice.sample_prefix, camera=True, drawing=drawing)
    if picked is None:
        return
    image, caption = picked
    prediction = compute.predict(choice.model, choice.key, image, 5)
    method = st.radio(
        "Heatmap method",
        list(cnnviz.METHODS),
        format_func=lambda name: cnnviz.METHODS[name].label,
        horizontal=True,
        key="predict.method",
        help="Grad-CAM and its variants weigh a layer's maps by the class's gradients; saliency, SmoothGrad and "
        "integrated gradients follow the gradient back to each pixel; occlusion covers patches and watches the "
        "probability drop.",
    )
    controls = st.columns([3, 1])
    method, layer = method_layer(choice, method, controls[0])
    opacity = controls[1].slider("Opacity", 0.0, 1.0, 0.45, 0.05, key="predict.opacity")
    label = cnnviz.METHODS[method].label
    try:
        with st.spinner(f"Computing {label}..."):
            heatmap = compute.explain(choice.model, choice.key, image, method, layer, None)
    except cnnviz.CnnvizError as error:
        st.error(f"{error} Try another method or layer.")
        return
    left, middle, right = st.columns([1, 1, 1.3])
    left.image(image, caption=caption, width="stretch")
    middle.image(
        compute.overlay(image, heatmap, opacity),
        caption=label + (f" on {layer}" if layer else ""),
        width="stretch",
    )
    right.metric("Prediction", prediction["class"], f"{prediction['probability']:.1%} sure")
    right.plotly_chart(plotting.probability_figure(prediction["top_k"]), key="predict.chart")
    if note := choice.size_note(prediction["input_size"]):
        st.caption(note)
    why_not_panel(choice, image, caption, prediction)


def why_not_panel(choice, image, caption: str, prediction) -> None:
    """Why the predicted class and not another: three maps and the training look-alikes of each."""
    names = list(choice.class_names)
    predicted = names.index(prediction["class"])
    others = [name for name in names if name != prediction["class"]]
    if not others:
        return
    runner_up = next(
        (entry["class"] for entry in prediction["top_k"] if entry["class"] != prediction["class"]), others[0]
    )
    # A toggle, not an expander: an expander's content runs even while closed, and the first contrast
    # reads the features of the training images (about a second), which the answer must not wait for.
    if not st.toggle(f"Why {prediction['class']} and not another class?", key="predict.why_on"):
        return
    with st.container(border=True):
        answered = (choice.key, caption, prediction["class"])
        if (
            st.session_state.get("predict.rival_for") != answered
            or st.session_state.get("predict.rival") not in others
        ):
            st.session_state["predict.rival_for"] = (
                answered  # a new image, model or answer: the runner-up first
            )
            st.session_state["predict.rival"] = runner_up
        rival = st.selectbox(
            "The class to set it against", others, key="predict.rival", help="The runner-up by default."
        )
        examples = training_examples(choice)
        try:
            why = compute.why_not(
                choice.model,
                choice.key,
                image,
                predicted,
                names.index(rival),
                examples,
                0 if examples is None else len(examples),
            )
        except cnnviz.CnnvizError as error:
            st.error(f"{error} Try another class.")
            return
        st.plotly_chart(plotting.contrast_figure(image, why), key="predict.why")
        st.caption(
            f"The last map is the gradient of the {prediction['class']} score minus the {rival} score: brighter "
            f"pixels there would push the answer further towards {prediction['class']}."
            + (
                " Below: the training images the model finds most alike, in its last layer before the decision."
                if examples is not None
                else " The training images are not known for this model, so no look-alikes are shown."
            )
        )


quick = quick_choice()
if quick is not None:
    quick_panel(quick)
else:
    predict_panel(require_model())
