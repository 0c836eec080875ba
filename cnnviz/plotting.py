"""Plotly figures of what `cnnviz` computes.

Compute once, draw many ways: every function here takes arrays (or an
`EvaluationResult`) and returns a `plotly.graph_objects.Figure`; nothing here
runs a model. The same figures work in a notebook, in the studio
(`st.plotly_chart`) and as PNG files (`save_png`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cnnviz.errors import ConfigError
from cnnviz.render import overlay, resize_maps, tile

_MARGIN = {"l": 10, "r": 10, "t": 40, "b": 10}


def _go():
    import plotly.graph_objects as go

    return go


def _hide_axes(figure) -> None:
    figure.update_xaxes(visible=False, constrain="domain")
    figure.update_yaxes(visible=False, scaleanchor="x", constrain="domain")


def _rgb(image: NDArray) -> NDArray[np.uint8]:
    array = np.asarray(image)
    if array.dtype != np.uint8:
        array = np.clip(np.rint(array * 255 if array.max(initial=0) <= 1.0 else array), 0, 255).astype(
            np.uint8
        )
    if array.ndim == 2:
        array = array[..., None]
    return np.repeat(array, 3, axis=-1) if array.shape[-1] == 1 else array[..., :3]


def heatmap_figure(
    image: NDArray, heatmap: NDArray, colormap: str = "Jet", opacity: float = 0.45, title: str | None = None
):
    """The image with its heatmap blended over it; hover shows the heat value."""
    go = _go()
    blended = overlay(image, heatmap, colormap=colormap, opacity=opacity)
    heat = resize_maps(np.asarray(heatmap, np.float32)[None], blended.shape[:2])[0]
    figure = go.Figure(
        go.Image(
            z=blended,
            customdata=heat,
            hovertemplate="x %{x}, y %{y}<br>heat %{customdata:.2f}<extra></extra>",
        )
    )
    figure.update_layout(title=title, margin=_MARGIN, height=360)
    _hide_axes(figure)
    return figure


def image_grid_figure(
    images: list[NDArray] | NDArray,
    titles: list[str] | None = None,
    columns: int = 6,
    title: str | None = None,
    title_colors: list[str] | None = None,
):
    """A grid of small images with a title each (e.g. predictions, filter images)."""
    from plotly.subplots import make_subplots

    go = _go()
    images = list(images)
    if not images:
        raise ConfigError("there are no images to show.")
    columns = max(1, min(int(columns), len(images)))
    rows = -(-len(images) // columns)
    titles = list(titles or [""] * len(images))
    figure = make_subplots(
        rows=rows, cols=columns, subplot_titles=titles, horizontal_spacing=0.02, vertical_spacing=0.3 / rows
    )
    for index, image in enumerate(images):
        figure.add_trace(
            go.Image(z=_rgb(image), hoverinfo="skip"), row=index // columns + 1, col=index % columns + 1
        )
    for annotation, color in zip(figure.layout.annotations, title_colors or []):
        annotation.font.color = color
    figure.update_annotations(font_size=11)
    _hide_axes(figure)
    figure.update_layout(title=title, margin=_MARGIN, height=max(220, 170 * rows + 40), showlegend=False)
    return figure


def filter_patterns_figure(
    patterns: NDArray, filters: list[int], patches: NDArray | None = None, layer: str = ""
):
    """Each filter's generated pattern, beside the training or test patches that excite it most.

    Args:
        patterns: uint8 `(F, H, W, C)` from `cnnviz.filter_images`.
        filters: the F channel indices (for the titles).
        patches: uint8 `(F, k, h, w, C)` from `cnnviz.top_patches(...).patches`, or None for patterns only.
        layer: the layer's name, for the title.
    """
    from cnnviz.render import tile

    if patches is None:
        return image_grid_figure(
            patterns, [f"filter {f}" for f in filters], columns=6, title=f"Filter patterns of {layer}"
        )
    if len(patches) != len(patterns):
        raise ConfigError(f"{len(patterns)} patterns but {len(patches)} sets of patches.")
    images, titles = [], []
    for filter_index, pattern, found in zip(filters, patterns, patches):
        # A grey frame: a pattern may be white at its edges, and the page is white.
        framed = np.pad(pattern, ((2, 2), (2, 2), (0, 0)), constant_values=190)
        images += [framed, tile(found, columns=int(np.ceil(np.sqrt(len(found)))), padding=2, fill=255)]
        titles += [f"filter {filter_index}: made for it", f"filter {filter_index}: top {len(found)} patches"]
    return image_grid_figure(images, titles, columns=6, title=f"What excites each filter of {layer}")


def embedding_figure(
    points: NDArray,
    labels: NDArray,
    class_names,
    predictions: NDArray | None = None,
    color_by: str = "class",
    title: str = "",
):
    """A 2-D map of images (from `cnnviz.embedding.project`): a dot per image, coloured by class or by right/wrong.

    Each dot carries its image's index as `customdata`, so a click can say which image it is.

    Args:
        points: `(N, 2)` map coordinates.
        labels: `(N,)` true classes.
        class_names: the class names.
        predictions: `(N,)` predicted classes (needed for `color_by="correct"`; shown on hover).
        color_by: `"class"` or `"correct"`.
        title: the chart's title.
    """
    go = _go()
    points, labels = np.asarray(points), np.asarray(labels)
    if color_by not in ("class", "correct"):
        raise ConfigError(f"color_by must be class or correct, got {color_by!r}.")
    if color_by == "correct" and predictions is None:
        raise ConfigError("colouring by right or wrong needs the predictions.")
    names = list(class_names)
    indices = np.arange(len(points))
    if color_by == "class":
        from plotly.colors import qualitative

        palette = qualitative.D3 if len(names) <= 10 else qualitative.Dark24
        groups = [(names[c], labels == c, palette[c % len(palette)]) for c in range(len(names))]
    else:
        right = np.asarray(predictions) == labels
        groups = [("right", right, "#2ca02c"), ("wrong", ~right, "#d62728")]
    figure = go.Figure()
    for name, mask, color in groups:
        if not mask.any():
            continue
        hover = [f"image {i}: {names[labels[i]]}" for i in indices[mask]]
        if predictions is not None:
            hover = [f"{text}, called {names[int(predictions[i])]}" for text, i in zip(hover, indices[mask])]
        figure.add_trace(
            go.Scatter(
                x=points[mask, 0],
                y=points[mask, 1],
                mode="markers",
                name=name,
                customdata=indices[mask],
                hovertext=hover,
                hoverinfo="text",
                marker={"size": 6, "opacity": 0.75, "color": color},
            )
        )
    figure.update_xaxes(showticklabels=False, zeroline=False)
    figure.update_yaxes(showticklabels=False, zeroline=False, scaleanchor="x")
    figure.update_layout(
        title=title, margin=_MARGIN, height=520, legend={"itemsizing": "constant"}, clickmode="event+select"
    )
    return figure


def heatmap_pairs_figure(
    images: NDArray,
    heatmaps: NDArray,
    titles: list[str] | None = None,
    columns: int = 6,
    opacity: float = 0.45,
):
    """Each image beside its heatmap overlay, e.g. misclassified images and where the model looked.

    Args:
        images: `(N, H, W, C)` uint8 images.
        heatmaps: `(N, H, W)` maps in [0, 1] (from `cnnviz.explain`).
        titles: one title per image (the overlay is titled "heatmap").
        columns: int, panels per row (even: pairs stay together).
    """
    panels, panel_titles = [], []
    for index, (image, heatmap) in enumerate(zip(images, heatmaps)):
        panels += [image, overlay(image, heatmap, opacity=opacity)]
        panel_titles += [titles[index] if titles else "", "heatmap"]
    return image_grid_figure(panels, panel_titles, columns=max(2, columns - columns % 2))


def prediction_grid_figure(
    images: NDArray,
    probabilities: NDArray,
    class_names: tuple[str, ...],
    labels: NDArray | None = None,
    top_k: int = 3,
    columns: int = 6,
):
    """The tutorial's grid: each test image with its top-k predictions.

    Titles of wrong predictions are red when `labels` are given.
    """
    titles, colors = [], []
    for index, row in enumerate(np.asarray(probabilities)):
        order = np.argsort(-row)[:top_k]
        lines = [f"{class_names[c]} {row[c]:.0%}" for c in order]
        if labels is not None:
            truth = int(labels[index])
            lines.insert(0, f"true: {class_names[truth]}")
            colors.append("#2e7d32" if order[0] == truth else "#c62828")
        titles.append("<br>".join(lines))
    figure = image_grid_figure(images, titles, columns=columns, title_colors=colors or None)
    rows = -(-len(titles) // max(1, min(columns, len(titles))))
    figure.update_layout(height=(230 if labels is not None else 200) * rows + 40)
    return figure


def feature_map_figure(
    maps: NDArray, layer_name: str = "", max_channels: int | None = None, columns: int | None = None
):
    """All channels of one layer's activations as a grid of small maps.

    Each channel is scaled to its own [0, 1]; hover names the channel;
    `max_channels` shows only the first ones (default: all).
    """
    go = _go()
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim != 3:
        raise ConfigError(f"feature maps must be (H, W, C), got shape {maps.shape}; pick a layer with a map.")
    channels = np.moveaxis(maps[..., :max_channels], -1, 0)
    low = channels.min(axis=(1, 2), keepdims=True)
    span = channels.max(axis=(1, 2), keepdims=True) - low
    scaled = np.where(span > 0, (channels - low) / np.where(span > 0, span, 1), 0.0)
    columns = columns or int(np.ceil(np.sqrt(len(scaled))))
    mosaic = tile(scaled, columns=columns, padding=1, fill=np.nan)
    index = tile(
        np.broadcast_to(np.arange(len(scaled), dtype=np.float32)[:, None, None], scaled.shape),
        columns=columns,
        padding=1,
        fill=np.nan,
    )
    figure = go.Figure(
        go.Heatmap(
            z=mosaic,
            customdata=index,
            colorscale="Viridis",
            showscale=False,
            hovertemplate="channel %{customdata}<br>activation %{z:.2f} (scaled)<extra></extra>",
        )
    )
    shown = f"{len(scaled)} of {maps.shape[-1]}" if maps.shape[-1] > len(scaled) else f"{len(scaled)}"
    figure.update_layout(
        title=f"{layer_name}: {shown} channels, {maps.shape[0]}x{maps.shape[1]} each",
        margin=_MARGIN,
        height=520,
    )
    figure.update_yaxes(autorange="reversed")
    _hide_axes(figure)
    return figure


def kernel_figure(kernels: NDArray, title: str = "", columns: int | None = None, per_channel: bool = False):
    """Convolution kernels from `cnnviz.kernel_images`: colour or diverging grid.

    Colour kernels (`(F, kh, kw, 3)`) show as images; averaged kernels
    (`(F, kh, kw)`) and per-channel kernels (`(F, C_in, kh, kw)`, a row per
    filter; pass `per_channel=True`) on a red-blue scale where white is a zero weight.
    """
    go = _go()
    kernels = np.asarray(kernels, dtype=np.float32)
    columns = columns or int(np.ceil(np.sqrt(len(kernels))))
    if kernels.ndim == 4 and kernels.shape[-1] == 3 and not per_channel:
        mosaic = tile(kernels, columns=columns, padding=1, fill=1.0)
        trace = go.Image(z=np.rint(mosaic * 255).astype(np.uint8), hoverinfo="skip")
    elif kernels.ndim == 3 or (kernels.ndim == 4 and per_channel):
        if kernels.ndim == 4:  # (F, C_in, kh, kw): one row per filter, one column per input channel
            filters, inputs = kernels.shape[:2]
            kernels = kernels.reshape(filters * inputs, *kernels.shape[2:])
            columns = inputs
        mosaic = tile(kernels, columns=columns, padding=1, fill=np.nan)
        trace = go.Heatmap(
            z=mosaic,
            colorscale="RdBu",
            zmin=0,
            zmax=1,
            showscale=False,
            hovertemplate="%{z:.2f}<extra></extra>",
        )
    else:
        raise ConfigError(
            f"kernels must be (F, kh, kw, 3), (F, kh, kw) or (F, C_in, kh, kw), got shape {kernels.shape}."
        )
    figure = go.Figure(trace)
    figure.update_layout(title=title or f"{len(kernels)} kernels", margin=_MARGIN, height=420)
    if not isinstance(trace, go.Image):
        figure.update_yaxes(autorange="reversed")
    _hide_axes(figure)
    return figure


def _cell_markers(counts: NDArray, class_names: tuple[str, ...], height: int):
    """One invisible marker per cell, carrying `[true, predicted, count]`: it hovers and takes the clicks."""
    go = _go()
    size = len(counts)
    # Markers must not overlap, or plotly gives a click to the last one drawn.
    marker_size = max(6, int(0.7 * (height - 120) / size))
    true_index, predicted_index = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    return go.Scatter(
        x=[class_names[p] for p in predicted_index.ravel()],
        y=[class_names[t] for t in true_index.ravel()],
        customdata=np.stack([true_index.ravel(), predicted_index.ravel(), counts.ravel()], axis=1),
        mode="markers",
        marker={"symbol": "square", "size": marker_size, "opacity": 0.0},
        hovertemplate="true %{y}, predicted %{x}: %{customdata[2]} images<extra></extra>",
        showlegend=False,
    )


def confusion_difference_figure(difference: NDArray, class_names, title: str = "After minus before"):
    """The change between two confusion matrices of the same test images: blue where counts grew, red where they
    fell (on the diagonal, blue is good; off it, red is)."""
    go = _go()
    difference = np.asarray(difference, dtype=np.int64)
    if difference.ndim != 2 or difference.shape[0] != difference.shape[1]:
        raise ConfigError(f"a confusion matrix must be square, got shape {difference.shape}.")
    names = list(class_names)
    limit = max(1, int(np.abs(difference).max()))
    figure = go.Figure(
        go.Heatmap(
            z=difference,
            x=names,
            y=names,
            zmin=-limit,
            zmax=limit,
            colorscale="RdBu",
            text=[[f"{value:+d}" if value else "0" for value in row] for row in difference],
            texttemplate="%{text}",
            hovertemplate="true %{y}, predicted %{x}: %{text}<extra></extra>",
        )
    )
    figure.update_yaxes(autorange="reversed", title="true")
    figure.update_xaxes(title="predicted")
    figure.update_layout(title=title, margin=_MARGIN, height=360)
    return figure


def confusion_matrix_figure(
    matrix: NDArray | Any, class_names: tuple[str, ...] | None = None, normalize: bool = False
):
    """An interactive confusion matrix (rows = true class, columns = predicted).

    Each cell also carries an invisible marker whose `customdata` is
    `[true_index, predicted_index, count]`, so a click or box selection in a
    UI maps back to the images of that cell.

    Args:
        matrix: a `(C, C)` count matrix or an `EvaluationResult`.
        class_names: the C names (taken from the result when it has them).
        normalize: colour by the share of each true class instead of counts.
    """
    from cnnviz.evaluation import EvaluationResult

    go = _go()
    if isinstance(matrix, EvaluationResult):
        class_names = class_names or matrix.class_names
        matrix = matrix.confusion_matrix
    counts = np.asarray(matrix, dtype=np.int64)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise ConfigError(f"a confusion matrix must be square, got shape {counts.shape}.")
    size = len(counts)
    class_names = tuple(class_names or (f"class_{i}" for i in range(size)))
    totals = counts.sum(axis=1, keepdims=True)
    shares = counts / np.where(totals > 0, totals, 1)
    values = shares if normalize else counts
    text = [
        [f"{counts[t, p]}" + (f"<br>{shares[t, p]:.0%}" if normalize else "") for p in range(size)]
        for t in range(size)
    ]
    figure = go.Figure(
        go.Heatmap(
            z=values,
            x=list(class_names),
            y=list(class_names),
            text=text,
            texttemplate="%{text}",
            colorscale="Blues",
            showscale=False,
            hoverinfo="skip",  # the marker trace below hovers and takes the clicks
        )
    )
    height = max(320, 60 * size + 120)
    figure.add_trace(_cell_markers(counts, class_names, height))
    figure.update_layout(
        xaxis_title="predicted class",
        yaxis_title="true class",
        xaxis_type="category",  # class names like "0".."9" are names, not numbers
        yaxis_type="category",
        yaxis_autorange="reversed",
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        height=height,
    )
    return figure


def probability_figure(top_k: list[dict], height: int = 230):
    """Horizontal bars of a prediction's top classes (`cnnviz.predict(...)[i]["top_k"]`), most probable on top."""
    go = _go()
    figure = go.Figure(
        go.Bar(
            x=[entry["probability"] for entry in top_k],
            y=[entry["class"] for entry in top_k],
            orientation="h",
            hovertemplate="%{y}: %{x:.1%}<extra></extra>",
        )
    )
    figure.update_layout(
        xaxis={"range": [0, 1], "title": "probability"},
        yaxis={"autorange": "reversed", "type": "category"},
        height=height,
        margin={"l": 0, "r": 0, "t": 10, "b": 0},
    )
    return figure


