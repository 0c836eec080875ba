"""Results: how well the model does on test images it never saw, and where it goes wrong."""

import functools

import pandas as pd
import streamlit as st

import cnnviz
from cnnviz import plotting
from ui import compute, runtime
from ui.data import test_data_or_stop, training_examples
from ui.models import require_model
from ui.settings import settings_link
from ui.widgets import selected_cells

runtime.enter_page()
st.title("Results")
st.write(
    "The model is scored on test images it never saw while training. The confusion matrix counts, for each "
    "true class (rows), what the model predicted (columns): the diagonal is right, everything else is a "
    "mistake. Click a cell to see its images and where the model looked."
)
choice = require_model()
data = test_data_or_stop(choice, "Results need", "see results")

evaluation = compute.evaluation(choice.model, choice.key, data)
test = data.test
names = evaluation.class_names


def heatmap_pairs(indices, titles, key: str) -> None:
    """The images at `indices` of the test split beside their Grad-CAM heatmaps."""
    images = test.images[indices]
    heatmaps = compute.explain_batch(choice.model, choice.key, images, "gradcam")
    st.plotly_chart(plotting.heatmap_pairs_figure(images, heatmaps, titles), key=key)


def why_not_panel(in_cell, true_class: int, predicted_class: int) -> None:
    """For one image of a mistake cell: the maps for the true and the predicted class, the contrast, and
    the training images of each that the model finds nearest."""
    true_name, predicted_name = names[true_class], names[predicted_class]
    st.markdown(f"#### Why {predicted_name} and not {true_name}?")
    number = st.selectbox(
        "Image",
        [int(i) for i in in_cell[:12]],
        format_func=lambda i: f"#{i}",
        key="results.why_image",
        help="One of the images above.",
    )
    examples = training_examples(choice)
    try:
        why = compute.why_not(
            choice.model,
            choice.key,
            test.images[number],
            true_class,
            predicted_class,
            examples,
            0 if examples is None else len(examples),
        )
    except cnnviz.CnnvizError as error:
        st.error(f"{error} Try another image.")
        return
    st.plotly_chart(plotting.contrast_figure(test.images[number], why), key="results.why")
    st.caption(
        f"The last map is the gradient of the {true_name} score minus the {predicted_name} score: what would have "
        f"to change for {true_name} to win. "
        + (
            "Below: the training images the model finds most alike, in its last layer before the decision."
            if examples is not None
            else "The training images are not known for this model, so no look-alikes are shown."
        )
    )


top = st.columns([1, 1, 1, 1.3])
top[0].metric("Test accuracy", f"{evaluation.accuracy:.1%}")
top[1].metric("Test images", f"{evaluation.n:,}")
top[2].metric("Mistakes", f"{len(evaluation.misclassified):,}")
top[3].download_button(
    "Download the model card (.html)",
    functools.partial(compute.model_card, choice.model, choice.key, data, settings_link()),  # made on click
    file_name=f"{choice.model.name}-model-card.html",
    mime="text/html",
    key="results.card",
    help="One HTML file that opens offline: the data, the design, the training, these metrics, the confusion "
    "matrix, the most confident mistakes and sample heatmaps, and a link to these settings.",
)

left, right = st.columns([3, 2])
with left:
    normalize = st.toggle("Show shares of each true class", key="results.normalize")
    event = st.plotly_chart(
        plotting.confusion_matrix_figure(evaluation, normalize=normalize),
        key="results.matrix",
        on_select="rerun",
        selection_mode=("points", "box"),
    )
with right:
    table = pd.DataFrame(evaluation.per_class).set_index("class")
    st.dataframe(
        table.style.format({"precision": "{:.3f}", "recall": "{:.3f}", "f1": "{:.3f}"}), key="results.table"
    )
    st.plotly_chart(plotting.per_class_figure(evaluation.per_class), key="results.per_class")

cells = selected_cells(event.selection.points if event else [], names)
if cells:
    true_class, predicted_class = cells[0]
    in_cell = evaluation.cell_indices(true_class, predicted_class)
    st.subheader(
        f"True {names[true_class]}, predicted {names[predicted_class]}: "
        f"{len(in_cell)} image{'' if len(in_cell) == 1 else 's'}"
    )
    if len(in_cell) == 0:
        st.info("No images in this cell.")
    else:
        shown = in_cell[:12]
        titles = [
            f"#{i} {evaluation.probabilities[i, predicted_class]:.0%} {names[predicted_class]}" for i in shown
        ]
        heatmap_pairs(shown, titles, "results.cell_images")
        if true_class != predicted_class:
            why_not_panel(in_cell, true_class, predicted_class)
else:
    st.caption("Tip: click a cell of the matrix (or drag a box over cells) to see those images here.")

mistakes_tab, grid_tab = st.tabs(["Most confident mistakes", "Test images with their top-3"])
with mistakes_tab:
    wrong = evaluation.misclassified[:12]
    if len(wrong) == 0:
        st.success("No mistakes on the test images.")
    else:
        titles = [
            f"{names[int(evaluation.labels[i])]} taken for {names[int(evaluation.predictions[i])]} "
            f"({evaluation.probabilities[i, int(evaluation.predictions[i])]:.0%})"
            for i in wrong
        ]
        heatmap_pairs(wrong, titles, "results.mistakes")
with grid_tab:
    count = 18
    st.plotly_chart(
        plotting.prediction_grid_figure(
            test.images[:count], evaluation.probabilities[:count], names, evaluation.labels[:count], top_k=3
        ),
        key="results.grid",
    )
    st.caption("Green title: right; red: wrong.")
