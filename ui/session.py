"""One visitor's studio state, as one typed object: `studio()`.

Widget values stay in `st.session_state` under their settings keys (Streamlit
keeps them there; see `ui.settings`). Everything else a session holds lives in
one `StudioSession` under one key, so no module invents its own string keys.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import streamlit as st

SESSION_KEY = "studio"


@dataclasses.dataclass
class Upload:
    """A file a visitor uploaded and what it turned into (`value` is None when it could not be used)."""

    digest: str
    name: str
    value: Any


@dataclasses.dataclass
class TrainedModel:
    """The model the Train page made in this session, and what it was made from.

    Attributes:
        model: the Keras model.
        source: the data's label (`"shapes"`, `"upload:photos.zip"`, `"folder:pets"`).
        data: the `Dataset` or `ImageStream` it trained on (Results scores its test split).
        initial_weights: the weights training started from (Weights: before and after).
        run: a run id unique across sessions (caches shared by all sessions key the model by it).
        config: the `cnnviz.TrainConfig` it was trained with (which validation images it held out).
    """

    model: Any
    source: str
    data: Any
    initial_weights: list | None
    run: str
    config: Any = None


@dataclasses.dataclass
class PendingModel:
    """A default model chosen in this script run and not loaded yet, with the sidebar slot
    that will describe it. Lives for one run: `model_picker` sets it, the page (or app.py
    after the page) loads it."""

    label: str
    caption_slot: Any


@dataclasses.dataclass
class StudioSession:
    """Everything a visitor's session holds besides widget values."""

    current_model: Any = None  # ui.models.ModelChoice, or None
    pending_model: PendingModel | None = None
    uploaded_model: Upload | None = None
    trained: TrainedModel | None = None
    build_design: Any = None  # the Build page's design, offered as "custom" on Train and Improve
    # (preset, its design for the data) the Build widgets were last reset to
    build_loaded_for: tuple | None = None
    training_job: Any = None  # ui.training.TrainingJob
    comparison_job: Any = None  # ui.training.ComparisonJob
    history: list[dict] = dataclasses.field(default_factory=list)  # a row per finished training run
    uploaded_data: Upload | None = None  # a zip of class folders, as a Dataset
    stream: tuple[str, Any] | None = None  # (folder path, ImageStream)
    shown_filters: tuple | None = None  # (model key, layer, filters) the Activations page shows
    shown_classes: str | None = None  # model key whose class images the Activations page shows
    # The Map page's 2-D maps, by (model key, what, method).
    maps: dict = dataclasses.field(default_factory=dict)
    fixing: Any = None  # ui.cleaning.Fixing: the Fix-your-data page's audit and decisions


def studio() -> StudioSession:
    """This visitor's `StudioSession` (made on first use)."""
    if SESSION_KEY not in st.session_state:
        st.session_state[SESSION_KEY] = StudioSession()
    return st.session_state[SESSION_KEY]
