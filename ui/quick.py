"""The Predict page's answer before TensorFlow is loaded: the default model's ONNX export (`cnnviz.exported`).

A hosted demo is woken by its visitor; `import tensorflow` alone takes seconds. Until `ui.warmup` has
loaded TensorFlow and the default models, an upload, a sample or a drawing on Predict is answered by
onnxruntime with the same class, top 5 and Grad-CAM (tests/test_export.py and tests/test_app.py compare the
two). Other heatmap methods and the layer choice wait for TensorFlow.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import streamlit as st

from ui import ASSETS, warmup
from ui.models import DEFAULTS
from ui.session import studio


@dataclasses.dataclass(frozen=True)
class QuickChoice:
    """A default model answered by its ONNX export."""

    label: str
    classifier: Any  # cnnviz.exported.OnnxClassifier
    sample_prefix: str | None

    @property
    def drawing(self) -> bool:
        return self.classifier.input_shape[-1] == 1 or self.sample_prefix == "digit_"


@st.cache_resource(show_spinner=False)
def _classifier(file_name: str):
    from cnnviz.exported import OnnxClassifier

    return OnnxClassifier(ASSETS / "models" / file_name)


def quick_choice() -> QuickChoice | None:
    """The ONNX stand-in for the chosen default model while TensorFlow loads; None once it is loaded
    (or for any other model, or a default model without its .onnx file)."""
    pending = studio().pending_model
    if pending is None or warmup.ready():
        return None
    file_name, prefix, _ = DEFAULTS[pending.label]
    onnx = file_name.replace(".keras", ".onnx")
    if not (ASSETS / "models" / onnx).exists():
        return None
    return QuickChoice(pending.label, _classifier(onnx), prefix)


def answer(choice: QuickChoice, image) -> dict:
    """Class, top 5 and the Grad-CAM heatmap at the image's size, as `cnnviz.predict` + `explain` give them."""
    return choice.classifier.predict(image, top_k=5)
