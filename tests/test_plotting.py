"""Figures: each draws what it is given, and says what is wrong with bad input."""

import shutil

import keras
import numpy as np
import plotly.graph_objects as go
import pytest

import cnnviz
from cnnviz import plotting
from cnnviz.errors import ConfigError

NAMES = ("circle", "square", "star")


def test_confusion_matrix_counts_shares_and_cell_markers():
    counts = np.array([[5, 1, 0], [0, 4, 2], [1, 0, 6]])
    figure = plotting.confusion_matrix_figure(counts, NAMES)
    heatmap, markers = figure.data
    np.testing.assert_array_equal(np.asarray(heatmap.z), counts)
    assert list(heatmap.x) == list(NAMES) and list(heatmap.y) == list(NAMES)
    digits = plotting.confusion_matrix_figure(np.eye(3, dtype=int), ("0", "1", "2"))
    assert digits.layout.xaxis.type == digits.layout.yaxis.type == "category"  # "0".."9" stay names
    cells = {(int(t), int(p)): int(n) for t, p, n in markers.customdata}
    assert cells[(1, 2)] == 2 and len(cells) == 9
    shares = np.asarray(plotting.confusion_matrix_figure(counts, NAMES, normalize=True).data[0].z)
    np.testing.assert_allclose(shares.sum(axis=1), 1.0)
    with pytest.raises(ConfigError, match="square"):
        plotting.confusion_matrix_figure(np.ones((2, 3)), NAMES)


def test_confusion_matrix_from_an_evaluation_result(tiny_arrays):
    images, labels = tiny_arrays
    model = cnnviz.build_model(
        cnnviz.ConvNetConfig(input_shape=(16, 16, 3), num_classes=2, conv_blocks=1, filters=4)
    )
    result = cnnviz.evaluate(model, (images, labels), class_names=("dark", "bright"))
    figure = cnnviz.confusion_matrix_figure(result)
    np.testing.assert_array_equal(np.asarray(figure.data[0].z), result.confusion_matrix)
    assert list(figure.data[0].x) == ["dark", "bright"]


def test_prediction_grid_titles_top_k_and_marks_mistakes():
    images = np.zeros((2, 8, 8, 3), np.uint8)
    probabilities = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    figure = plotting.prediction_grid_figure(images, probabilities, NAMES, labels=np.array([0, 1]), top_k=3)
    assert len(figure.data) == 2 and all(isinstance(trace, go.Image) for trace in figure.data)
    first, second = figure.layout.annotations
    assert first.text.split("<br>") == ["true: circle", "circle 70%", "square 20%", "star 10%"]
    assert first.font.color == "#2e7d32" and second.font.color == "#c62828"  # right, wrong


def test_feature_map_figure_tiles_every_channel():
    maps = np.random.default_rng(0).random((6, 5, 10)).astype(np.float32)
    figure = plotting.feature_map_figure(maps, "conv1", max_channels=64)
    mosaic = np.asarray(figure.data[0].z, dtype=float)
    assert mosaic.shape == (3 * 7 - 1, 4 * 6 - 1)  # 10 channels of 6x5 in 3 rows of 4, 1-pixel gaps
    np.testing.assert_allclose(np.nanmax(mosaic), 1.0)
    assert "10 channels" in figure.layout.title.text
    assert "8 of 10" in plotting.feature_map_figure(maps, "conv1", max_channels=8).layout.title.text
    with pytest.raises(ConfigError, match="pick a layer with a map"):
        plotting.feature_map_figure(np.zeros(5), "dense")


def test_kernel_figures_for_each_kernel_layout():
    rgb = plotting.kernel_figure(np.random.default_rng(0).random((4, 3, 3, 3)))
    assert isinstance(rgb.data[0], go.Image)
    averaged = plotting.kernel_figure(np.full((4, 3, 3), 0.5))
    assert isinstance(averaged.data[0], go.Heatmap)
    per_channel = plotting.kernel_figure(np.zeros((2, 5, 3, 3)), per_channel=True)
    assert np.asarray(per_channel.data[0].z, dtype=float).shape == (2 * 4 - 1, 5 * 4 - 1)
    with pytest.raises(ConfigError, match="kernels must be"):
        plotting.kernel_figure(np.zeros((3, 3)))


