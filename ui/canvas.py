"""A drawing canvas (white ink on black, like MNIST) as a small Streamlit v2 component.

The drawing goes back to Python as a PNG data URL after every stroke and then
through `cnnviz.load_image`, like any other image.
"""

from __future__ import annotations

import base64

import streamlit as st

_HTML = """
<div class="cnnviz-canvas">
  <canvas width="280" height="280"></canvas>
  <button type="button">Clear</button>
</div>
"""

_CSS = """
.cnnviz-canvas { display: flex; flex-direction: column; gap: 0.5rem; align-items: flex-start; }
canvas { background: #000; border-radius: 0.5rem; touch-action: none; cursor: crosshair; }
button {
  border: 1px solid var(--st-border-color, #d5dae5); border-radius: 0.5rem; padding: 0.25rem 0.75rem;
  background: var(--st-background-color, #fff); color: var(--st-text-color, #31333f); cursor: pointer;
}
"""

_JS = """
export default function (component) {
  const { parentElement, setStateValue } = component;
  const canvas = parentElement.querySelector("canvas");
  if (canvas.dataset.ready) return;  // called again on every rerun: set up once
  canvas.dataset.ready = "1";
  const context = canvas.getContext("2d");
  const clear = () => { context.fillStyle = "#000"; context.fillRect(0, 0, canvas.width, canvas.height); };
  clear();
  context.strokeStyle = "#fff";
  context.lineWidth = 22;
  context.lineCap = "round";
  context.lineJoin = "round";
  let drawing = false;
  const point = (event) => {
    const box = canvas.getBoundingClientRect();
    return [(event.clientX - box.left) * canvas.width / box.width, (event.clientY - box.top) * canvas.height / box.height];
  };
  canvas.addEventListener("pointerdown", (event) => {
    drawing = true;
    canvas.setPointerCapture(event.pointerId);
    const [x, y] = point(event);
    context.beginPath();
    context.moveTo(x, y);
    context.lineTo(x, y);
    context.stroke();
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!drawing) return;
    const [x, y] = point(event);
    context.lineTo(x, y);
    context.stroke();
  });
  const finish = () => {
    if (!drawing) return;
    drawing = false;
    setStateValue("image", canvas.toDataURL("image/png"));
  };
  canvas.addEventListener("pointerup", finish);
  canvas.addEventListener("pointerleave", finish);
  parentElement.querySelector("button").addEventListener("click", () => {
    clear();
    setStateValue("image", null);
  });
}
"""

_canvas = st.components.v2.component("cnnviz_drawing_canvas", html=_HTML, css=_CSS, js=_JS)


def drawing_canvas(key: str) -> bytes | None:
    """Draws the canvas; returns the drawing as PNG bytes, or None while it is empty."""
    result = _canvas(key=key, default={"image": None}, on_image_change=lambda: None)
    data_url = getattr(result, "image", None)
    if not data_url or not str(data_url).startswith("data:image/png;base64,"):
        return None
    return base64.b64decode(str(data_url).split(",", 1)[1])
