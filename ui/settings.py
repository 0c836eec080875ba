"""The studio's settings, declared once: `SETTINGS`, one row per widget that outlives its page.

Each `Setting` says its key, its widget, the values it may hold (its domain),
its default, whether a link shares it, and which config field it sets. From
this one table come:

- the widgets themselves (`draw`),
- the check on values from a link or a stale session (`allowed`),
- the keys kept across page switches (`PERSISTENT_KEYS`) and shared in links (`SHARED_KEYS`),
- the `TrainConfig` the Train page asks for (`train_settings`).

Streamlit forgets a widget's value when a run does not draw it (e.g. after
switching pages). Re-assigning the value at the start of every run, which
app.py does (`keep_widget_state`), keeps it: the pattern Streamlit's docs give
for multipage apps. The shared settings are mirrored to the URL's query
parameters, so a link reproduces them, like TensorFlow Playground's.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from typing import Any

import streamlit as st

from cnnviz import limits
from cnnviz.models import ACTIVATIONS, POOLINGS
from cnnviz.pretrained import BACKBONE_SIZES, backbone_size
from cnnviz.training.config import (
    AUGMENTATION_FIELDS,
    AUTO_AUGMENT_TEXT,
    DEFAULT_AUGMENTATION,
    DEFAULT_BATCH_TEXT,
    DEFAULT_LEARNING_RATES_TEXT,
    FLIPS,
    OPTIMIZERS,
    TrainConfig,
)


@dataclasses.dataclass(frozen=True)
class Setting:
    """One setting of the studio.

    Attributes:
        key: the widget's session key, `"<page>.<name>"`, also its name in links.
        label: what the widget says.
        widget: `"slider"`, `"select_slider"`, `"selectbox"`, `"multiselect"` or `"toggle"`.
        domain: for sliders `(low, high, step)`; for the others, the options.
            A callable is asked at every use (limits from the environment,
            choices that depend on the session).
        default: the value before anybody chose (or a callable giving it).
        shared: whether links carry it.
        field: the config field it sets (`TrainConfig` for `train.*`,
            the design's for `build.*`), when it sets one directly.
        help: the widget's tooltip.
        labels: option -> what the widget shows for it (or a callable giving that mapping).
        read: the widget's value for a design, when it is not simply the field's value.
        convert: the field's value for the widget's, when they differ.
        renamed: `(old value, value)` pairs: what an old link or session held, and what it means now.
    """

    key: str
    label: str
    widget: str
    domain: Any
    default: Any
    shared: bool = True
    field: str | None = None
    help: str | None = None
    labels: Mapping[Any, str] | Callable[[], Mapping[Any, str]] | None = None
    read: Callable[[Any], Any] | None = None
    convert: Callable[[Any], Any] | None = None
    renamed: tuple[tuple[Any, Any], ...] = ()

    def options(self) -> Any:
        return self.domain() if callable(self.domain) else self.domain

    def to_field(self, widget_value: Any) -> Any:
        return widget_value if self.convert is None else self.convert(widget_value)

    def from_design(self, design) -> Any:
        return design.fields()[self.field] if self.read is None else self.read(design)

    def initial(self) -> Any:
        return self.default() if callable(self.default) else self.default

    def cleaned(self, value: Any) -> Any:
        """`value` if the widget can hold it; for a multiselect, the options among it (a link may add
        unknown ones); else `None`. An old value (`renamed`) becomes the one it means now."""
        for old, new in self.renamed:
            if type(value) is type(old) and value == old:
                value = new
        if self.widget == "multiselect" and isinstance(value, list):
            kept = [item for item in value if _among(item, self.options())]
            return kept if kept or not value else None  # cleared by the visitor: kept empty
        return value if self.allows(value) else None

    def allows(self, value: Any) -> bool:
        """Whether the widget can hold `value` (a link or a stale session may say anything)."""
        domain = self.options()
        if self.widget == "toggle":
            return isinstance(value, bool)
        if self.widget == "multiselect":
            return isinstance(value, list) and all(_among(item, domain) for item in value)
        if self.widget == "slider":
            low, high, _ = domain
            kind = int if isinstance(low, int) and isinstance(high, int) else (int, float)
            return isinstance(value, kind) and not isinstance(value, bool) and low <= value <= high
        return _among(value, domain)


def _among(value: Any, options) -> bool:
    return not isinstance(value, (bool, list, dict)) and value in list(options)


def _design_choices() -> list[str]:
    from ui.models import design_choices

    return design_choices()


def _baseline_choices() -> list[str]:
    from ui.models import design_choices

    return design_choices(transfer=False)  # on Improve, transfer is one of the variants


def _data_sources() -> list[str]:
    from ui.data import available_sources

    return list(available_sources())


def _data_source_labels() -> dict[str, str]:
    from ui.data import available_sources

    return available_sources()


def _variants() -> list[str]:
    from cnnviz.comparison import VARIANTS

    return list(VARIANTS)


def _design_labels() -> dict[str, str]:
    from ui.models import design_labels

    return design_labels()


_AUGMENTATION_DEFAULTS = {
    name: DEFAULT_AUGMENTATION.get(name, TrainConfig.__dataclass_fields__[name].default)
    for name in AUGMENTATION_FIELDS
}

#: Every setting of the studio, by key.
SETTINGS: dict[str, Setting] = {
    setting.key: setting
    for setting in (
        Setting(
            "data.source", "Data source", "selectbox", _data_sources, "shapes", labels=_data_source_labels
        ),
        # Augmentation: set on the Data page, used by the Train page when "Augment" is on (or auto, for
        # many small images).
        Setting("data.flip", "Flip", "selectbox", FLIPS, _AUGMENTATION_DEFAULTS["flip"], field="flip"),
        Setting(
            "data.rotate",
            "Rotate (fraction of a turn)",
            "slider",
            (0.0, 0.5, 0.01),
            _AUGMENTATION_DEFAULTS["rotate"],
            field="rotate",
        ),
        Setting(
            "data.zoom", "Zoom", "slider", (0.0, 0.5, 0.05), _AUGMENTATION_DEFAULTS["zoom"], field="zoom"
        ),
        Setting(
            "data.translate",
            "Shift",
            "slider",
            (0.0, 0.3, 0.02),
            _AUGMENTATION_DEFAULTS["translate"],
            field="translate",
        ),
        Setting(
            "data.contrast",
            "Contrast",
            "slider",
            (0.0, 0.5, 0.05),
            _AUGMENTATION_DEFAULTS["contrast"],
            field="contrast",
        ),
        Setting(
            "data.noise",
            "Pixel noise",
            "slider",
            (0.0, 0.2, 0.01),
            _AUGMENTATION_DEFAULTS["noise"],
            field="noise",
            help="Grainy copies: each image gets Gaussian noise of up to this share of the brightness range, "
            "so the network learns shapes rather than clean edges.",
        ),
        Setting(
            "data.texture",
            "Background texture",
            "slider",
            (0.0, 0.3, 0.02),
            _AUGMENTATION_DEFAULTS["texture"],
            field="texture",
            help="Copies with stripes or a checkerboard over the picture, of up to this share of the brightness "
            "range, so the network learns that a busy background is not part of the object.",
        ),
        # Build: the design's fields. The preset's values are loaded into them when the preset changes.
        Setting(
            "build.preset",
            "Start from a preset",
            "selectbox",
            lambda: [d for d in _design_choices() if d != "custom"],
            "fast",
            labels=_design_labels,
        ),
        Setting(
            "build.fine_tune_layers",
            "Fine-tune the last N layers",
            "slider",
            (0, 60, 1),
            0,
            field="fine_tune_layers",
            help="0 trains only the new head.",
        ),
        Setting(
            "build.imagenet",
            "Start from ImageNet weights",
            "toggle",
            None,
            True,
            field="backbone_weights",
            read=lambda design: design.backbone_weights == "imagenet",
            convert=lambda on: "imagenet" if on else None,
        ),
        Setting(
            "build.backbone_size",
            "Resize images to",
            "select_slider",
            BACKBONE_SIZES,
            96,
            field="backbone_size",
            help="Larger: more detail, slower.",
            read=lambda design: backbone_size(max(design.input_shape[:2]), design.backbone_size),
        ),
        Setting("build.conv_blocks", "Conv blocks", "slider", (1, 6, 1), 4, field="conv_blocks"),
        Setting(
            "build.filters",
            "Filters in block 1 (doubles each block)",
            "select_slider",
            (4, 8, 16, 32, 64, 128),
            16,
            field="filters",
        ),
        Setting(
            "build.max_filters",
            "Most filters in a block",
            "select_slider",
            (16, 32, 64, 128, 256, 512),
            256,
            field="max_filters",
            help="The doubling stops here: the last blocks work on small maps.",
        ),
        Setting(
            "build.convs_per_block", "Convolutions per block", "slider", (1, 3, 1), 1, field="convs_per_block"
        ),
        Setting("build.kernel_size", "Kernel size", "select_slider", (1, 3, 5, 7), 3, field="kernel_size"),
        Setting(
            "build.stem_stride", "First convolution stride", "select_slider", (1, 2), 2, field="stem_stride"
        ),
        Setting(
            "build.pooled_blocks",
            "Blocks followed by pooling",
            "slider",
            (0, 6, 1),
            3,
            field="pooled_blocks",
            help="Fewer keeps a larger last feature map: finer heatmaps, more computation.",
            read=lambda design: design.conv_blocks if design.pooled_blocks is None else design.pooled_blocks,
        ),
        Setting("build.batch_norm", "Batch normalization", "toggle", None, True, field="batch_norm"),
        Setting(
            "build.activation",
            "Activation",
            "selectbox",
            ACTIVATIONS,
            "relu",
            field="activation",
        ),
        Setting(
            "build.block_dropout",
            "Dropout after each block",
            "slider",
            (0.0, 0.6, 0.05),
            0.0,
            field="block_dropout",
        ),
        Setting(
            "build.pooling",
            "Head",
            "selectbox",
            POOLINGS,
            "global_avg",
            field="pooling",
            labels={"global_avg": "global average pooling", "flatten": "flatten"},
        ),
        Setting(
            "build.dense_units",
            "Hidden dense units (0 = none)",
            "select_slider",
            (0, 32, 64, 128, 256, 512),
            0,
            field="dense_units",
        ),
        Setting(
            "build.dense_dropout",
            "Dropout before the classes",
            "slider",
            (0.0, 0.6, 0.05),
            0.0,
            field="dense_dropout",
        ),
        # Train: one widget per TrainConfig knob the studio offers.
        Setting("train.design", "Model design", "selectbox", _design_choices, "fast", labels=_design_labels),
        Setting(
            "train.optimizer",
            "Optimizer",
            "selectbox",
            OPTIMIZERS,
            TrainConfig.optimizer,
            field="optimizer",
            help="Muon (the default) orthogonalizes each convolution's update, so every filter direction learns "
            "at the same pace: after 3 epochs on the shapes it scored 98 %, Adam 49 %.",
        ),
        Setting(
            "train.epochs",
            "Epochs (most)",
            "slider",
            lambda: (1, limits.max_epochs(), 1),
            lambda: min(15, limits.max_epochs()),
            field="epochs",
        ),
        Setting(
            "train.budget",
            "Time budget (s, 0 = none)",
            "slider",
            lambda: (0, limits.max_time_budget(), 10),
            lambda: min(60, limits.max_time_budget()),
            field="time_budget",
            help="Stop when this many seconds are spent, keeping the best weights so far.",
            # "No budget" still ends at the studio's limit, so one visitor cannot hold a hosted demo.
            convert=lambda seconds: float(seconds) or float(limits.max_time_budget()),
        ),
        Setting(
            "train.learning_rate",
            "Learning rate",
            "select_slider",
            ("auto", 0.0003, 0.001, 0.003, 0.01, 0.02, 0.03, 0.1),
            "auto",
            field="learning_rate",
            help=f"Auto: the optimizer's own ({DEFAULT_LEARNING_RATES_TEXT}).",
            convert=lambda rate: None if rate == "auto" else rate,
        ),
        Setting(
            "train.batch_size",
            "Batch size",
            "select_slider",
            ("auto", 8, 16, 32, 64, 128, 256),
            "auto",
            field="batch_size",
            help=f"Auto: {DEFAULT_BATCH_TEXT}.",
            convert=lambda size: None if size == "auto" else size,
        ),
        Setting(
            "train.augment",
            "Augment",
            "select_slider",
            ("off", "auto", "on"),
            "auto",
            help="On: use the augmentation set on the Data page (default: small shifts). "
            f"Auto: {AUTO_AUGMENT_TEXT}.",
            renamed=((True, "on"), (False, "off")),  # a toggle before 2026-12-02
        ),
        Setting(
            "train.early_stopping",
            "Early stopping patience (0 = off)",
            "slider",
            (0, 10, 1),
            0,
            field="early_stopping",
        ),
        Setting(
            "train.timeline",
            "Timeline: images to follow (0 = off)",
            "select_slider",
            (0, 4, 8, 16),
            8,
            field="timeline",
            help="These validation images are explained before training and after every epoch: scrub the epochs "
            "below the curves to see when the network starts looking at the right pixels.",
        ),
        # Improve
        Setting(
            "improve.design", "Baseline design", "selectbox", _baseline_choices, "fast", labels=_design_labels
        ),
        Setting(
            "improve.variants",
            "Variants to compare",
            "multiselect",
            _variants,
            lambda: ["baseline", "augmentation", "deeper", "batch_norm"],
        ),
        Setting("improve.budget", "Seconds per variant", "slider", (5, 120, 5), 20),
    )
}

#: The sidebar's model choice outlives pages too, but a link cannot carry a session's own model.
MODEL_CHOICE_KEY = "model.choice"
PERSISTENT_KEYS = (MODEL_CHOICE_KEY, *SETTINGS)
SHARED_KEYS = tuple(key for key, setting in SETTINGS.items() if setting.shared)


def allowed(key: str, value: Any) -> bool:
    """Whether setting `key` may hold `value`; keys outside the table may hold anything."""
    setting = SETTINGS.get(key)
    return setting is None or setting.allows(value)


def value(key: str) -> Any:
    """The setting's current value (its default until somebody chose)."""
    if key not in st.session_state or not allowed(key, st.session_state[key]):
        st.session_state[key] = SETTINGS[key].initial()
    return st.session_state[key]


def draw(key: str, place: Any = st, **options: Any) -> Any:
    """Draws setting `key`'s widget in `place` (`st`, a column, a form) and returns its value."""
    setting = SETTINGS[key]
    value(key)  # the default (or a valid kept value) lives in the session, not in the widget
    common = {"key": key, "help": setting.help, **options}
    labels = setting.labels() if callable(setting.labels) else setting.labels
    if labels:
        common["format_func"] = lambda option: labels.get(option, str(option))
    domain = setting.options()
    if setting.widget == "toggle":
        return place.toggle(setting.label, **common)
    if setting.widget == "slider":
        low, high, step = domain
        return place.slider(setting.label, low, high, step=step, **common)
    return getattr(place, setting.widget)(setting.label, list(domain), **common)


def train_settings(augment_by_default: bool) -> dict[str, Any]:
    """The `TrainConfig` fields the Train page's settings set, by field name; with "Augment" on (or auto,
    and `augment_by_default` for the data: `cnnviz.runs.augments_by_default`), also the augmentation set
    on the Data page."""
    augment = {"on": True, "off": False, "auto": augment_by_default}[value("train.augment")]
    prefixes = ("train.", "data.") if augment else ("train.",)
    return {
        setting.field: setting.to_field(value(key))
        for key, setting in SETTINGS.items()
        if key.startswith(prefixes) and setting.field in TrainConfig.__dataclass_fields__
    }


def _design_settings(design) -> list[Setting]:
    from cnnviz.models import field_names

    fields = set(field_names(type(design)))
    return [
        setting for key, setting in SETTINGS.items() if key.startswith("build.") and setting.field in fields
    ]


def load_design(design) -> None:
    """Sets the Build page's widgets to a design's values (a new preset, or new data)."""
    for setting in _design_settings(design):
        st.session_state[setting.key] = setting.from_design(design)


def design_changes(design) -> dict[str, Any]:
    """The changes the Build page's widgets make to `design` (fields of its family only)."""
    changes = {setting.field: setting.to_field(value(setting.key)) for setting in _design_settings(design)}
    if "pooled_blocks" in changes:  # the slider runs to 6 whatever the number of blocks
        changes["pooled_blocks"] = min(changes["pooled_blocks"], changes["conv_blocks"])
    return changes


def design_widgets(design) -> list[str]:
    """The keys of the Build page's widgets that apply to `design`'s family, in table order."""
    return [setting.key for setting in _design_settings(design)]


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
        if key not in st.session_state:
            continue
        value = st.session_state[key] if key not in SETTINGS else SETTINGS[key].cleaned(st.session_state[key])
        if value is None:
            del st.session_state[key]
        else:
            st.session_state[key] = value


def share_settings() -> None:
    """Writes the current settings into the URL, so copying the link shares them."""
    for key in SHARED_KEYS:
        if key in st.session_state:
            encoded = json.dumps(st.session_state[key])
            if st.query_params.get(key) != encoded:
                st.query_params[key] = encoded


def settings_link(page: str = "train") -> str:
    """A link to `page` of this studio that carries the current shared settings (for a model card)."""
    from urllib.parse import urlencode, urlsplit

    query = {key: json.dumps(st.session_state[key]) for key in SHARED_KEYS if key in st.session_state}
    parts = urlsplit(st.context.url or "http://localhost:8501/")
    return f"{parts.scheme}://{parts.netloc}/{page}?{urlencode(query)}"


def valid_choice(key: str, options) -> None:
    """Forgets a stored choice that is not among `options` (a stale or hand-edited link)."""
    if key in st.session_state and not _among(st.session_state[key], options):
        del st.session_state[key]


def group(prefix: str) -> list[str]:
    """The keys of one page's settings, in table order."""
    return [key for key in SETTINGS if key.startswith(f"{prefix}.")]


def field_keys(prefix: str) -> list[str]:
    """The keys of one page's settings that set a config field, in table order."""
    return [key for key in group(prefix) if SETTINGS[key].field is not None]


def draw_in_columns(keys: list[str], columns: list[Any]) -> dict[str, Any]:
    """Draws the settings `keys` filling `columns` in order; returns their values by key."""
    per_column = -(-len(keys) // len(columns))
    return {key: draw(key, columns[index // per_column]) for index, key in enumerate(keys)}
