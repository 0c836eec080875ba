"""Improve: train variants side by side and see which change is worth its time."""

import functools

import pandas as pd
import streamlit as st

import cnnviz
from cnnviz import plotting, runs
from cnnviz.comparison import VARIANTS, check_variants
from cnnviz.models import fit_design
from ui import runtime, settings
from ui.data import current_data_or_stop
from ui.models import chosen_design
from ui.session import studio
from ui.training import ComparisonJob, zip_folder

runtime.enter_page()
st.title("Compare variants")
st.write(
    "Which change makes your network better: more data through augmentation, another optimizer, a deeper or "
    "wider net, batch normalization, or a network pretrained on ImageNet? Each variant trains on the same data "
    "for the same number of seconds, so the chart shows what each idea buys for its cost."
)

source, data = current_data_or_stop()
st.caption(f"Data: **{data.summary()}** (change it on the Data page).")
session = studio()
job = session.comparison_job
running = job is not None and job.running

with st.form("improve.form"):
    left, right = st.columns([2, 1])
    variants = settings.draw(
        "improve.variants",
        left,
        help="\n".join(f"- **{name}**: {variant.description}" for name, variant in VARIANTS.items()),
    )
    design = settings.draw("improve.design", right)
    budget = settings.draw("improve.budget", right)
    submitted = st.form_submit_button("Compare", type="primary", disabled=running)

if submitted and not running:
    if not variants:
        st.error("Choose at least one variant to compare.")
        st.stop()
    try:
        config = fit_design(
            chosen_design(design), data.image_shape, data.num_classes, num_images=runs.training_images(data)
        )
        check_variants(variants, config)
    except cnnviz.CnnvizError as error:
        st.error(f"{error} Change the settings and try again.")
        st.stop()
    if job is not None:
        job.discard_logs()
    job = ComparisonJob(data=data, variants=list(variants), model_config=config, time_budget=float(budget))
    job.start(name="cnnviz-compare")
    session.comparison_job = job
    running = True
    st.caption(f"About {len(variants) * budget} s in all.")


def live_comparison(polling: bool) -> None:
    job = session.comparison_job
    if job is None:
        st.info("Choose the variants and press **Compare**.")
        return
    if polling and not job.running:
        st.rerun()  # the whole page: polling stops
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
    for result in results:
        if result.error:
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


# Polls every second only while a comparison runs.
st.fragment(live_comparison, run_every=1.0 if running else None)(running)
