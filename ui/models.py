"""Which model the studio looks at: a default one, ImageNet's, this session's, or an uploaded one.

The choice is a sidebar widget drawn by app.py on every page, so it survives
page switches; pages read it with `require_model()`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import tempfile
from typing import Any, Literal

import streamlit as st

import cnnviz
from cnnviz.images import any_size_note, takes_any_size
from cnnviz.introspect import input_shape_of
from ui import ASSETS, warmup
from ui.session import PendingModel, Upload, studio
from ui.settings import MODEL_CHOICE_KEY, valid_choice

# Label -> (model file in assets/models, sample image prefix in assets/samples, data source).
DEFAULTS = {
    "Shapes (default model)": ("shapes.keras", "shape_", "shapes"),
    "Handwritten digits (default model)": ("digits.keras", "digit_", "digits"),
}
IMAGENET = "Photos: ImageNet classifier (MobileNetV2)"
SESSION = "Trained in this session"
UPLOAD = "Upload a .keras model"
SAMPLE_PREFIXES = {"shapes": "shape_", "digits": "digit_"}
CUSTOM_DESIGN = "custom"


def design_labels() -> dict[str, str]:
    """The designs as the pages name them: every preset's label, and the Build page's own design."""
    return {name: preset.label for name, preset in cnnviz.PRESETS.items()} | {
        CUSTOM_DESIGN: "custom (from Build)"
    }


def design_choices(transfer: bool = True) -> list[str]:
    """The designs a page may offer: "custom" only once the Build page made one, transfer designs if asked."""
    custom = studio().build_design
    choices = []
    for name in design_labels():
        if name == CUSTOM_DESIGN and custom is None:
            continue
        family = custom.family if name == CUSTOM_DESIGN else cnnviz.PRESETS[name].family.family
        if transfer or family != "transfer":
            choices.append(name)
    return choices


def chosen_design(name: str):
    """What a page's design choice means for `runs.TrainRequest`: a preset name, or the Build page's design."""
    return studio().build_design if name == CUSTOM_DESIGN else name


@dataclasses.dataclass
class ModelChoice:
    """The model a page works on, with what the pages need to know about it.

    Attributes:
        kind: where it comes from.
        key: an id for caches shared by all sessions: `"default:shapes.keras"`,
            `"imagenet:mobilenet_v2"`, `"session:<run>"` or `"upload:<sha1>"`.
        label: what the sidebar calls it.
        model: the Keras model.
        class_names: its classes.
        data_source: the labelled data it was made for (a built-in name or a
            session data label), or None when unknown.
        sample_prefix: sample images in assets/samples that fit it, if any.
    """

    kind: Literal["default", "imagenet", "session", "upload"]
    key: str
    label: str
    model: Any
    class_names: tuple[str, ...]
    data_source: str | None
    sample_prefix: str | None

    def size_note(self, input_size) -> str | None:
        """For a model that takes any size: at which size it read an image, and the rule; else None."""
        if not takes_any_size(self.input_shape):
            return None
        return f"Read at {input_size[0]}x{input_size[1]} px. {any_size_note()}"

    @property
    def input_shape(self) -> tuple:
        """`(height, width, channels)`; a side is None where the model takes any size."""
        return input_shape_of(self.model)


def _recorded_source(model) -> str | None:
    """The built-in source a model's provenance names (a path from another machine is of no use here)."""
    from cnnviz.data import BUILTIN_SOURCES
    from cnnviz.saving import get_metadata

    source = get_metadata(model).get("training", {}).get("data")
    return source if source in BUILTIN_SOURCES else None


@st.cache_resource(show_spinner="Loading TensorFlow and the model...")
def load_default_model(file_name: str):
    # Shared read-only by every session: no page may change it (cnnviz never does).
    if file_name in warmup.FILES:
        return warmup.model(file_name)  # loaded in the background since the server's first visit
    return cnnviz.load_model(ASSETS / "models" / file_name)


@st.cache_resource(show_spinner=False)
def load_imagenet_model():
    # Shared read-only like the defaults; a failed download is not cached.
    return cnnviz.imagenet_classifier()


def _imagenet_choice() -> ModelChoice | None:
    from cnnviz import pretrained

    cached = pretrained.weights_cached("mobilenet_v2", pretrained.IMAGENET_SIZE, include_top=True)
    message = (
        "Loading MobileNetV2..."
        if cached
        else "Downloading MobileNetV2's ImageNet weights (about 14 MB, only this once)..."
    )
    try:
        with st.spinner(message):
            model = load_imagenet_model()
    except cnnviz.CnnvizError as error:
        st.sidebar.error(f"{error} Meanwhile, choose another model above.")
        return None
    return ModelChoice(
        "imagenet", "imagenet:mobilenet_v2", IMAGENET, model, cnnviz.class_names_of(model), None, None
    )


