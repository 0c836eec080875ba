"""Settings that survive page switches, and can be shared as a link.

Streamlit forgets a widget's value when a run does not draw it (e.g. after
switching pages). Re-assigning the value at the start of every run, which
app.py does, keeps it (the pattern Streamlit's docs give for multipage apps).
The same settings are mirrored to the URL's query parameters, so a link
reproduces them, like TensorFlow Playground's.
"""

from __future__ import annotations

import json

import streamlit as st

# Widget keys whose values outlive their page. Never buttons or uploaders (their values cannot be set).
PERSISTENT_KEYS = (
    "model.choice",
    "data.source",
    "data.flip",
    "data.rotate",
    "data.zoom",
    "data.translate",
    "data.contrast",
    "build.preset",
    "build.conv_blocks",
    "build.filters",
    "build.convs_per_block",
    "build.kernel_size",
    "build.stem_stride",
    "build.pooled_blocks",
    "build.batch_norm",
    "build.activation",
    "build.block_dropout",
    "build.head",
    "build.dense_units",
    "build.dense_dropout",
    "build.fine_tune_layers",
    "build.imagenet",
    "build.backbone_size",
    "train.design",
    "train.optimizer",
    "train.epochs",
    "train.budget",
    "train.learning_rate",
    "train.batch_size",
    "train.augment",
    "train.early_stopping",
    "improve.design",
    "improve.variants",
    "improve.budget",
)


# Shared in links: not the model choice (a link cannot carry a session's own model).
SHARED_KEYS = tuple(key for key in PERSISTENT_KEYS if key != "model.choice")


def valid_choice(key: str, options) -> None:
    """Forgets a stored choice that is not among `options` (a stale or hand-edited link)."""
    if key in st.session_state and st.session_state[key] not in list(options):
        del st.session_state[key]


def keep_widget_state() -> None:
    """Restores shared settings from the URL once, then keeps them across pages."""
    if not st.session_state.get("state.restored"):
        st.session_state["state.restored"] = True
        for key, raw in st.query_params.items():
            if key in SHARED_KEYS:
                try:
                    st.session_state[key] = json.loads(raw)
                except ValueError:
                    st.session_state[key] = raw
    for key in PERSISTENT_KEYS:
        if key in st.session_state:
            st.session_state[key] = st.session_state[key]


def share_settings() -> None:
    """Writes the current settings into the URL, so copying the link shares them."""
    for key in SHARED_KEYS:
        if key in st.session_state:
            value = json.dumps(st.session_state[key])
            if st.query_params.get(key) != value:
                st.query_params[key] = value
