"""Train: pick data and settings, train a model here and watch it learn."""

import functools

import pandas as pd
import streamlit as st

import cnnviz
from cnnviz import limits, plotting
from cnnviz.training import OPTIMIZERS
from ui.data import current_data_or_stop
from ui.models import (
    BUILD_CONFIG_KEY,
    DESIGN_LABELS,
    TRAINED_DATA_KEY,
    TRAINED_INITIAL_KEY,
    TRAINED_MODEL_KEY,
    TRAINED_RUN_KEY,
    TRAINED_SOURCE_KEY,
    design_choices,
    ensure_shell,
)
from ui.state import valid_choice
from ui.training import HISTORY_KEY, JOB_KEY, TrainingJob, discard, model_bytes, zip_folder

LONG_EPOCH_SECONDS = 3.0  # an epoch running longer than this gets a batch-by-batch loss chart

ensure_shell()
st.title("Train")
st.write(
    "Training shows the network thousands of labelled images; after each batch it nudges every weight to make "
    "fewer mistakes. Watch the loss fall and the accuracy rise; the validation curve is measured on images it "
    "does not learn from, so a gap between the two means it is memorizing."
)


def finish(job: TrainingJob) -> None:
    """Publishes a finished run once: the session's model, and a row of the run history."""
    if job.result is None or getattr(job, "published", False):
        return
    job.published = True
    st.session_state[TRAINED_MODEL_KEY] = job.result.model
    st.session_state[TRAINED_SOURCE_KEY] = job.data_source
    st.session_state[TRAINED_DATA_KEY] = job.data
    st.session_state[TRAINED_INITIAL_KEY] = job.initial_weights
    st.session_state[TRAINED_RUN_KEY] = f"{job.run_id}-{job.uid}"
    st.session_state.setdefault(HISTORY_KEY, []).append(
        {
            "run": job.run_id,
            "data": job.data_source,
            "preset": job.model_config.name,
            "epochs": job.result.epochs,
            "learning rate": job.train_config.learning_rate,
            "batch": job.train_config.batch_size,
            "augmented": any(
                getattr(job.train_config, field) not in (0, 0.0, "none")
                for field in ("flip", "rotate", "zoom", "translate", "contrast")
            ),
            "validation accuracy": job.result.val_accuracy,
            "seconds": round(job.result.train_seconds, 1),
            "ended": job.result.stop_reason,
        }
    )


job = st.session_state.get(JOB_KEY)
if job is not None:
    finish(job)
running = job is not None and job.running

source, data = current_data_or_stop()
st.caption(f"Data: **{data.summary()}** (change it on the Data page).")
designs = design_choices()
valid_choice("train.design", designs)
valid_choice("train.optimizer", OPTIMIZERS)
for key, value in (
    ("train.epochs", min(15, limits.max_epochs())),
    ("train.budget", min(60, limits.max_time_budget())),
    ("train.learning_rate", 0.01),
    ("train.batch_size", 32),
    ("train.early_stopping", 0),
):
    st.session_state.setdefault(key, value)  # defaults here, not in the widgets: the values outlive the page

with st.form("train.form"):
    left, middle, right = st.columns(3)
    preset = left.selectbox("Model design", designs, format_func=DESIGN_LABELS.get, key="train.design")
    optimizer = left.selectbox("Optimizer", OPTIMIZERS, key="train.optimizer")
    epochs = middle.slider("Epochs (most)", 1, limits.max_epochs(), key="train.epochs")
    budget = middle.slider(
        "Time budget (s, 0 = none)",
        0,
        limits.max_time_budget(),
        step=10,
        key="train.budget",
        help="Stop when this many seconds are spent, keeping the best weights so far.",
    )
    learning_rate = middle.select_slider(
        "Learning rate", [0.0003, 0.001, 0.003, 0.01, 0.03, 0.1], key="train.learning_rate"
    )
    batch_size = right.select_slider("Batch size", [8, 16, 32, 64, 128, 256], key="train.batch_size")
    augment = right.toggle(
        "Augment",
        key="train.augment",
        help="Use the augmentation set on the Data page (default: small shifts).",
    )
    early_stopping = right.slider("Early stopping patience (0 = off)", 0, 10, key="train.early_stopping")
    submitted = st.form_submit_button("Train", type="primary", disabled=running)