def class_balance_figure(class_names: tuple[str, ...], counts: NDArray, height: int = 320):
    """Training images per class as bars."""
    go = _go()
    figure = go.Figure(go.Bar(x=list(class_names), y=np.asarray(counts).tolist()))
    figure.update_layout(
        xaxis={"type": "category", "title": "class"},
        yaxis={"title": "training images"},
        height=height,
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
    )
    return figure


def per_class_figure(per_class: list[dict]):
    """Precision, recall and F1 per class as grouped bars."""
    go = _go()
    names = [row["class"] for row in per_class]
    figure = go.Figure(
        [
            go.Bar(name=metric, x=names, y=[row[metric] for row in per_class], texttemplate="%{y:.2f}")
            for metric in ("precision", "recall", "f1")
        ]
    )
    figure.update_layout(
        barmode="group",
        xaxis_type="category",
        yaxis_range=[0, 1.05],
        margin=_MARGIN,
        height=320,
        legend_orientation="h",
    )
    return figure


def weight_histogram_figure(histograms: list[dict], kinds: tuple[str, ...] = ("kernel", "bias")):
    """One small histogram per weight tensor (from `cnnviz.weight_histograms`)."""
    from plotly.subplots import make_subplots

    go = _go()
    chosen = [entry for entry in histograms if entry["kind"] in kinds]
    if not chosen:
        raise ConfigError(f"the model has no weights of kind {', '.join(kinds)}.")
    columns = 2
    rows = -(-len(chosen) // columns)
    figure = make_subplots(
        rows=rows,
        cols=columns,
        subplot_titles=[f"{e['name']} {e['shape']}" for e in chosen],
        vertical_spacing=0.4 / rows,
    )
    for index, entry in enumerate(chosen):
        centers = (entry["edges"][:-1] + entry["edges"][1:]) / 2
        figure.add_trace(
            go.Bar(x=centers, y=entry["counts"], marker_color="#1f77b4", showlegend=False),
            row=index // columns + 1,
            col=index % columns + 1,
        )
    figure.update_annotations(font_size=11)
    figure.update_layout(margin=_MARGIN, height=180 * rows + 60, bargap=0)
    return figure


def weight_change_figure(changes: list[dict], name: str | None = None, bins: int = 40):
    """What training moved (from `cnnviz.weight_changes`).

    Without `name`: the relative change of every tensor as bars. With `name`:
    that tensor's histograms before and after, overlaid.
    """
    go = _go()
    if name is None:
        finite = [c for c in changes if np.isfinite(c["relative_change"])]
        figure = go.Figure(
            go.Bar(
                x=[c["relative_change"] for c in finite],
                y=[c["name"] for c in finite],
                orientation="h",
                hovertemplate="%{y}: moved %{x:.1%} of its size<extra></extra>",
            )
        )
        figure.update_layout(
            xaxis_title="||after - before|| / ||before||",
            yaxis_autorange="reversed",
            margin=_MARGIN,
            height=max(300, 22 * len(finite) + 80),
        )
        return figure
    entry = next((c for c in changes if c["name"] == name), None)
    if entry is None:
        raise ConfigError(
            f"no weight named {name!r}; choose one of {', '.join(c['name'] for c in changes[:6])}..."
        )
    edges = np.histogram_bin_edges(np.concatenate([entry["before"], entry["after"]]), bins=bins)
    figure = go.Figure(
        [
            go.Histogram(
                x=entry["before"],
                xbins={"start": edges[0], "end": edges[-1], "size": edges[1] - edges[0]},
                name="before",
                opacity=0.6,
            ),
            go.Histogram(
                x=entry["after"],
                xbins={"start": edges[0], "end": edges[-1], "size": edges[1] - edges[0]},
                name="after",
                opacity=0.6,
            ),
        ]
    )
    figure.update_layout(barmode="overlay", title=name, margin=_MARGIN, height=320)
    return figure


def architecture_figure(rows: list[dict]):
    """The network as a chain of layers: height = spatial size, box size = channels.

    Args:
        rows: `cnnviz.describe_model(model)` (name, kind, output_shape, parameters).
    """
    go = _go()
    kept = [row for row in rows if len(row["output_shape"]) >= 2 and row["kind"] != "InputLayer"]
    if not kept:
        raise ConfigError("the model has no layers to draw.")
    x, y, sizes, texts, hovers = [], [], [], [], []
    largest = max(int(row["output_shape"][-1] or 1) for row in kept)
    for position, row in enumerate(kept):
        shape = tuple(row["output_shape"][1:])
        channels = int(shape[-1] or 1)
        side = int(shape[0]) if len(shape) == 3 and shape[0] else 1
        x.append(position)
        y.append(side)
        sizes.append(12 + 36 * (channels / largest) ** 0.5)
        texts.append(row["name"])
        hovers.append(f"{row['name']} ({row['kind']})<br>output {shape}<br>{row['parameters']:,} parameters")
    colours = {
        "Conv2D": "#0068c9",
        "MaxPooling2D": "#ff8700",
        "Dense": "#29b09d",
        "BatchNormalization": "#83c9ff",
    }
    figure = go.Figure(
        go.Scatter(
            x=x,
            y=y,
            mode="lines+markers+text",
            text=texts,
            textposition="top center",
            hovertext=hovers,
            hoverinfo="text",
            marker={
                "symbol": "square",
                "size": sizes,
                "color": [colours.get(row["kind"], "#a3a8b8") for row in kept],
            },
            line={"color": "#d5dae5"},
        )
    )
    # Powers of two, as the maps halve: plotly's own log ticks read "100, 5, 2, 10" (50 and 20 abbreviated).
    ticks = [2**power for power in range(max(y).bit_length())]
    figure.update_yaxes(
        type="log", title_text="map side (pixels)", tickvals=ticks, ticktext=[str(t) for t in ticks]
    )
    figure.update_xaxes(visible=False)
    figure.update_layout(margin=_MARGIN, height=300, showlegend=False)
    return figure


def training_curves_figure(epochs: list[dict], kept_epoch: int | None = None):
    """Loss and accuracy per epoch, training and validation side by side.

    Args:
        epochs: one dict per epoch with `epoch` and metrics such as `loss`,
            `accuracy`, `val_loss`, `val_accuracy` (as `cnnviz.train` events
            or `TrainResult.history` rows give them).
        kept_epoch: optional epoch whose weights the model kept
            (`TrainResult.kept_epoch`), marked on both plots.
    """
    from plotly.subplots import make_subplots

    go = _go()
    figure = make_subplots(rows=1, cols=2, subplot_titles=["loss", "accuracy"], horizontal_spacing=0.08)
    numbers = [row["epoch"] for row in epochs]
    styles = {"": ("training", "#0068c9", "solid"), "val_": ("validation", "#ff8700", "dash")}
    for prefix, (label, color, dash) in styles.items():
        for column, metric in ((1, "loss"), (2, "accuracy")):
            values = [row.get(f"{prefix}{metric}") for row in epochs]
            if all(value is None for value in values):
                continue
            figure.add_trace(
                go.Scatter(
                    x=numbers,
                    y=values,
                    name=label,
                    legendgroup=label,
                    showlegend=column == 1,
                    mode="lines+markers",
                    line={"color": color, "dash": dash},
                ),
                row=1,
                col=column,
            )
    if kept_epoch in numbers:
        figure.add_vline(
            x=kept_epoch, line={"color": "#21c354", "dash": "dot", "width": 2}, row="all", col="all"
        )
        figure.add_annotation(
            x=kept_epoch, y=0.03, yref="y2 domain", xref="x2", text="kept", showarrow=False,
            font={"color": "#178a3c"}, xanchor="left", yanchor="bottom", xshift=4,
        )  # fmt: skip
    figure.update_xaxes(title_text="epoch", dtick=1 if len(numbers) <= 20 else None)
    figure.update_yaxes(range=[0, 1.02], row=1, col=2)
    figure.update_layout(margin=_MARGIN, height=320, legend_orientation="h", legend_y=-0.25)
    return figure


def batch_loss_figure(batches: list[dict], epoch: int, height: int = 180):
    """The training loss batch by batch within one epoch (rows with `batch` and `loss`)."""
    go = _go()
    figure = go.Figure(
        go.Scatter(
            x=[row["batch"] for row in batches],
            y=[row["loss"] for row in batches],
            mode="lines",
            line={"color": "#0068c9"},
            hovertemplate="batch %{x}: loss %{y:.3f}<extra></extra>",
        )
    )
    figure.update_layout(
        xaxis_title=f"batch (epoch {epoch})",
        yaxis_title="loss",
        margin=_MARGIN,
        height=height,
        showlegend=False,
    )
    return figure


_LABEL_SPACING = 0.12  # points nearer than this (a share of the plot's side) share one label


def _spot_labels(ran: list[Any], spots: list[tuple[float, float]]) -> dict[int, str]:
    """Variants with the same budget and close accuracies sit on one spot: one label there names
    them all (best first), so names never run into each other. Returns index -> label."""
    groups: list[list[int]] = []
    for index, spot in enumerate(spots):
        near = next((g for g in groups if any(math.dist(spot, spots[j]) < _LABEL_SPACING for j in g)), None)
        if near is None:
            groups.append([index])
        else:
            near.append(index)
    labels = {}
    for group in groups:
        ranked = sorted(group, key=lambda j: -ran[j].accuracy)
        labels[ranked[0]] = ", ".join(ran[j].name for j in ranked)
    return labels


def comparison_figure(results: list[Any]):
    """Accuracy against training time, one point per variant (points on one spot
    share a label), beside each variant's validation accuracy per epoch.

    Args:
        results: `cnnviz.compare` `VariantResult`s (failed ones are left out).
    """
    from plotly.colors import qualitative
    from plotly.subplots import make_subplots

    go = _go()
    ran = [result for result in results if result.error is None and result.accuracy is not None]
    measured_on = ran[0].measured_on if ran else "validation"
    longest = max((result.train_seconds for result in ran), default=1.0)
    spots = [(result.train_seconds / (longest * 1.25), result.accuracy / 1.05) for result in ran]
    labels = _spot_labels(ran, spots)
    figure = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=[f"{measured_on} accuracy vs training time", "validation accuracy per epoch"],
        horizontal_spacing=0.1,
    )
    for index, result in enumerate(ran):
        color = qualitative.Plotly[index % len(qualitative.Plotly)]
        figure.add_trace(
            go.Scatter(
                x=[result.train_seconds],
                y=[result.accuracy],
                mode="markers+text" if index in labels else "markers",
                text=[labels.get(index, "")],
                # Beside the point, towards the middle: clear of the title above and of the axes.
                textposition="middle left" if spots[index][0] > 0.5 else "middle right",
                marker={"size": 14, "color": color},
                cliponaxis=False,  # a point at 100 % and its label stay whole
                name=result.name,
                legendgroup=result.name,
                hovertemplate=(
                    f"<b>{result.name}</b>: {result.description}<br>%{{y:.1%}} in %{{x:.0f}} s, "
                    f"{result.epochs} epochs, {result.parameters:,} parameters<extra></extra>"
                ),
            ),
            row=1,
            col=1,
        )
        curve = result.history.get("val_accuracy") or result.history.get("accuracy") or []
        figure.add_trace(
            go.Scatter(
                x=list(range(1, len(curve) + 1)),
                y=curve,
                mode="lines+markers",
                name=result.name,
                legendgroup=result.name,
                showlegend=False,
                line={"color": color},
            ),
            row=1,
            col=2,
        )
    figure.update_xaxes(title_text="training seconds", range=[0, longest * 1.25], row=1, col=1)
    figure.update_xaxes(title_text="epoch", row=1, col=2)
    # Accuracy on its whole 0-100 % scale: small gaps look small, and ticks never repeat.
    figure.update_yaxes(tickformat=".0%", range=[0, 1.05], row=1, col=1)
    figure.update_yaxes(tickformat=".0%", range=[0, 1.05], row=1, col=2)
    figure.update_layout(margin=_MARGIN, height=380, legend_orientation="h", legend_y=-0.2)
    return figure


