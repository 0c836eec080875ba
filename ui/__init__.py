"""The studio's Streamlit layer: settings (`settings`), session state (`session`), the model
choice (`models`), the data choice (`data`), cached calls into cnnviz (`compute`), background
training jobs (`training`), widget helpers (`widgets`) and every workaround of Streamlit
internals (`runtime`). Model logic stays in cnnviz; pages hold layout."""

from pathlib import Path

ASSETS = Path(__file__).resolve().parent.parent / "assets"