def _session_choice() -> ModelChoice:
    trained = studio().trained
    source = trained.source
    return ModelChoice(
        "session",
        f"session:{trained.run}",
        SESSION,
        trained.model,
        cnnviz.class_names_of(trained.model),
        source,
        SAMPLE_PREFIXES.get(source),
    )


def _load_uploaded(data: bytes):
    """Loads an uploaded .keras file through a private temp file (removed at once)."""
    handle, path = tempfile.mkstemp(suffix=".keras")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        return cnnviz.load_model(path)
    finally:
        os.unlink(path)


def _upload_choice() -> ModelChoice | None:
    upload = st.sidebar.file_uploader("Your model (.keras)", type=["keras", "h5"], key="model.upload")
    if upload is None:
        return None
    data = upload.getvalue()
    digest = hashlib.sha1(data).hexdigest()
    session = studio()
    if session.uploaded_model is None or session.uploaded_model.digest != digest:
        try:
            model = _load_uploaded(data)
        except cnnviz.CnnvizError as error:
            st.sidebar.error(f"{error} Choose another model file, or one of the models above.")
            model = None
        session.uploaded_model = Upload(digest, upload.name, model)
    stored = session.uploaded_model
    if stored.value is None:
        return None
    source = _recorded_source(stored.value)
    return ModelChoice(
        "upload",
        f"upload:{digest}",
        stored.name,
        stored.value,
        cnnviz.class_names_of(stored.value),
        source,
        SAMPLE_PREFIXES.get(source),
    )


def model_picker() -> None:
    """Draws the sidebar model choice and keeps the chosen model for the pages (see `require_model`)."""
    session = studio()
    options = [*DEFAULTS, IMAGENET, *([SESSION] if session.trained is not None else []), UPLOAD]
    valid_choice(MODEL_CHOICE_KEY, options)
    label = st.sidebar.selectbox("Model", options, key=MODEL_CHOICE_KEY)
    session.pending_model = None
    if label in DEFAULTS:
        # Loaded when a page first asks (`require_model`), below the page's title: on a new server
        # this load starts TensorFlow, and the visitor reads the page meanwhile.
        session.current_model = None
        session.pending_model = PendingModel(label, st.sidebar.empty())
        return
    chooser = {IMAGENET: _imagenet_choice, SESSION: _session_choice, UPLOAD: _upload_choice}[label]
    session.current_model = chooser()
    if label == IMAGENET:
        st.sidebar.caption(
            "Trained by Google on 1.3 million photos of 1000 everyday things (ImageNet). "
            "Try any photo of an animal, a vehicle or an object."
        )
    if session.current_model is not None:
        _describe(session.current_model, st.sidebar)


def _describe(choice: ModelChoice, place) -> None:
    height, width, channels = choice.input_shape
    size = f"any size x {channels}" if takes_any_size(choice.input_shape) else f"{height}x{width}x{channels}"
    place.caption(
        f"{len(choice.class_names)} classes: {', '.join(choice.class_names[:6])}"
        f"{'...' if len(choice.class_names) > 6 else ''} · input {size}"
    )


def load_pending_model(wait: bool = True) -> None:
    """Loads the default model that `model_picker` chose in this run, if no page has asked for it yet.

    app.py calls it after the page, so the sidebar describes the model on every page; there it does not
    wait for TensorFlow (`wait=False`): the sidebar says it is loading, and reruns the app once it is in."""
    session = studio()
    pending = session.pending_model
    if pending is None:
        return
    if not wait and not warmup.ready():
        with pending.caption_slot.container():
            _rerun_once_loaded()
        return
    session.pending_model = None
    file_name, prefix, source = DEFAULTS[pending.label]
    model = load_default_model(file_name)
    choice = ModelChoice(
        "default", f"default:{file_name}", pending.label, model, cnnviz.class_names_of(model), source, prefix
    )
    session.current_model = choice
    _describe(choice, pending.caption_slot)


@st.fragment(run_every=2.0)
def _rerun_once_loaded() -> None:
    """Says the model is loading and, once TensorFlow is in, reruns the app, which describes the model.

    The whole app, not this fragment: that run draws no fragment, so the polling stops (as `quick_panel`
    on the Predict page), and a failed load shows where it always did.
    """
    if warmup.ready():
        st.rerun()
    st.caption("Loading TensorFlow... the model's details appear in a moment.")


def require_model() -> ModelChoice:
    """The chosen model, or a message and a stop when there is none."""
    load_pending_model()
    choice = studio().current_model
    if choice is None:
        st.info("Choose a model in the sidebar (or upload a .keras file there) to use this page.")
        st.page_link("pages/train.py", label="...or train one now", icon=":material/model_training:")
        st.stop()
    return choice
