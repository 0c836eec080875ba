"""Trust the heatmap: which explanation method and layer to believe on this model, measured on its own test images."""

import pandas as pd
import streamlit as st

import cnnviz
from cnnviz import plotting
from cnnviz.scoring import BLUR_SIGMA, SANITY_LIMIT, STEPS
from ui import compute, runtime, trust
from ui.data import test_data_or_stop
from ui.models import require_model

runtime.enter_page()
st.title("Which heatmap can you trust?")
st.write(
    "Every method draws a different heatmap of the same image. This page measures them on the model's own test "
    "images: does the class fade when the pixels a map marks are blurred away (**deletion**, lower is better) "
    "and come back when only those pixels are restored (**insertion**, higher is better)? Does the map point at "
    "the object? And does it still look the same when the network's weights are random (the **sanity check**: "
    "a map that does explains nothing about the training)?"
)
choice = require_model()
data = test_data_or_stop(choice, "Scoring needs", "score the methods")

controls = st.columns([2, 2, 1.2], vertical_alignment="bottom")
if st.session_state.get("trust.images") not in (20, 50, 100, 200):
    st.session_state["trust.images"] = 100
images = controls[0].select_slider(
    "Test images to score",
    [20, 50, 100, 200],
    key="trust.images",
    help="The first ones the model gets right. More images: steadier scores, longer wait.",
)
sweep = controls[1].toggle(
    "Also try the last three layers",
    key="trust.sweep",
    help="Grad-CAM, Grad-CAM++, LayerCAM and Score-CAM read one layer; the default is the last convolution map. "
    "Earlier layers give finer maps; this scores each method at each of the last three (about 2.5x longer).",
)
key = trust.board_key(choice.key, images, sweep)
board = trust.cached_board(key)
job = st.session_state.get("trust.job")


@st.fragment(run_every=1.0)
def progress_panel(job) -> None:
    if not job.running:
        st.rerun()  # the whole page, with the board
    share = job.done / job.total if job.total else 0.0
    doing = f"done: {job.current}" if job.current else "starting"
    st.progress(share, text=f"Scoring {job.done} of {job.total or '...'} methods ({doing})")
    if st.button("Stop", key="trust.stop"):
        job.stop()


if board is None:
    if job is not None and job.key == key and job.running:
        progress_panel(job)
        st.stop()
    if job is not None and job.key == key and job.error:
        st.error(job.error)
    if controls[2].button("Score the methods", type="primary", key="trust.start", width="stretch"):
        if job is not None:  # one board at a time per visitor: the CPU goes to the one asked for last
            job.stop()
        job = trust.ScoringJob(data=data, model=choice.model, key=key, images=images, sweep=sweep)
        st.session_state["trust.job"] = job
        job.start("cnnviz-scoring")
        st.rerun()
    st.info(
        "Press **Score the methods**. On the default model, 100 images and every method at the default layer "
        "take under a minute on two CPU cores; the result is kept for this model."
    )
    st.stop()

controls[2].caption(f"Scored on {board.n} test images the model gets right; kept for this model.")
chosen = board.recommended
if chosen["method"] is None:
    st.warning(chosen["reason"].capitalize() + ".")
else:
    advice, action = st.columns([4, 1.2], vertical_alignment="center")
    why = chosen["reason"].split(": ", 1)[1]
    advice.success(f"**Use {board.row(chosen['method'], chosen['layer']).label}**: {why}.")
    if action.button("Use it on Predict", type="primary", key="trust.use", width="stretch"):
        st.session_state["predict.method"] = chosen["method"]
        if chosen["layer"]:
            st.session_state["predict.layer"] = chosen["layer"]
        st.switch_page("pages/predict.py")

