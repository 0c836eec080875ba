"""A model card: one self-contained HTML file about a trained model, that opens offline.

It holds the data summary, the design and its parameters, the training curves and provenance, the test
metrics, the confusion matrix, the most confident mistakes with their heatmaps, sample heatmaps and the
settings link. Figures are plotly (its JavaScript inlined once, in the head), images are PNGs inlined as data URLs:
nothing is fetched when the file is opened. `cnnviz.runs.model_card` gathers what it shows; this module
only renders.
"""

from __future__ import annotations

import base64
import html
import io
import json
from typing import Any

import numpy as np

from cnnviz.render import overlay


def _png(image: np.ndarray) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image).squeeze() if np.asarray(image).shape[-1] == 1 else image).save(
        buffer, format="PNG"
    )
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _figure(figure) -> str:
    return figure.to_html(full_html=False, include_plotlyjs=False, default_width="100%")


def _table(rows: list[dict], columns: list[str]) -> str:
    head = "".join(f"<th>{html.escape(column)}</th>" for column in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(row.get(column, '')))}</td>" for column in columns) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _gallery(items: list[tuple[np.ndarray, np.ndarray, str]]) -> str:
    cells = "".join(
        f'<figure><img src="{_png(image)}" alt="image"><img src="{_png(overlay(image, heatmap))}" '
        f'alt="Grad-CAM heatmap"><figcaption>{html.escape(caption)}</figcaption></figure>'
        for image, heatmap, caption in items
    )
    return f'<div class="gallery">{cells}</div>'


STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2rem auto; color: #222; line-height: 1.45; }
h1 { margin-bottom: 0.2rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #ddd; padding-bottom: 0.3rem; }
.muted { color: #666; } table { border-collapse: collapse; margin: 0.6rem 0; font-size: 0.92rem; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.6rem; text-align: left; } th { background: #f4f4f4; }
.metrics { display: flex; gap: 2.5rem; } .metrics div { font-size: 2rem; font-weight: 600; }
.metrics span { display: block; font-size: 0.85rem; font-weight: 400; color: #666; }
.gallery { display: flex; flex-wrap: wrap; gap: 1rem; }
.gallery figure { margin: 0; width: 220px; } .gallery img { width: 104px; image-rendering: pixelated; margin-right: 4px; }
figcaption { font-size: 0.85rem; color: #444; } pre { background: #f6f6f6; padding: 0.6rem; overflow-x: auto; }
"""


def render_card(
    *,
    title: str,
    class_names: tuple[str, ...],
    data_summary: str,
    layers: list[dict[str, Any]],
    parameters: int,
    provenance: dict[str, Any],
    result,
    mistakes: list[tuple[np.ndarray, np.ndarray, str]],
    samples: list[tuple[np.ndarray, np.ndarray, str]],
    settings_link: str | None = None,
    created: str = "",
) -> str:
    """The card's HTML (one string, no external resource).

    Args:
        title: the model's name.
        class_names: its classes.
        data_summary: the test data, one line (`Dataset.summary()`).
        layers: `cnnviz.describe_model(model)`.
        parameters: the model's parameter count.
        provenance: the model's `training` metadata (may be empty).
        result: the `EvaluationResult` on the test split.
        mistakes: (image, heatmap, caption) of the most confident mistakes.
        samples: (image, heatmap, caption), one or two per class.
        settings_link: the studio link that reproduces the training settings, if known.
        created: when the card was made.
    """
    from plotly.offline import get_plotlyjs

    from cnnviz import plotting

    figures = []
    history = provenance.get("history") or {}
    if history:
        epochs = [
            {
                "epoch": index + 1,
                **{name: values[index] for name, values in history.items() if index < len(values)},
            }
            for index in range(max(len(values) for values in history.values()))
        ]
        kept = (provenance.get("outcome") or {}).get("kept_epoch")
        figures.append(("curves", plotting.training_curves_figure(epochs, kept)))
    figures.append(("confusion", plotting.confusion_matrix_figure(result)))
    figures.append(("per_class", plotting.per_class_figure(result.per_class)))
    rendered = {name: _figure(figure) for name, figure in figures}

    mistakes_count = int(result.n - np.trace(result.confusion_matrix))
    shown_provenance = {key: value for key, value in provenance.items() if key != "history"}
    link = (
        f'<p><a href="{html.escape(settings_link)}">Open these settings in the studio</a></p>'
        if settings_link
        else '<p class="muted">No studio link recorded: the settings are in the provenance above.</p>'
    )
    curves = rendered.get("curves") or '<p class="muted">This model file records no training curves.</p>'
    layer_rows = [
        {
            "layer": row["name"],
            "kind": row["kind"],
            "output": "x".join(str(side) for side in row["output_shape"] if side is not None),
            "parameters": f"{row['parameters']:,}",
        }
        for row in layers
    ]
    per_class = [
        {
            "class": row["class"],
            "precision": f"{row['precision']:.3f}",
            "recall": f"{row['recall']:.3f}",
            "f1": f"{row['f1']:.3f}",
            "images": row["support"],
        }
        for row in result.per_class
    ]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Model card: {html.escape(title)}</title>
<style>{STYLE}</style><script>{get_plotlyjs()}</script></head><body>
<h1>Model card: {html.escape(title)}</h1>
<p class="muted">{len(class_names)} classes: {html.escape(", ".join(class_names))} · made by cnnviz {html.escape(created)}</p>
<h2>Data</h2><p>{html.escape(data_summary)}</p>
<h2>Test metrics</h2>
<div class="metrics"><div>{result.accuracy:.1%}<span>test accuracy</span></div>
<div>{result.n:,}<span>test images, never trained on</span></div><div>{mistakes_count:,}<span>mistakes</span></div></div>
{_table(per_class, ["class", "precision", "recall", "f1", "images"])}
{rendered["per_class"]}
<h2>Confusion matrix</h2><p class="muted">Rows: the true class; columns: what the model said.</p>
{rendered["confusion"]}
<h2>Most confident mistakes, with where the model looked</h2>
{_gallery(mistakes) if mistakes else "<p>No mistakes on the test images.</p>"}
<h2>Sample heatmaps (Grad-CAM)</h2>{_gallery(samples)}
<h2>Training</h2>{curves}
<h3>Provenance</h3><pre>{html.escape(json.dumps(shown_provenance, indent=1, default=str))}</pre>
{link}
<h2>Design</h2><p>{parameters:,} parameters.</p>
{_table(layer_rows, ["layer", "kind", "output", "parameters"])}
</body></html>
"""
