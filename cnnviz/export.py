"""Export a classifier that explains itself: ONNX, TFLite (LiteRT) or SavedModel, with its Grad-CAM inside.

The exported model takes raw images, `(N, height, width, channels)` float32 in 0..255 at the model's size
(cast uint8 images with `np.float32(images)`), and gives two named outputs:

- `probabilities`, `(N, classes)`;
- `heatmap`, `(N, height, width)` in [0, 1]: Grad-CAM for the top class at the default CAM layer,
  upsampled and normalized as `cnnviz.explain` does it.

The Grad-CAM gradient is traced into the graph (`tf.GradientTape`), once per image (`tf.map_fn`): a batch
gradient through global average pooling converts to an ONNX Reshape that fails at run time with a dynamic
batch size, a per-image loop converts to an ONNX `Loop` that runs any batch.

Every export is validated as it is written: the file is loaded back with its own runtime (onnxruntime,
LiteRT, TensorFlow) and run on the images given; it is kept only if its top-1 class agrees with Keras on at
least `MIN_AGREEMENT` of them and its heatmap is within `MAX_HEATMAP_DIFF` of `cnnviz.explain`'s.

The converters are optional: `pip install "cnnviz[export]"` (tf2onnx, onnx, onnxruntime, ai-edge-litert).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from cnnviz.errors import CnnvizError, ConfigError

FORMATS = ("onnx", "tflite", "savedmodel")
SUFFIXES = {"onnx": ".onnx", "tflite": ".tflite", "savedmodel": ""}
#: The least top-1 agreement with Keras an export must reach to be kept.
MIN_AGREEMENT = 0.99
#: The largest heatmap difference from `cnnviz.explain` an export may show.
MAX_HEATMAP_DIFF = 0.02
ONNX_OPSET = 17
INSTALL = 'pip install "cnnviz[export]"'


class ExportError(CnnvizError, ValueError):
    """A model could not be exported, or not faithfully."""


@dataclasses.dataclass
class ExportReport:
    """What an export wrote and how closely it agrees with the Keras model.

    Attributes:
        path: the file (or folder, for a SavedModel) written.
        format: one of `FORMATS`.
        images: how many images it was validated on.
        agreement: the share of them whose top-1 class is Keras'.
        max_heatmap_diff: the largest |difference| from `cnnviz.explain`'s Grad-CAM, or None when the
            export holds no heatmap.
        heatmap_note: why there is no heatmap, when there is none.
        seconds: time to convert and validate.
    """

    path: Path
    format: str
    images: int
    agreement: float
    max_heatmap_diff: float | None
    heatmap_note: str | None
    seconds: float

    def summary(self) -> str:
        heatmap = (
            f"heatmap max |diff| {self.max_heatmap_diff:.2g}"
            if self.max_heatmap_diff is not None
            else f"no heatmap ({self.heatmap_note})"
        )
        return (
            f"{self.path} ({self.format}): top-1 agrees with Keras on {self.agreement:.1%} of "
            f"{self.images} images, {heatmap}"
        )

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "path": str(self.path)}


def export(model, path: str | os.PathLike, format: str = "onnx", images=None) -> ExportReport:
    """Writes `model` in `format` with its Grad-CAM heatmap, and validates what was written.

    Args:
        model: a Keras classifier with a fixed input size (every cnnviz model).
        path: the file to write (`.onnx`, `.tflite`), or the folder for `"savedmodel"`.
        format: one of `FORMATS`. Defaults to `"onnx"`.
        images: the images to validate on, `(N, H, W, C)` at the model's size or a list of images of any
            size (resized as `cnnviz.predict` does); e.g. the test split. Required.

    Returns:
        An `ExportReport`.

    Raises:
        ExportError: an unknown format, a missing converter (with how to install it), a model the converter
            cannot handle (said in one line), or an export that does not agree with Keras (nothing is kept).
        ConfigError: a model that takes any input size, or no images to validate on.
    """
    from cnnviz.introspect import input_shape_of

    if format not in FORMATS:
        raise ExportError(f"format must be one of {', '.join(FORMATS)}, got {format!r}.")
    shape = input_shape_of(model)
    if len(shape) != 3 or None in shape:
        raise ConfigError(
            f"export needs a fixed input size, and this model takes {shape}; rebuild it with keras.Input((h, w, c))."
        )
    path = Path(path)
    if SUFFIXES[format] and path.suffix != SUFFIXES[format]:
        raise ExportError(f"{path}: give a file name ending in {SUFFIXES[format]} for the {format} export.")
    batch = _validation_batch(model, images, shape)
    started = time.perf_counter()
    graph = _Graph(model)
    workdir = Path(
        tempfile.mkdtemp(prefix=".cnnviz-export-", dir=path.parent if path.parent.exists() else None)
    )
    try:
        written = workdir / (path.name or "model")
        with contextlib.redirect_stdout(io.StringIO()):  # the converters print their progress
            note = {"onnx": _write_onnx, "tflite": _write_tflite, "savedmodel": _write_savedmodel}[format](
                graph, written
            )
        run = {"onnx": _run_onnx, "tflite": _run_tflite, "savedmodel": _run_savedmodel}[format](written)
        agreement, difference = _compare(model, batch, run, graph.has_heatmap and note is None)
        if agreement < MIN_AGREEMENT or (difference is not None and difference > MAX_HEATMAP_DIFF):
            shown = "none" if difference is None else f"{difference:.3g}"
            raise ExportError(
                f"the {format} export does not agree with the Keras model (top-1 {agreement:.1%}, at least "
                f"{MIN_AGREEMENT:.0%} needed; heatmap max |diff| {shown}, at most {MAX_HEATMAP_DIFF} allowed); "
                "nothing was written."
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            shutil.rmtree(path)
        os.replace(written, path)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return ExportReport(
        path=path,
        format=format,
        images=len(batch),
        agreement=agreement,
        max_heatmap_diff=difference,
        heatmap_note=note or (None if graph.has_heatmap else graph.no_heatmap),
        seconds=time.perf_counter() - started,
    )


def _validation_batch(model, images, shape) -> NDArray[np.float32]:
    from cnnviz.images import prepare_batch

    if images is None or len(images) == 0:
        raise ConfigError("give images to validate the export on (e.g. the test split).")
    if isinstance(images, np.ndarray) and images.ndim == 4 and images.shape[1:] == shape:
        return images.astype(np.float32)
    return prepare_batch(images, shape).astype(np.float32)


def _compare(model, batch, run, with_heatmap: bool) -> tuple[float, float | None]:
    """Top-1 agreement and the largest heatmap difference between `run` (the export) and Keras."""
    from cnnviz.evaluation import predict_probabilities
    from cnnviz.explanations import explain

    agree, difference = 0, 0.0
    for start in range(0, len(batch), 64):
        chunk = batch[start : start + 64]
        probabilities, heatmap = run(chunk)
        expected = predict_probabilities(model, chunk)
        agree += int((probabilities.argmax(axis=1) == expected.argmax(axis=1)).sum())
        if with_heatmap:
            difference = max(difference, float(np.abs(heatmap - explain(model, chunk)).max()))
    return agree / len(batch), (difference if with_heatmap else None)


class _Graph:
    """The TensorFlow function that is exported: probabilities and Grad-CAM for a batch of raw images."""

    def __init__(self, model):
        import tensorflow as tf

        from cnnviz import introspect
        from cnnviz.saving import class_names_of

        self.model = model
        self.shape = introspect.input_shape_of(model)
        self.class_names = list(class_names_of(model))
        try:
            self.layer = introspect.default_cam_layer(model)
            self.no_heatmap = None
        except ConfigError as error:
            self.layer, self.no_heatmap = None, str(error).split(";")[0]
        self.has_heatmap = self.layer is not None
        paths = (self.layer,) if self.layer else ()
        self.module = tf.Module()
        self.module.tap = introspect.probe(model, paths).tap_model
        height, width, channels = self.shape
        classes = len(self.class_names)
        tap = self.module.tap

        def scores_of(outputs):
            return outputs[-1] if isinstance(outputs, (list, tuple)) else outputs

        def one(image):
            images = image[None]
            if not self.has_heatmap:
                return tf.nn.softmax(scores_of(tap(images, training=False)))[0], tf.zeros((height, width))
            with tf.GradientTape() as tape:
                activations, scores = tap(images, training=False)
                top = tf.one_hot(tf.argmax(scores, axis=1), classes, dtype=scores.dtype)
                score = tf.reduce_sum(scores * tf.stop_gradient(top))
            gradients = tape.gradient(score, activations)
            weights = tf.reduce_mean(gradients, axis=[1, 2])  # Grad-CAM
            cam = tf.nn.relu(tf.einsum("nhwc,nc->nhw", activations, weights))
            # Half-pixel bilinear, no antialiasing: what cnnviz.render.resize_maps does.
            cam = tf.image.resize(cam[..., None], (height, width), "bilinear")[..., 0]
            peak = tf.reduce_max(cam, axis=[1, 2], keepdims=True)
            cam = cam / tf.where(peak > 0, peak, tf.ones_like(peak))
            return tf.nn.softmax(scores)[0], cam[0]

        signature = tf.TensorSpec((None, height, width, channels), tf.float32, name="images")

        @tf.function(input_signature=[signature], autograph=False)
        def serve(images):
            probabilities, heatmap = tf.map_fn(
                one,
                images,
                fn_output_signature=(
                    tf.TensorSpec((classes,), tf.float32),
                    tf.TensorSpec((height, width), tf.float32),
                ),
            )
            return {"probabilities": probabilities, "heatmap": heatmap}

        self.module.serve = serve

    def metadata(self) -> dict[str, str]:
        from cnnviz import __version__

        return {
            "class_names": json.dumps(self.class_names),
            "input_size": json.dumps(list(self.shape)),
            "input": "images: float32 (N, height, width, channels), raw pixels 0..255",
            "heatmap": f"gradcam at {self.layer}" if self.layer else f"none ({self.no_heatmap})",
            "producer": f"cnnviz {__version__}",
        }


def _converter(module: str, package: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ExportError(f"exporting needs {package}, which is not installed; {INSTALL}.") from None


def _write_onnx(graph: _Graph, path: Path) -> str | None:
    tf2onnx = _converter("tf2onnx", "tf2onnx")
    onnx = _converter("onnx", "onnx")
    try:
        proto, _ = tf2onnx.convert.from_function(
            graph.module.serve, input_signature=graph.module.serve.input_signature, opset=ONNX_OPSET
        )
    except Exception as error:  # tf2onnx raises many kinds for layers it does not know
        raise ExportError(f"tf2onnx cannot convert this model ({_first_line(error)}).") from None
    _declare_shapes(proto, graph)
    for key, value in graph.metadata().items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save_model(proto, str(path))
    return None


def _declare_shapes(proto, graph: _Graph) -> None:
    """The outputs' shapes as they are, and no inferred inner shapes.

    tf2onnx infers the per-image heatmap inside the loop as one pixel smaller than it is (27x27 for a
    28x28 model); onnxruntime then warns on every run. The outputs are declared here; the loop body's
    shapes are left to onnxruntime.
    """
    height, width, _ = graph.shape
    wanted = {"probabilities": ["N", len(graph.class_names)], "heatmap": ["N", height, width]}
    for output in proto.graph.output:
        dims = output.type.tensor_type.shape.dim
        for dim, value in zip(dims, wanted[output.name]):
            if isinstance(value, str):
                dim.dim_param = value
            else:
                dim.dim_value = value
    graphs = [proto.graph]
    while graphs:
        current = graphs.pop()
        if current is not proto.graph:
            for output in current.output:
                output.type.tensor_type.ClearField("shape")
        del current.value_info[:]
        for node in current.node:
            graphs += [attribute.g for attribute in node.attribute if attribute.HasField("g")]


def _run_onnx(path: Path):
    from cnnviz.exported import session

    session = session(path)
    names = [output.name for output in session.get_outputs()]

    def run(batch):
        outputs = dict(zip(names, session.run(None, {"images": batch})))
        return outputs["probabilities"], outputs["heatmap"]

    return run


def _write_tflite(graph: _Graph, path: Path) -> str | None:
    import tensorflow as tf

    try:
        blob = tf.lite.TFLiteConverter.from_keras_model(graph.model).convert()
    except Exception as error:
        raise ExportError(f"the TFLite converter cannot convert this model ({_first_line(error)}).") from None
    path.write_bytes(blob)
    # Converted with its Grad-CAM (the same function as the ONNX export), LiteRT 2.3 reads the gradient
    # graph's weights as uninitialized: NaN probabilities and heatmaps. So this export holds the class only.
    return "TFLite holds the probabilities only: LiteRT runs the converted Grad-CAM graph with NaN weights"


def _tflite_interpreter(path: Path):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise ExportError(f"validating a TFLite export needs LiteRT (ai-edge-litert); {INSTALL}.") from None
    interpreter = Interpreter(model_path=str(path))
    return interpreter


def _run_tflite(path: Path):
    interpreter = _tflite_interpreter(path)
    runner = interpreter.get_signature_runner()

    (name,) = interpreter.get_signature_list()["serving_default"]["inputs"]

    def run(batch):
        probabilities = []
        for image in batch:  # the converted Keras model takes one image per call
            (output,) = runner(**{name: image[None]}).values()
            probabilities.append(output[0])
        return np.stack(probabilities), None

    return run


def _write_savedmodel(graph: _Graph, path: Path) -> str | None:
    import tensorflow as tf

    graph.module.metadata = {
        key: tf.Variable(value, trainable=False) for key, value in graph.metadata().items()
    }
    tf.saved_model.save(graph.module, str(path), signatures={"serving_default": graph.module.serve})
    return None


def _run_savedmodel(path: Path):
    import tensorflow as tf

    signature = tf.saved_model.load(str(path)).signatures["serving_default"]

    def run(batch):
        outputs = signature(images=tf.constant(batch))
        return outputs["probabilities"].numpy(), outputs["heatmap"].numpy()

    return run


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:200]