board_tab, curves_tab, how_tab = st.tabs(
    ["Scoreboard", "Deletion and insertion, one image", "How it is measured"]
)
with board_tab:
    table = pd.DataFrame(
        [
            {
                "method": row.label,
                "insertion - deletion": row.faithfulness,
                "deletion": row.deletion_auc,
                "insertion": row.insertion_auc,
                "pointing": None if row.pointing is None else 100 * row.pointing,
                "energy in box": None if row.energy is None else 100 * row.energy,
                "sanity ρ": row.sanity_correlation,
                "passes sanity": row.passes_sanity if row.method != "random" else None,
                "ms per image": row.ms_per_image,
            }
            for row in board.rows
        ]
    ).sort_values("insertion - deletion", ascending=False)
    st.dataframe(
        table,
        hide_index=True,
        key="trust.table",
        column_config={
            "insertion - deletion": st.column_config.NumberColumn(
                format="%.3f", help="Faithfulness: the higher, the more the map's order matters to the model."
            ),
            "deletion": st.column_config.NumberColumn(format="%.3f", help="Lower is better."),
            "insertion": st.column_config.NumberColumn(format="%.3f", help="Higher is better."),
            "pointing": st.column_config.NumberColumn(
                format="%.0f %%", help="Share of maps whose hottest pixel is inside the object's box."
            ),
            "energy in box": st.column_config.NumberColumn(
                format="%.0f %%", help="Mean share of each map's total inside the object's box."
            ),
            "sanity ρ": st.column_config.NumberColumn(
                format="%.2f",
                help=f"Rank correlation with a random-weights model's map; below {SANITY_LIMIT} passes.",
            ),
            "ms per image": st.column_config.NumberColumn(format="%.1f"),
        },
    )
    st.caption("Click a column's name to sort by it. The random row is chance: a method should beat it.")
    st.plotly_chart(plotting.scoreboard_figure(board), key="trust.chart")

with curves_tab:
    rows = [row for row in board.rows if row.method != "random"]
    labels = [row.label for row in rows]
    recommended_label = next(
        (row.label for row in rows if (row.method, row.layer) == (chosen["method"], chosen["layer"])),
        labels[0],
    )
    pick = st.columns([2, 3])
    label = pick[0].selectbox(
        "Method", labels, index=labels.index(recommended_label), key="trust.curve_method"
    )
    number = pick[1].slider("Test image", 1, board.n, 1, key="trust.curve_image") if board.n > 1 else 1
    row = rows[labels.index(label)]
    index, class_index = int(board.indices[number - 1]), int(board.classes[number - 1])
    image, heatmap, deletion, insertion, paths = compute.causal_example(
        choice.model, choice.key, data.test.images[index], row.method, row.layer, class_index
    )
    class_name = data.class_names[class_index]
    left, right = st.columns([1, 2.2])
    left.image(
        compute.overlay(image, heatmap, 0.45), caption=f"{row.label} for {class_name}", width="stretch"
    )
    right.plotly_chart(plotting.causal_curves_figure(deletion, insertion, class_name), key="trust.curves")
    shares = [f"{point / STEPS:.0%}" for point in compute.PATH_POINTS]
    st.markdown("**Deletion**: the most important pixels blurred away first")
    st.image(list(paths["deletion"]), caption=[f"{share} removed" for share in shares], width=110)
    st.markdown("**Insertion**: from a blurred copy, the most important pixels put back first")
    st.image(list(paths["insertion"]), caption=[f"{share} restored" for share in shares], width=110)

with how_tab:
    st.markdown(
        f"""
- **Images**: the first {board.n} test images the model classifies correctly; each map explains the true class.
- **Deletion and insertion** (RISE, Petsiuk et al. 2018): pixels are ranked by the map, most important first, and
  changed {STEPS} steps of 1/{STEPS} of the image at a time. Deletion replaces them by a blurred copy's (a Gaussian
  blur of {BLUR_SIGMA:.0%} of the side; black, as in the paper, draws a new dark shape on these images); insertion
  starts from the blurred copy and puts them back. The score is the area under the class's softmax probability.
- **Pointing and energy**: where the data has object boxes (shapes does), how often the map's hottest pixel lies
  inside the box, and the share of the map's total inside it.
- **Sanity** (Adebayo et al. 2018): the rank correlation between the map and the map of the same design with
  random weights. At {SANITY_LIMIT} or more, the map mostly shows the image, not what the model learnt.
- **Recommended**: the highest insertion minus deletion among the methods that pass the sanity check; a tie to
  three decimals goes to the faster method. The same board, in a terminal:
  `cnnviz score MODEL.keras --data SOURCE --json`.
"""
    )
    st.caption(f"Classes: {', '.join(cnnviz.class_names_of(choice.model))}.")
