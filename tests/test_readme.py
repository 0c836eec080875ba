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


def test_readme_onnxruntime_snippet_prints_the_class_and_saves_the_heatmap_without_tensorflow(tmp_path):
    import shutil
    import subprocess
    import sys

    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    code = next(block for block in blocks if "onnxruntime.InferenceSession" in block)
    assert len([line for line in code.splitlines() if line.strip()]) <= 10
    root = README.parent
    shutil.copy(root / "assets" / "models" / "shapes.onnx", tmp_path / "shapes.onnx")
    shutil.copy(root / "assets" / "samples" / "shape_circle.png", tmp_path / "photo.png")
    guard = "import sys\nsys.modules['tensorflow'] = None  # any import of TensorFlow fails\n"
    run = subprocess.run([sys.executable, "-c", guard + code], cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-1500:]
    assert run.stdout.startswith("circle ")
    from PIL import Image

    assert Image.open(tmp_path / "heatmap.png").size == Image.open(tmp_path / "photo.png").size


def test_readme_trust_example_runs(monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    code = next(block for block in blocks if "cnnviz.score_explanations(" in block)
    code = code.replace("images=100)", 'images=5, methods=["gradcam", "saliency"])')
    code = code.replace('load_dataset("shapes")', 'load_dataset("shapes", num_samples=400)')
    monkeypatch.chdir(README.parent)  # the example reads assets/
    output = io.StringIO()
    namespace = {}
    with contextlib.redirect_stdout(output):
        exec(compile(code, "README.md", "exec"), namespace)
    assert "'reason':" in output.getvalue()
    assert namespace["why"].contrast_map.shape == (64, 64)
    assert len(namespace["board"].rows) == 5  # Grad-CAM at three layers, saliency, random
