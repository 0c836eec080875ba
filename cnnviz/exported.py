"""Answers from an exported `.onnx` model with onnxruntime alone: no TensorFlow, no Keras.

`cnnviz export MODEL --format onnx` writes a model that gives the class probabilities and its own Grad-CAM
heatmap (see `cnnviz.export`). `OnnxClassifier` loads one in a fraction of the time TensorFlow takes to
import, and answers as `cnnviz.predict` and `cnnviz.explain` do:

>>> classifier = OnnxClassifier("assets/models/shapes.onnx")
>>> answer = classifier.predict(cnnviz.load_image("circle.png"))
>>> answer["class"], answer["heatmap"].shape
('circle', (64, 64))

This module imports numpy, Pillow (through `cnnviz.images`) and onnxruntime only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cnnviz.errors import ModelFileError


def session(path: str | os.PathLike):
    """An onnxruntime session on `path`, on the CPU, with onnxruntime's warnings off."""
    try:
        import onnxruntime
    except ImportError:
        raise ModelFileError(
            "answering from .onnx files needs onnxruntime; pip install onnxruntime."
        ) from None
    options = onnxruntime.SessionOptions()
    # onnxruntime infers the per-image heatmap inside the exported loop one pixel too small and warns on
    # every run; the declared outputs are right.
    options.log_severity_level = 3
    try:
        return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own kinds for missing or damaged files
        text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelFileError(f"{Path(path).name}: cannot load this ONNX model ({text[:200]}).") from None


class OnnxClassifier:
    """A classifier exported by `cnnviz export --format onnx`, run with onnxruntime.

    Attributes:
        class_names: the model's classes, from the file's metadata.
        input_shape: `(height, width, channels)`.
        heatmap_method: how the heatmap is made (e.g. "gradcam at act4"), from the metadata.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._session = session(self.path)
        metadata = self._session.get_modelmeta().custom_metadata_map
        outputs = {output.name for output in self._session.get_outputs()}
        if not {"class_names", "input_size"} <= set(metadata) or not {"probabilities", "heatmap"} <= outputs:
            raise ModelFileError(
                f"{self.path.name}: not exported by cnnviz (no class names, input size or heatmap output); "
                "export it with: cnnviz export MODEL.keras --format onnx --out model.onnx"
            )
        self.class_names = tuple(json.loads(metadata["class_names"]))
        self.input_shape = tuple(json.loads(metadata["input_size"]))
        self.heatmap_method = metadata.get("heatmap", "gradcam")
        self._names = [output.name for output in self._session.get_outputs()]

    def run(self, images) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """Probabilities `(N, classes)` and heatmaps `(N, height, width)` at the model's size."""
        from cnnviz.images import prepare_batch

        batch = prepare_batch(images, self.input_shape).astype(np.float32)
        outputs = dict(zip(self._names, self._session.run(None, {"images": batch})))
        return outputs["probabilities"], outputs["heatmap"]

    def predict(self, image, top_k: int = 5) -> dict[str, Any]:
        """One image's answer, as `cnnviz.predict` gives it, plus `"heatmap"` at the image's own size.

        Args:
            image: one image as `cnnviz.load_image` returns it, of any size.
            top_k: how many classes to list.
        """
        from cnnviz.render import normalize_maps, resize_maps

        probabilities, heatmaps = self.run([image])
        row = probabilities[0]
        order = np.argsort(-row)[: max(1, min(int(top_k), len(row)))]
        ranked = [{"class": self.class_names[index], "probability": float(row[index])} for index in order]
        size = tuple(np.asarray(image).shape[:2])
        heatmap = (
            heatmaps[0] if size == heatmaps.shape[1:] else normalize_maps(resize_maps(heatmaps, size))[0]
        )
        return {
            "class": ranked[0]["class"],
            "probability": ranked[0]["probability"],
            "top_k": ranked,
            "input_size": list(self.input_shape[:2]),
            "heatmap": heatmap,
        }