def scoreboard_figure(board):
    """Faithfulness (insertion minus deletion AUC) against measured ms per image, one point per
    method and layer: up is more faithful, left is faster. Hollow points failed the sanity check;
    the recommended one is a star, chance (`random`) a grey cross.

    Args:
        board: a `cnnviz.Scoreboard`.
    """
    go = _go()
    figure = go.Figure()
    chosen = (board.recommended.get("method"), board.recommended.get("layer"))
    groups = (
        (
            "passes the sanity check",
            lambda row: row.method != "random" and row.passes_sanity,
            "circle",
            "#1f77b4",
        ),
        (
            "fails it: the map survives random weights",
            lambda row: row.method != "random" and not row.passes_sanity,
            "circle-open",
            "#d62728",
        ),
        ("chance: random maps", lambda row: row.method == "random", "x", "#7f7f7f"),
    )
    for name, member, symbol, color in groups:
        rows = [row for row in board.rows if member(row)]
        if not rows:
            continue
        figure.add_trace(
            go.Scatter(
                x=[max(row.ms_per_image, 0.01) for row in rows],
                y=[row.faithfulness for row in rows],
                mode="markers+text",
                text=[row.label for row in rows],
                # Neighbours' labels alternate above and below, so a cluster stays readable.
                textposition=[
                    "top center" if rank % 2 == 0 else "bottom center"
                    for rank in np.argsort(np.argsort([row.faithfulness for row in rows]))
                ],
                textfont_size=10,
                marker={
                    "size": [22 if (row.method, row.layer) == chosen else 11 for row in rows],
                    "symbol": ["star" if (row.method, row.layer) == chosen else symbol for row in rows],
                    "color": color,
                    "line": {"width": 2, "color": color},
                },
                cliponaxis=False,
                name=name,
                customdata=[[row.deletion_auc, row.insertion_auc, row.sanity_correlation] for row in rows],
                hovertemplate="<b>%{text}</b><br>insertion - deletion %{y:.3f}<br>deletion %{customdata[0]:.3f}, "
                "insertion %{customdata[1]:.3f}<br>sanity correlation %{customdata[2]:.2f}<br>"
                "%{x:.1f} ms per image<extra></extra>",
            )
        )
    figure.update_xaxes(type="log", title_text="ms per image (log scale; left is faster)")
    figure.update_yaxes(title_text="insertion - deletion AUC (up is more faithful)")
    figure.update_layout(
        margin={**_MARGIN, "t": 30}, height=430, legend_orientation="h", legend_y=-0.18, title=None
    )
    return figure


