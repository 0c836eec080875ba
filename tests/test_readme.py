"""The README's Python example runs as written (with a smaller budget and dataset)."""

import contextlib
import io
import re
from pathlib import Path

import numpy as np

from .conftest import write_image

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_python_example_runs(tmp_path, monkeypatch):
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    assert "cnnviz.train(" in code and "cnnviz.predict(" in code
    code = code.replace("time_budget=30", "time_budget=3").replace(
        'load_dataset("shapes")', 'load_dataset("shapes", num_samples=400)'
    )
    monkeypatch.chdir(tmp_path)
    write_image(tmp_path / "my_drawing.png", np.zeros((50, 60, 3), np.uint8))
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        exec(compile(code, "README.md", "exec"), {})
    printed = output.getvalue()
    assert "'class':" in printed and "'top_k':" in printed
    assert (tmp_path / "shapes.keras").exists()


def test_readme_look_inside_example_runs(monkeypatch):
    import plotly.graph_objects as go

    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    code = next(block for block in blocks if "cnnviz.explain(" in block)
    code = code.replace('load_dataset("shapes")', 'load_dataset("shapes", num_samples=200)')
    shown = []
    monkeypatch.setattr(go.Figure, "show", lambda figure, *a, **k: shown.append(figure))
    monkeypatch.chdir(README.parent)  # the example reads assets/
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["heatmaps"].shape == (1, 64, 64) and namespace["rgb"].dtype == np.uint8
    assert namespace["patterns"].shape[0] == 8 and namespace["kernels"].shape == (16, 3, 3, 3)
    assert len(shown) == 3  # heatmap, feature maps, confusion matrix
