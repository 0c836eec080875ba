"""The app renders and answers an upload (streamlit.testing AppTest)."""

from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def test_app_opens_on_predict_page_without_error():
    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    assert not app.exception
    assert app.selectbox(key="predict.model").value.startswith("Shapes")
    # With no upload, the first sample is classified at once, correctly.
    assert app.radio(key="predict.sample").value == "circle"
    assert app.metric[0].value == "circle"


def test_sample_choice_and_digits_model():
    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    app.radio(key="predict.sample").set_value("star").run()
    assert app.metric[0].value == "star"
    app.selectbox(key="predict.model").set_value("Handwritten digits").run()
    assert not app.exception
    assert app.radio(key="predict.sample").options == ["3", "7"]
    assert app.metric[0].value == app.radio(key="predict.sample").value


def test_cnnviz_never_imports_streamlit():
    for path in (ROOT / "cnnviz").rglob("*.py"):
        assert "streamlit" not in path.read_text(), path
