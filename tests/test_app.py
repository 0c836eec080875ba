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
    assert "Upload" in app.info[0].value


def test_cnnviz_never_imports_streamlit():
    for path in (ROOT / "cnnviz").rglob("*.py"):
        assert "streamlit" not in path.read_text(), path
