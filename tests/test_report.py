"""cnnviz report / runs.model_card: one HTML file about a model, with nothing fetched when it opens."""

import re
from pathlib import Path

import pytest

import cnnviz
from cnnviz import runs
from cnnviz.cli import main

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small model trained by the CLI: its file records the curves and provenance a card shows."""
    path = tmp_path_factory.mktemp("card") / "small.keras"
    arguments = ["train", "--data", "shapes", "--num-samples", "600", "--image-size", "32", "--epochs", "2"]
    assert main([*arguments, "--out", str(path)]) == 0
    return path


def test_a_model_card_holds_the_test_metrics_mistakes_heatmaps_curves_and_design(trained, tmp_path, capsys):
    out = tmp_path / "card.html"
    assert main(["report", str(trained), "--out", str(out)]) == 0
    assert "no network needed" in capsys.readouterr().out
    page = out.read_text()
    model = cnnviz.load_model(trained)
    expected = runs.evaluate_saved(model, "shapes")  # the same test split the card scores on
    assert f"{expected.accuracy:.1%}<span>test accuracy" in page
    assert f"{expected.n:,}<span>test images" in page
    mistakes = expected.n - int(expected.confusion_matrix.trace())
    assert f"{mistakes:,}<span>mistakes" in page
    # Each shown mistake and sample is an image and its heatmap, inlined.
    classes_ever_right = int((expected.confusion_matrix.diagonal() > 0).sum())  # one sample of each
    assert page.count('alt="Grad-CAM heatmap"') == min(8, mistakes) + classes_ever_right
    # Curves (recorded by the run), confusion matrix and per-class bars: three plotly figures.
    assert page.count('class="plotly-graph-div"') == 3
    assert '"history"' not in page  # the curves are drawn, not dumped in the provenance
    assert f"{model.count_params():,} parameters" in page
    for heading in ("Data", "Test metrics", "Confusion matrix", "Most confident mistakes", "Sample heatmaps",
                    "Training", "Provenance", "Design"):  # fmt: skip
        assert f">{heading}" in page, heading
    # Self-contained: no script, style, image or link to fetch.
    markup = re.sub(r"<script>.*?</script>", "", page, flags=re.S)  # plotly.js itself names URLs
    assert not re.search(r"""(src|href)=["']https?:""", markup) and "<link" not in markup
    assert page.count("<script>") == 1 + 3  # plotly.js once, then each figure's call


def test_a_model_card_without_recorded_data_asks_for_it(tmp_path, capsys):
    from .test_reliability import _any_size_model

    path = cnnviz.save_model(_any_size_model(), tmp_path / "any.keras", ("a", "b", "c", "d"))
    assert main(["report", str(path), "--out", str(tmp_path / "card.html")]) == 2
    assert "give data" in capsys.readouterr().err
    assert main(["report", str(path), "--out", str(tmp_path / "card.txt")]) == 2
