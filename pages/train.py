"""Train: pick data and settings, train a model here and watch it learn."""

import functools

import pandas as pd
import streamlit as st

import cnnviz
from cnnviz import plotting, runs
from ui import runtime, settings
from ui.data import current_data_or_stop
from ui.models import chosen_design
from ui.session import TrainedModel, studio
from ui.training import TrainingJob, zip_folder

LONG_EPOCH_SECONDS = 3.0  # an epoch running longer than this gets a batch-by-batch loss chart
# The live view's refresh while a run goes on. Every refresh costs the browser on the same machine about
# 0.1-0.4 s of CPU (the page, its charts) that training cannot use: at 1 s the studio trained at 0.73x the
# CLI's pace on 2 cores (0.84x without the timeline), at 2 s at about the CLI's (docs/BENCHMARKS.md).
LIVE_REFRESH_SECONDS = 2.0
PLAY_SECONDS = 1.0  # the timeline plays one epoch a second once the run is over

runtime.enter_page()
st.title("Train")
st.write(
    "Training shows the network thousands of labelled images; after each batch it nudges every weight to make "
    "fewer mistakes. Watch the loss fall and the accuracy rise; the validation curve is measured on images it "
    "does not learn from, so a gap between the two means it is memorizing."
)
session = studio()


def publish(job: TrainingJob) -> None:
    """Publishes a finished run once: the session's model, and a row of the run history."""
    if job.result is None or job.published:
        return
    job.published = True
    run = f"{job.run_id}-{job.uid}"
    session.trained = TrainedModel(
        job.result.model, job.request.source, job.data, job.initial_weights, run, job.request.config
    )
    session.history.append(job.history_row())


job = session.training_job
if job is not None:
    publish(job)
running = job is not None and job.running

source, data = current_data_or_stop()
st.caption(f"Data: **{data.summary()}** (change it on the Data page).")
if (note := runs.defaults_note(data)) is not None:
    st.caption(note)
with st.form("train.form"):
    chosen = settings.draw_in_columns(settings.group("train"), st.columns(3))
    submitted = st.form_submit_button("Train", type="primary", disabled=running)
    st.caption("The settings take effect, and go into the page's link, when you press Train.")

if submitted and not running:
    try:
        request = runs.TrainRequest(
            data,
            source,
            chosen_design(chosen["train.design"]),
            config=cnnviz.TrainConfig(**settings.train_settings(runs.augments_by_default(data))),
        )
        request.model_config()  # a design that does not fit the data says so now, not in the background
    except cnnviz.CnnvizError as error:
        st.error(f"{error} Change the settings and try again.")
        st.stop()
    if job is not None:
        job.discard_logs()  # the previous run's logs; its model stays in the history
    job = TrainingJob(data=data, request=request, run_id=len(session.history) + 1)
    job.start(name=f"cnnviz-train-{job.run_id}")
    session.training_job = job
    running = True


def live_progress(polling: bool) -> None:
    job = session.training_job
    if job is None:
        st.info("Choose the data and settings, then press **Train**.")
        return
    if polling and not job.running:
        publish(job)
        st.rerun()  # the whole page: polling stops, and the sidebar offers the new model
    fraction, text = job.progress()
    if job.running:
        st.progress(fraction, text=text)
        if st.button(
            "Stop", key="train.stop", help="Stops after the current batch and keeps what was learnt."
        ):
            job.stop()
            st.toast("Stopping after this batch...")
    elif job.error:
        st.error(f"{job.error} Change the settings and train again.")
    elif job.result is not None:
        accuracy = job.result.val_accuracy
        st.success(
            f"Run {job.run_id}: {job.result.message} "
            + (f"Validation accuracy {accuracy:.1%}. " if accuracy is not None else "")
            + f"{job.result.samples_per_second:,.0f} images a second. "
            + "Choose **Trained in this session** in the sidebar to look inside it."
        )
    rows = job.epochs()
    batches = job.batches(after_seconds=LONG_EPOCH_SECONDS)
    if job.running and len(batches) >= 3:
        # Long epochs: the loss batch by batch within the current one, so progress shows at once.
        # One chart per epoch, updated in place: a new key each second would draw a new chart each second.
        st.plotly_chart(
            plotting.batch_loss_figure(batches, len(rows) + 1), key=f"train.batches.{len(rows) + 1}"
        )
    if rows:
        st.plotly_chart(
            plotting.training_curves_figure(rows, job.kept_epoch),
            key=f"train.curves.{len(rows)}.{job.running}",
        )
    snapshots = job.snapshots()
    if snapshots:
        timeline_panel(job, snapshots)