if submitted and not running:
    try:
        if preset == "custom":
            model_config = st.session_state[BUILD_CONFIG_KEY]
            if model_config.input_shape != data.image_shape or model_config.num_classes != data.num_classes:
                model_config = model_config.replace(
                    input_shape=data.image_shape, num_classes=data.num_classes
                )
        else:
            model_config = cnnviz.preset_config(preset, data.image_shape, data.num_classes)
        augmentation = {}
        if augment:
            augmentation = {
                field: st.session_state.get(f"data.{field}", default)
                for field, default in (
                    ("flip", "none"),
                    ("rotate", 0.0),
                    ("zoom", 0.0),
                    ("translate", 0.06),
                    ("contrast", 0.0),
                )
            }
        train_config = cnnviz.TrainConfig(
            optimizer=optimizer,
            learning_rate=float(learning_rate),
            batch_size=int(batch_size),
            epochs=int(epochs),
            # "No budget" still ends at the studio's limit, so one visitor cannot hold a hosted demo.
            time_budget=float(budget) or float(limits.max_time_budget()),
            early_stopping=int(early_stopping),
            **augmentation,
        )
    except cnnviz.CnnvizError as error:
        st.error(f"{error} Change the settings and try again.")
        st.stop()
    run_id = len(st.session_state.get(HISTORY_KEY, [])) + 1
    discard(st.session_state.get(JOB_KEY))  # the previous run's logs; its model stays in the history
    job = TrainingJob(source, model_config, train_config, run_id)
    job.start(data)
    st.session_state[JOB_KEY] = job


@st.fragment(run_every=1.0)
def live_progress() -> None:
    job = st.session_state.get(JOB_KEY)
    if job is None:
        st.info("Choose the data and settings, then press **Train**.")
        return
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
        if not getattr(job, "published", False):
            finish(job)
            st.rerun()  # the whole page: the sidebar now offers the new model
        accuracy = job.result.val_accuracy
        st.success(
            f"Run {job.run_id}: {job.result.message} "
            + (f"Validation accuracy {accuracy:.1%}. " if accuracy is not None else "")
            + "Choose **Trained in this session** in the sidebar to look inside it."
        )
    rows = job.epochs()
    batches = job.batches(after_seconds=LONG_EPOCH_SECONDS)
    if job.running and len(batches) >= 3:
        # Long epochs: the loss batch by batch within the current one, so progress shows at once.
        st.line_chart(
            pd.DataFrame(batches).set_index("batch")[["loss"]],
            height=180,
            x_label=f"batch (epoch {len(rows) + 1})",
            y_label="loss",
        )
    if rows:
        st.plotly_chart(plotting.training_curves_figure(rows), key=f"train.curves.{len(rows)}.{job.running}")


live_progress()

history = st.session_state.get(HISTORY_KEY, [])
if history:
    st.subheader("Runs in this session")
    st.dataframe(pd.DataFrame(history).set_index("run"), key="train.history_table")
    job = st.session_state.get(JOB_KEY)
    if job is not None and job.result is not None:
        if "bytes" not in job.__dict__:
            job.bytes = model_bytes(job.result.model, cnnviz.class_names_of(job.result.model))
        stem = f"cnnviz-{job.data_source.split(':')[-1].rsplit('.', 1)[0]}-run{job.run_id}"
        left, right = st.columns(2)
        left.download_button(
            f"Download run {job.run_id}'s model (.keras)",
            job.bytes,
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