def causal_curves_figure(deletion: NDArray, insertion: NDArray, class_name: str = "the class"):
    """One image's deletion and insertion curves: the class probability as the map's most important
    pixels are removed (blurred away) or put back. A good map: deletion falls fast, insertion rises fast."""
    go = _go()
    deletion, insertion = np.asarray(deletion, float).ravel(), np.asarray(insertion, float).ravel()
    shares = np.linspace(0, 1, len(deletion))

    def area(curve):
        return float(((curve[:-1] + curve[1:]) / 2).mean())

    figure = go.Figure()
    for curve, name, color in (
        (deletion, f"deletion (area {area(deletion):.2f}, lower is better)", "#d62728"),
        (insertion, f"insertion (area {area(insertion):.2f}, higher is better)", "#2ca02c"),
    ):
        figure.add_trace(
            go.Scatter(
                x=shares,
                y=curve,
                mode="lines+markers",
                name=name,
                line={"color": color},
                fill="tozeroy",
                hovertemplate="%{x:.0%} of the pixels: %{y:.1%}<extra></extra>",
            )
        )
    figure.update_xaxes(tickformat=".0%", title_text="share of pixels changed, most important first")
    figure.update_yaxes(tickformat=".0%", range=[0, 1.02], title_text=f"probability of {class_name}")
    figure.update_layout(margin={**_MARGIN, "t": 20}, height=330, legend_orientation="h", legend_y=-0.25)
    return figure