def test_heatmap_figures_overlay_and_pairs():
    image = np.full((10, 10, 3), 90, np.uint8)
    heatmap = np.zeros((10, 10), np.float32)
    heatmap[2, 3] = 1.0
    figure = plotting.heatmap_figure(image, heatmap)
    assert np.asarray(figure.data[0].z).shape == (10, 10, 3)
    assert np.asarray(figure.data[0].customdata)[2, 3] == pytest.approx(1.0)
    pairs = plotting.heatmap_pairs_figure(np.stack([image] * 3), np.stack([heatmap] * 3), ["a", "b", "c"])
    assert len(pairs.data) == 6
    assert [a.text for a in pairs.layout.annotations][:2] == ["a", "heatmap"]
    with pytest.raises(ConfigError, match="no images"):
        plotting.image_grid_figure([])


def test_per_class_and_weight_figures():
    rows = [{"class": n, "precision": 0.9, "recall": 0.8, "f1": 0.85} for n in NAMES]
    bars = plotting.per_class_figure(rows)
    assert [trace.name for trace in bars.data] == ["precision", "recall", "f1"]
    keras.utils.set_random_seed(0)
    model = cnnviz.build_model(
        cnnviz.ConvNetConfig(input_shape=(12, 12, 3), num_classes=2, conv_blocks=1, filters=4)
    )
    histograms = cnnviz.weight_histograms(model)
    kernel_figure = plotting.weight_histogram_figure(histograms, ("kernel",))
    assert len(kernel_figure.data) == sum(1 for h in histograms if h["kind"] == "kernel")
    other = keras.models.clone_model(model)
    changes = cnnviz.weight_changes(model, other)
    overview = plotting.weight_change_figure(changes)
    assert len(overview.data[0].x) == sum(np.isfinite(c["relative_change"]) for c in changes)
    one = plotting.weight_change_figure(changes, "conv1/kernel")
    assert [trace.name for trace in one.data] == ["before", "after"]
    with pytest.raises(ConfigError, match="no weight named"):
        plotting.weight_change_figure(changes, "nope")
    with pytest.raises(ConfigError, match="no weights of kind"):
        plotting.weight_histogram_figure(histograms, ("banana",))


def test_architecture_figure_draws_the_chain_of_maps():
    rows = [
        {"name": "input", "kind": "InputLayer", "output_shape": (None, 64, 64, 3), "parameters": 0},
        {"name": "conv1", "kind": "Conv2D", "output_shape": (None, 64, 64, 16), "parameters": 448},
        {"name": "pool1", "kind": "MaxPooling2D", "output_shape": (None, 32, 32, 16), "parameters": 0},
        {"name": "conv2", "kind": "Conv2D", "output_shape": (None, 32, 32, 64), "parameters": 9280},
        {"name": "flatten", "kind": "Flatten", "output_shape": (None, 65536), "parameters": 0},
        {"name": "logits", "kind": "Dense", "output_shape": (None, 4), "parameters": 262148},
    ]
    figure = plotting.architecture_figure(rows)
    trace = figure.data[0]
    assert list(trace.text) == ["conv1", "pool1", "conv2", "flatten", "logits"]  # no input layer
    assert list(trace.y) == [64, 32, 32, 1, 1]  # vectors sit at side 1
    sizes = list(trace.marker.size)
    assert sizes[2] > sizes[0] > sizes[4]  # more channels, bigger box
    assert trace.marker.color[0] != trace.marker.color[1]  # convolutions and pooling apart
    assert list(figure.layout.yaxis.tickvals) == [1, 2, 4, 8, 16, 32, 64]
    assert figure.layout.yaxis.type == "log"
    with pytest.raises(cnnviz.ConfigError):
        plotting.architecture_figure(rows[:1])


def test_comparison_figure_names_points_only_where_names_cannot_collide():
    from cnnviz.comparison import VariantResult

    def result(name, accuracy, seconds):
        history = {"val_accuracy": [accuracy / 2, accuracy]}
        return VariantResult(name, name, accuracy=accuracy, train_seconds=seconds, epochs=2, history=history)

    apart = plotting.comparison_figure([result("baseline", 0.5, 10.0), result("deeper", 0.95, 10.0)])
    assert [trace.mode for trace in apart.data[::2]] == ["markers+text"] * 2
    assert [trace.text[0] for trace in apart.data[::2]] == ["baseline", "deeper"]
    # Same budget, accuracies a few tenths of a point apart: one spot, one label naming them best first.
    variants = [result("dropout", 0.989, 10.0), result("baseline", 0.994, 10.1), result("sgd", 0.6, 10.0)]
    close = plotting.comparison_figure(variants)
    points = close.data[::2]
    assert [trace.name for trace in points] == ["dropout", "baseline", "sgd"]
    assert [trace.mode for trace in points] == ["markers", "markers+text", "markers+text"]
    assert points[1].text[0] == "baseline, dropout"
    assert points[2].text[0] == "sgd"
    failed = VariantResult("transfer", "transfer", error="no weights offline")
    assert [trace.name for trace in plotting.comparison_figure([result("a", 0.9, 5.0), failed]).data] == [
        "a",
        "a",
    ]