def timeline_panel(job: TrainingJob, snapshots: list) -> None:
    """Scrub (or play) the epochs: the followed images with their heatmaps and answers, and the first filters."""
    st.markdown("**Watch it learn**: the same images, before training (epoch 0) and after every epoch.")
    epochs = [snapshot.epoch for snapshot in snapshots]
    current = st.session_state.get("train.timeline_epoch")
    grew = st.session_state.get("train.timeline_seen") != (id(snapshots[0]), len(epochs))
    st.session_state["train.timeline_seen"] = (id(snapshots[0]), len(epochs))
    if current not in epochs or (grew and not playing):
        current = epochs[-1]  # a new epoch (or a new run) shows its latest snapshot
    elif playing:
        current = epochs[(epochs.index(current) + 1) % len(epochs)]  # one epoch a refresh, round and round
    st.session_state["train.timeline_epoch"] = current
    controls = st.columns([5, 1], vertical_alignment="bottom")
    if len(epochs) > 1:
        controls[0].select_slider("Epoch", epochs, key="train.timeline_epoch")
    if controls[1].toggle("Play", key="train.timeline_play") != playing:
        st.rerun()  # the whole page: the polling that plays it starts or stops
    snapshot = snapshots[epochs.index(st.session_state["train.timeline_epoch"])]
    if job.kept_best:
        st.caption(
            f"The model you keep holds epoch {job.kept_epoch}'s weights, the best on validation: the epochs "
            "after it did not do better."
        )
    left, right = st.columns([3, 1.4])
    left.image(
        job.frame(snapshot),
        caption="Where the network looks for each image's true class (Grad-CAM); under it the top answer "
        "(green: right, red: wrong).",
        width="stretch",
    )
    if len(snapshot.kernels):
        right.plotly_chart(
            plotting.kernel_figure(snapshot.kernels.astype("float32") / 255, title="First-layer filters"),
            key="train.timeline_kernels",
        )


@st.fragment
def take_it_with_you(job, stem: str) -> None:
    """The trained model for onnxruntime, LiteRT or TensorFlow, with its heatmap where the format allows."""
    st.markdown("**Take it with you**: the model with its Grad-CAM heatmap built in, checked against Keras.")
    left, right = st.columns([2, 3])
    labels = {
        "onnx": "ONNX (onnxruntime)",
        "tflite": "TFLite (LiteRT, class only)",
        "savedmodel": "SavedModel (.zip)",
    }
    format = left.selectbox("Format", list(labels), format_func=labels.get, key="train.export_format")
    if left.button("Export", key="train.export"):
        try:
            with st.spinner("Exporting and checking it against the Keras model..."):
                job.export_download(format)
        except cnnviz.CnnvizError as error:
            right.error(str(error))
    if format in job.exports:
        data, report = job.exports[format]
        suffix = {"onnx": ".onnx", "tflite": ".tflite", "savedmodel": "-savedmodel.zip"}[format]
        right.download_button(
            f"Download run {job.run_id}'s model ({format})",
            data,
            file_name=f"{stem}{suffix}",
            mime="application/octet-stream",
            key=f"train.export_download.{format}",
        )
        summary = report.summary().split(": ", 1)[1]
        right.caption(summary[:1].upper() + summary[1:] + ".")


# Polls only while a run goes on, or while the timeline plays.
playing = st.session_state.get("train.timeline_play", False)
refresh = LIVE_REFRESH_SECONDS if running else PLAY_SECONDS if playing else None
st.fragment(live_progress, run_every=refresh)(running)

if session.history:
    st.subheader("Runs in this session")
    st.dataframe(pd.DataFrame(session.history).set_index("run"), key="train.history_table")
    job = session.training_job
    if job is not None and job.result is not None:
        stem = f"cnnviz-{job.request.source.split(':')[-1].rsplit('.', 1)[0]}-run{job.run_id}"
        left, right = st.columns(2)
        left.download_button(
            f"Download run {job.run_id}'s model (.keras)",
            job.model_download(),
            file_name=f"{stem}.keras",
            mime="application/octet-stream",
            key="train.download",
        )
        right.download_button(
            f"Download run {job.run_id}'s TensorBoard logs (.zip)",
            functools.partial(zip_folder, job.log_dir),  # zipped on click, not on every rerun
            file_name=f"{stem}-logs.zip",
            mime="application/zip",
            key="train.logs",
            help="Unzip, then run `tensorboard --logdir <folder>`.",
        )
        take_it_with_you(job, stem)
