"""Which model the studio looks at: the defaults, this session's, or an uploaded one.

The choice is a sidebar widget drawn by app.py on every page, so it survives
page switches; pages read it with `current_model()`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import streamlit as st

import cnnviz

ASSETS = Path(__file__).resolve().parent.parent / "assets"
# Label -> (model file in assets/models, sample image prefix in assets/samples, data source).
DEFAULTS = {
    "Shapes (default model)": ("shapes.keras", "shape_", "shapes"),
    "Handwritten digits (default model)": ("digits.keras", "digit_", "digits"),
}
IMAGENET = "Photos: ImageNet classifier (MobileNetV2)"
SESSION = "Trained in this session"
UPLOAD = "Upload a .keras model"

CHOICE_KEY = "model.choice"
CURRENT_KEY = "model.current"
_PENDING_KEY = "model.pending"  # a default model chosen in this run, not loaded yet: (label, caption slot)
UPLOADED_KEY = "model.uploaded"
# Set by the Train page: the session's own model and the data it learnt from.
TRAINED_MODEL_KEY = "train.model"
TRAINED_SOURCE_KEY = "train.data_source"
TRAINED_RUN_KEY = "train.run_id"
TRAINED_DATA_KEY = "train.data"
TRAINED_INITIAL_KEY = "train.initial_weights"

BUILD_CONFIG_KEY = "build.config"  # the Build page's design, offered as "custom" on Train and Improve
# The presets (cnnviz.PRESETS) as the pages name them, and the Build page's own design.
DESIGN_LABELS = {
    "fast": "fast: tuned for a CPU (batch norm, global pooling)",
    "keras_mnist": "keras.io simple MNIST convnet",
    "tutorial_basic": "the tutorial's CIFAR-10 net",
    "tutorial_improved": "the tutorial's improved net (deeper, batch norm)",
    "transfer_mobilenet_v2": "transfer learning: MobileNetV2 pretrained on ImageNet",
    "transfer_efficientnet_b0": "transfer learning: EfficientNetB0 pretrained on ImageNet",
    "custom": "custom (from Build)",
}


def design_choices(transfer: bool = True) -> list[str]:
    """The designs a page may offer: "custom" only once the Build page made one, transfer ones if asked."""
    return [
        name
        for name in DESIGN_LABELS
        if (name != "custom" or BUILD_CONFIG_KEY in st.session_state)
        and (transfer or not name.startswith("transfer_"))
    ]


@dataclasses.dataclass
class ModelChoice:
    """The model a page works on, with what the pages need to know about it."""

    key: str  # id for caches shared by all sessions: "default:shapes.keras", "session:<run>-<uuid>", "upload:<sha1>"
    label: str
    model: Any
    class_names: tuple[str, ...]
    data_source: str | None  # a cnnviz.load_dataset source or "upload:<name>", when known
    sample_prefix: str | None  # sample images in assets/samples, when any fit

    def dataset(self):
        """The labelled data the model was made for, or None when unknown."""
        from ui import compute

        if self.key.startswith("session:"):
            return st.session_state.get(TRAINED_DATA_KEY)
        if self.data_source is None:
            return None
        return compute.dataset(self.data_source, None, 0)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(int(side) for side in self.model.input_shape[1:])


@st.cache_resource(show_spinner="Loading the model...")
def load_default_model(file_name: str):
    # Shared read-only by every session: no page may change it (cnnviz never does).
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
    return ModelChoice("imagenet:mobilenet_v2", IMAGENET, model, cnnviz.class_names_of(model), None, None)


def _load_uploaded(data: bytes, name: str):
    """Loads an uploaded .keras file through a private temp file (removed at once)."""
    handle, path = tempfile.mkstemp(suffix=".keras")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        return cnnviz.load_model(path)
    finally:
        os.unlink(path)


def model_picker() -> None:
    """Draws the sidebar model choice and stores the chosen model for the pages (see `current_model`)."""
    options = [*DEFAULTS, IMAGENET]
    if TRAINED_MODEL_KEY in st.session_state:
        options.append(SESSION)
    options.append(UPLOAD)
    from ui.state import valid_choice

    valid_choice(CHOICE_KEY, options)
    label = st.sidebar.selectbox("Model", options, key=CHOICE_KEY)
    choice = None
    if label in DEFAULTS:
        # Loaded when a page first asks (`current_model`), below the page's title: on a new server
        # this load starts TensorFlow, and the visitor reads the page meanwhile.
        st.session_state[CURRENT_KEY] = None
        st.session_state[_PENDING_KEY] = (label, st.sidebar.empty())
        return
    if label == IMAGENET:
        choice = _imagenet_choice()
    elif label == SESSION:
        model = st.session_state[TRAINED_MODEL_KEY]
        source = st.session_state.get(TRAINED_SOURCE_KEY)
        run = st.session_state.get(TRAINED_RUN_KEY, 0)
        prefix = {"shapes": "shape_", "digits": "digit_"}.get(source)
        choice = ModelChoice(f"session:{run}", label, model, cnnviz.class_names_of(model), source, prefix)
    else:
        upload = st.sidebar.file_uploader("Your model (.keras)", type=["keras"], key="model.upload")
        if upload is not None:
            data = upload.getvalue()
            digest = hashlib.sha1(data).hexdigest()
            stored = st.session_state.get(UPLOADED_KEY)
            if stored is None or stored[0] != digest:
                try:
                    model = _load_uploaded(data, upload.name)
                except cnnviz.CnnvizError as error:
                    st.sidebar.error(
                        f"{error} Upload a model saved by cnnviz or Keras 3 (`model.save('m.keras')`)."
                    )
                    model = None
                st.session_state[UPLOADED_KEY] = (digest, model, upload.name)
            digest, model, name = st.session_state[UPLOADED_KEY]
            if model is not None:
                choice = ModelChoice(
                    f"upload:{digest}", name, model, cnnviz.class_names_of(model), None, None
                )
    st.session_state[CURRENT_KEY] = choice
    st.session_state.pop(_PENDING_KEY, None)
    if label == IMAGENET:
        st.sidebar.caption(
            "Trained by Google on 1.3 million photos of 1000 everyday things (ImageNet). "
            "Try any photo of an animal, a vehicle or an object."
        )
    if choice is not None:
        _describe(choice, st.sidebar)


def _describe(choice: ModelChoice, place) -> None:
    height, width, channels = choice.input_shape
    place.caption(
        f"{len(choice.class_names)} classes: {', '.join(choice.class_names[:6])}"
        f"{'...' if len(choice.class_names) > 6 else ''} · input {height}x{width}x{channels}"
    )


def load_pending_model() -> None:
    """Loads the default model that `model_picker` chose in this run, if no page has asked for it yet.

    app.py calls it after the page, so the sidebar describes the model on every page."""
    pending = st.session_state.pop(_PENDING_KEY, None)
    if pending is None:
        return
    label, caption_slot = pending
    file_name, prefix, source = DEFAULTS[label]
    model = load_default_model(file_name)
    choice = ModelChoice(f"default:{file_name}", label, model, cnnviz.class_names_of(model), source, prefix)
    st.session_state[CURRENT_KEY] = choice
    _describe(choice, caption_slot)


_ENTRY_RAN_KEY = "app.entry_ran"  # app.py ran in this script run (popped by the page)
_ENTRY_SEEN_KEY = "app.entry_seen"  # app.py has run in this session at least once


def mark_entry_run() -> None:
    """Called by app.py after drawing the shared sidebar."""
    st.session_state[_ENTRY_RAN_KEY] = True
    st.session_state[_ENTRY_SEEN_KEY] = True


def current_model() -> ModelChoice | None:
    load_pending_model()
    return st.session_state.get(CURRENT_KEY)


def _first_run_in_legacy_mode() -> bool:
    """True when a real server ran this page file in Streamlit's legacy multipage mode.

    A server starts in that mode because a `pages/` folder exists, and leaves it
    only when app.py calls st.navigation. If the first request after a start is a
    deep link (/train), Streamlit runs pages/train.py on its own with lowercase
    file names as the navigation, and stays so until somebody opens "/". This
    leaves the mode, as st.navigation would, so a rerun goes through app.py to
    this same page.
    """
    from streamlit import runtime
    from streamlit.runtime.pages_manager import PagesManager

    if not runtime.exists() or not PagesManager.uses_pages_directory or st.session_state.get(_ENTRY_SEEN_KEY):
        return False  # AppTest runs app.py first, then page files on their own: that is not this case
    PagesManager.uses_pages_directory = False
    return True


def ensure_shell() -> None:
    """Draws the page config and sidebar model choice if app.py did not.

    Streamlit runs a page file on its own (without app.py) when a deep link
    is the first request after a server start, because a `pages/` folder
    exists (its legacy multipage mode), and AppTest does so on reruns. Every
    page calls this first, so it works either way.
    """
    if not st.session_state.pop(_ENTRY_RAN_KEY, False):
        if _first_run_in_legacy_mode():
            st.rerun()  # now through app.py and its navigation, on this same page
        from ui.state import keep_widget_state

        st.set_page_config(page_title="cnnviz studio", layout="wide")
        keep_widget_state()
        model_picker()
        load_pending_model()  # no app.py to finish the sidebar in this run


def require_model() -> ModelChoice:
    """The chosen model, or a message and a stop when there is none."""
    ensure_shell()
    choice = current_model()
    if choice is None:
        st.info("Choose a model in the sidebar (or upload a .keras file there) to use this page.")
        st.page_link("pages/train.py", label="...or train one now", icon=":material/model_training:")
        st.stop()
    return choice