def contrast_figure(image: NDArray, contrast, opacity: float = 0.5):
    """Why A and not B (`cnnviz.why_not`): the image, the map for A, the map for B and the contrast map,
    then the training images nearest to it of A and of B (when the contrast has them)."""
    names = contrast.class_names
    a, b = names[contrast.target], names[contrast.foil]
    panels = [
        image,
        overlay(image, contrast.target_map, opacity=opacity),
        overlay(image, contrast.foil_map, opacity=opacity),
        overlay(image, contrast.contrast_map, opacity=opacity),
    ]
    titles = [
        "the image",
        f"where it sees {a} ({contrast.probabilities[contrast.target]:.0%})",
        f"where it sees {b} ({contrast.probabilities[contrast.foil]:.0%})",
        f"brighter here: more {a}, less {b}",
    ]
    near = list(contrast.target_examples) + list(contrast.foil_examples)
    if near:
        columns = max(4, len(near))
        panels += [None] * (columns - 4)
        titles += [""] * (columns - 4)
        panels += near
        titles += [f"a {a} it resembles"] * len(contrast.target_examples)
        titles += [f"a {b} it resembles"] * len(contrast.foil_examples)
    else:
        columns = 4
    blank = np.full_like(_rgb(image), 255)
    figure = image_grid_figure(
        [blank if panel is None else panel for panel in panels], titles, columns=columns
    )
    figure.update_layout(height=230 * (1 + bool(near)) + 40)
    return figure


def save_png(figure_or_image: Any, path: str | os.PathLike, scale: float = 2.0) -> Path:
    """Writes a figure or an RGB / gray image array to a PNG file.

    Arrays are written with Pillow. Figures need the `kaleido` package and a
    Chrome/Chromium (plotly's static export); without them the error says so.
    """
    from PIL import Image

    path = Path(path)
    if isinstance(figure_or_image, np.ndarray):
        Image.fromarray(_rgb(figure_or_image)).save(path, format="PNG")
        return path
    try:
        figure_or_image.write_image(str(path), format="png", scale=scale)
    except (ImportError, ValueError, RuntimeError) as error:
        raise ConfigError(
            f"could not export the figure to PNG ({error}); install it with `pip install kaleido` "
            "and make sure Chrome or Chromium is installed."
        ) from error
    return path