def test_training_curves_mark_the_kept_epoch_on_both_plots_and_only_when_given():
    rows = [
        {"epoch": e, "loss": 1 / e, "accuracy": 0.5 + e / 10, "val_accuracy": 0.6 + e / 20} for e in (1, 2, 3)
    ]
    plain = plotting.training_curves_figure(rows)
    assert plain.layout.shapes == () and "kept" not in {a.text for a in plain.layout.annotations}
    marked = plotting.training_curves_figure(rows, kept_epoch=2)
    lines = [shape for shape in marked.layout.shapes if shape.type == "line"]
    assert [shape.x0 for shape in lines] == [2, 2] and {shape.xref for shape in lines} == {"x", "x2"}
    assert [a.text for a in marked.layout.annotations if a.text == "kept"] == ["kept"]
    assert plotting.training_curves_figure(rows, kept_epoch=7).layout.shapes == ()  # not an epoch shown


def test_save_png_writes_arrays(tmp_path):
    from PIL import Image

    image = np.random.default_rng(0).integers(0, 255, (9, 7, 3), dtype=np.uint8)
    path = plotting.save_png(image, tmp_path / "image.png")
    np.testing.assert_array_equal(np.asarray(Image.open(path)), image)


@pytest.mark.skipif(
    not (shutil.which("chromium") or shutil.which("google-chrome")),
    reason="figure export needs Chrome/Chromium",
)
def test_save_png_exports_figures(tmp_path):
    from PIL import Image

    path = plotting.save_png(
        plotting.confusion_matrix_figure(np.eye(2, dtype=int)), tmp_path / "m.png", scale=1
    )
    assert Image.open(path).size[0] > 100


def test_embedding_figure_has_a_trace_per_class_or_right_and_wrong_with_image_indices():
    points = np.arange(12, dtype=np.float32).reshape(6, 2)
    labels = np.array([0, 1, 0, 1, 1, 0])
    predictions = np.array([0, 1, 1, 1, 0, 0])
    by_class = plotting.embedding_figure(points, labels, ["cat", "dog"])
    assert [trace.name for trace in by_class.data] == ["cat", "dog"]
    assert list(by_class.data[0].customdata) == [0, 2, 5] and list(by_class.data[0].x) == [0, 4, 10]
    by_verdict = plotting.embedding_figure(points, labels, ["cat", "dog"], predictions, color_by="correct")
    assert [trace.name for trace in by_verdict.data] == ["right", "wrong"]
    assert list(by_verdict.data[1].customdata) == [2, 4]
    assert "called cat" in by_verdict.data[1].hovertext[1]
    with pytest.raises(ConfigError, match="needs the predictions"):
        plotting.embedding_figure(points, labels, ["cat", "dog"], color_by="correct")


def test_filter_patterns_figure_puts_each_pattern_beside_its_patch_mosaic():
    patterns = np.zeros((2, 8, 8, 3), np.uint8)
    patches = np.zeros((2, 9, 5, 5, 3), np.uint8)
    figure = plotting.filter_patterns_figure(patterns, [3, 7], patches, "conv2")
    titles = [annotation.text for annotation in figure.layout.annotations]
    assert titles == [
        "filter 3: made for it",
        "filter 3: top 9 patches",
        "filter 7: made for it",
        "filter 7: top 9 patches",
    ]
    assert figure.data[0].z.shape == (12, 12, 3)  # the pattern in a 2-pixel frame
    assert figure.data[1].z.shape == (3 * 5 + 2 * 2, 3 * 5 + 2 * 2, 3)  # 3x3 patches, 2-pixel gaps


def test_confusion_difference_figure_is_symmetric_in_colour_and_signs_its_cells():
    difference = np.array([[3, -3], [-1, 1]])
    figure = plotting.confusion_difference_figure(difference, ["a", "b"])
    heatmap = figure.data[0]
    assert heatmap.zmin == -3 and heatmap.zmax == 3
    assert [list(row) for row in heatmap.text] == [["+3", "-3"], ["-1", "+1"]]
    with pytest.raises(ConfigError, match="square"):
        plotting.confusion_difference_figure(np.zeros((2, 3)), ["a", "b"])
