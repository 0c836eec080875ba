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


# What each setting may hold, as its widget allows: a value from a link (or a
# stale session) outside this is dropped before any widget sees it, so a page
# shows its default instead of failing. ("range", low, high) | ("in", options) | ("bool",)
ALLOWED = {
    "data.flip": ("in", ("none", "horizontal", "vertical", "both")),
    "data.rotate": ("range", 0.0, 0.5),
    "data.zoom": ("range", 0.0, 0.5),
    "data.translate": ("range", 0.0, 0.3),
    "data.contrast": ("range", 0.0, 0.5),
    "build.conv_blocks": ("range", 1, 6),
    "build.filters": ("in", (4, 8, 16, 32, 64, 128)),
    "build.convs_per_block": ("range", 1, 3),
    "build.kernel_size": ("in", (1, 3, 5, 7)),
    "build.stem_stride": ("in", (1, 2)),
    "build.pooled_blocks": ("range", 0, 6),
    "build.batch_norm": ("bool",),
    "build.block_dropout": ("range", 0.0, 0.6),
    "build.dense_units": ("in", (0, 32, 64, 128, 256, 512)),
    "build.dense_dropout": ("range", 0.0, 0.6),
    "build.fine_tune_layers": ("range", 0, 60),
    "build.imagenet": ("bool",),
    "build.backbone_size": ("in", (96, 128, 160, 192, 224)),
    "train.learning_rate": ("in", (0.0003, 0.001, 0.003, 0.01, 0.03, 0.1)),
    "train.batch_size": ("in", (8, 16, 32, 64, 128, 256)),
    "train.augment": ("bool",),
    "train.early_stopping": ("range", 0, 10),
    "improve.budget": ("range", 5, 120),
}


def _rule(key: str):
    from cnnviz import limits

    if key == "train.epochs":
        return ("range", 1, limits.max_epochs())
    if key == "train.budget":
        return ("range", 0, limits.max_time_budget())
    return ALLOWED.get(key)


def _allowed(key: str, value) -> bool:
    rule = _rule(key)
    if rule is None:
        return True
    if rule[0] == "bool":
        return isinstance(value, bool)
    if rule[0] == "in":
        return not isinstance(value, bool) and value in rule[1]
    low, high = rule[1], rule[2]
    kind = int if isinstance(low, int) else (int, float)
    return isinstance(value, kind) and not isinstance(value, bool) and low <= value <= high


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
            if _allowed(key, st.session_state[key]):
                st.session_state[key] = st.session_state[key]
            else:
                del st.session_state[key]


def share_settings() -> None:
    """Writes the current settings into the URL, so copying the link shares them."""
    for key in SHARED_KEYS:
        if key in st.session_state:
            value = json.dumps(st.session_state[key])
            if st.query_params.get(key) != value:
                st.query_params[key] = value
