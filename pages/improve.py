"""Improve: train variants side by side and see which change is worth its time."""

import functools

import pandas as pd
import streamlit as st

import cnnviz
from cnnviz import plotting
from cnnviz.comparison import DEFAULT_VARIANTS, VARIANTS
from ui.data import current_data_or_stop
from ui.models import BUILD_CONFIG_KEY, DESIGN_LABELS, design_choices, ensure_shell
from ui.state import valid_choice
from ui.training import COMPARISON_KEY, ComparisonJob, discard, zip_folder

ensure_shell()
st.title("Improve")
st.write(
    "Which change makes your network better: more data through augmentation, another optimizer, a deeper or "
    "wider net, batch normalization, or a network pretrained on ImageNet? Each variant trains on the same data "
    "for the same number of seconds, so the chart shows what each idea buys for its cost."
)

source, data = current_data_or_stop()
st.caption(f"Data: **{data.summary()}** (change it on the Data page).")

job = st.session_state.get(COMPARISON_KEY)
running = job is not None and job.running
designs = design_choices(transfer=False)  # the transfer variant is one of the variants
valid_choice("improve.design", designs)
st.session_state.setdefault("improve.variants", list(DEFAULT_VARIANTS))
st.session_state["improve.variants"] = [
    name for name in st.session_state["improve.variants"] if name in VARIANTS
] or list(DEFAULT_VARIANTS)
st.session_state.setdefault("improve.budget", 20)

with st.form("improve.form"):
    left, right = st.columns([2, 1])
    variants = left.multiselect(
        "Variants to compare",
        list(VARIANTS),
        key="improve.variants",
        help="\n".join(f"- **{name}**: {variant.description}" for name, variant in VARIANTS.items()),
    )
    design = right.selectbox("Baseline design", designs, format_func=DESIGN_LABELS.get, key="improve.design")
    budget = right.slider("Seconds per variant", 5, 120, step=5, key="improve.budget")
    submitted = st.form_submit_button("Compare", type="primary", disabled=running)

if submitted and not running:
    if not variants:
        st.error("Choose at least one variant to compare.")
        st.stop()
    if design == "custom":
        config = st.session_state[BUILD_CONFIG_KEY].replace(
            input_shape=data.image_shape, num_classes=data.num_classes
        )
    else:
        config = cnnviz.preset_config(design, data.image_shape, data.num_classes)
    discard(job)
    job = ComparisonJob(source, list(variants), config, float(budget))
    job.start(data)
    st.session_state[COMPARISON_KEY] = job
    st.caption(f"About {len(variants) * budget} s in all.")


@st.fragment(run_every=1.0)
def live_comparison() -> None:
    job = st.session_state.get(COMPARISON_KEY)
    if job is None:
        st.info("Choose the variants and press **Compare**.")
        return
    if job.running:
        fraction, text = job.progress()
        st.progress(fraction, text=text)
        if st.button("Stop", key="improve.stop", help="Stops the running variant and skips the rest."):
            job.stop()
            st.toast("Stopping after this batch...")
    elif job.error:
        st.error(f"{job.error} Change the settings and compare again.")
    results = list(job.results)
    if not results:
        return
    scored = [result for result in results if result.accuracy is not None]
    if scored and not job.running:
        best = max(scored, key=lambda result: result.accuracy)
        st.success(
            f"Best: **{best.name}** ({best.description}) with {best.accuracy:.1%} {best.measured_on} accuracy "
            f"in {best.train_seconds:.0f} s."
        )
    st.plotly_chart(plotting.comparison_figure(results), key=f"improve.figure.{len(results)}")
    table = pd.DataFrame(
        [
            {
                "variant": result.name,
                "what changed": result.description,
                f"{result.measured_on} accuracy": result.accuracy,
                "seconds": round(result.train_seconds, 1),
                "epochs": result.epochs,
                "parameters": result.parameters,
                "problem": result.error or "",
            }
            for result in results
        ]
    )
    st.dataframe(table, hide_index=True, key=f"improve.table.{len(results)}")
    failed = [result for result in results if result.error]
    for result in failed:
        st.warning(f"**{result.name}** did not run: {result.error}")
    if not job.running:
        st.download_button(
            "Download the TensorBoard logs (.zip)",
            functools.partial(zip_folder, job.log_dir),  # zipped on click, not on every rerun
            file_name="cnnviz-compare-logs.zip",
            mime="application/zip",
            key="improve.logs",
            help="Unzip, then run `tensorboard --logdir <folder>`: one run per variant.",
        )


live_comparison()
