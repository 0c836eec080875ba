"""cnnviz.export and cnnviz.exported: models that take their heatmap with them, checked by their own runtimes."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

import cnnviz
from cnnviz.cli import main
from cnnviz.export import ExportError, export

from .conftest import run_in_a_fresh_python

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "assets" / "models"


@pytest.fixture(scope="module")
def shapes():
    model = cnnviz.load_model(MODELS / "shapes.keras")
    return model, cnnviz.load_dataset("shapes").test.images[:96]


def test_an_onnx_export_answers_like_keras_with_its_own_grad_cam_at_any_batch_size(shapes, tmp_path):
    import onnxruntime

    model, images = shapes
    report = export(model, tmp_path / "shapes.onnx", "onnx", images)
    assert report.images == 96 and report.agreement >= 0.99 and report.max_heatmap_diff <= 0.02
    # Checked again here, independently of the report: onnxruntime on the file, against Keras and explain.
    session = onnxruntime.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    assert [item.name for item in session.get_inputs()] == ["images"]
    metadata = session.get_modelmeta().custom_metadata_map
    assert json.loads(metadata["class_names"]) == list(cnnviz.class_names_of(model))
    assert json.loads(metadata["input_size"]) == [64, 64, 3]
    for count in (1, 7, 96):
        probabilities, heatmap = session.run(
            ["probabilities", "heatmap"], {"images": images[:count].astype("float32")}
        )
        assert probabilities.shape == (count, 4) and heatmap.shape == (count, 64, 64)
        np.testing.assert_allclose(
            probabilities, cnnviz.predict_probabilities(model, images[:count]), atol=1e-5
        )
        np.testing.assert_allclose(heatmap, cnnviz.explain(model, images[:count]), atol=1e-4)
        assert heatmap.min() >= 0 and np.allclose(heatmap.max(axis=(1, 2)), 1.0)


def test_a_savedmodel_export_holds_both_outputs_and_a_tflite_one_the_class_and_says_why_not_the_heatmap(
    shapes, tmp_path
):
    import tensorflow as tf

    model, images = shapes
    saved = export(model, tmp_path / "saved", "savedmodel", images)
    outputs = tf.saved_model.load(str(saved.path)).signatures["serving_default"](
        images=tf.constant(images[:5], tf.float32)
    )
    np.testing.assert_allclose(outputs["heatmap"].numpy(), cnnviz.explain(model, images[:5]), atol=1e-4)
    lite = export(model, tmp_path / "shapes.tflite", "tflite", images)
    assert (
        lite.agreement >= 0.99 and lite.max_heatmap_diff is None and "probabilities only" in lite.heatmap_note
    )
    assert (tmp_path / "shapes.tflite").stat().st_size > 10_000


def test_a_transfer_model_with_a_nested_backbone_exports_with_its_heatmap(tmp_path):
    config = cnnviz.preset_config("transfer_mobilenet_v2", (96, 96, 3), 3).replace(backbone_weights=None)
    model = cnnviz.build_model(config)
    images = np.random.default_rng(0).integers(0, 255, (12, 96, 96, 3), dtype=np.uint8)
    report = export(model, tmp_path / "transfer.onnx", "onnx", images)
    assert report.agreement >= 0.99 and report.max_heatmap_diff <= 0.02


def test_an_export_that_does_not_agree_with_keras_is_refused_and_nothing_is_written(
    shapes, tmp_path, monkeypatch
):
    from cnnviz import export as export_module

    model, images = shapes
    monkeypatch.setattr(export_module, "MAX_HEATMAP_DIFF", -1.0)  # no export can pass this
    with pytest.raises(ExportError, match="does not agree with the Keras model"):
        export(model, tmp_path / "shapes.onnx", "onnx", images)
    assert list(tmp_path.iterdir()) == []


def test_exports_it_cannot_make_faithfully_say_why_in_one_line(shapes, tmp_path, monkeypatch):
    from .test_reliability import _any_size_model

    model, images = shapes
    with pytest.raises(cnnviz.ConfigError, match="export needs a fixed input size"):
        export(_any_size_model(), tmp_path / "any.onnx", "onnx", images)
    with pytest.raises(ExportError, match="must end in|ending in .onnx"):
        export(model, tmp_path / "shapes.txt", "onnx", images)
    with pytest.raises(ExportError, match="format must be one of onnx, tflite, savedmodel"):
        export(model, tmp_path / "shapes.onnx", "coreml", images)
    monkeypatch.setitem(sys.modules, "tf2onnx", None)  # as if not installed
    with pytest.raises(ExportError, match=r'pip install "cnnviz\[export\]"'):
        export(model, tmp_path / "shapes.onnx", "onnx", images)


def test_cnnviz_export_validates_on_the_models_own_test_split_and_prints_the_agreement(tmp_path, capsys):
    out = tmp_path / "shapes.onnx"
    assert (
        main(["export", str(MODELS / "shapes.keras"), "--format", "onnx", "--out", str(out), "--json"]) == 0
    )
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["images"] == len(cnnviz.load_dataset("shapes").test)  # the recorded source's test split
    assert report["agreement"] >= 0.99 and report["max_heatmap_diff"] <= 0.02 and out.exists()
    assert (
        main(["export", str(MODELS / "shapes.keras"), "--format", "onnx", "--out", str(tmp_path / "x.txt")])
        == 2
    )
    assert "ending in .onnx" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["shapes", "digits"])
def test_the_shipped_onnx_files_match_their_keras_models(name):
    from cnnviz.exported import OnnxClassifier

    model = cnnviz.load_model(MODELS / f"{name}.keras")
    classifier = OnnxClassifier(MODELS / f"{name}.onnx")
    images = cnnviz.load_dataset(name).test.images
    probabilities, heatmaps = classifier.run(images)
    agreement = np.mean(
        probabilities.argmax(axis=1) == cnnviz.predict_probabilities(model, images).argmax(axis=1)
    )
    assert agreement >= 0.99, "re-export: README 'Take your model with you'"
    assert np.abs(heatmaps[:64] - cnnviz.explain(model, images[:64])).max() <= 0.02
    assert classifier.class_names == cnnviz.class_names_of(model)


def test_an_onnx_answer_for_a_photo_of_any_size_equals_the_keras_one():
    from cnnviz.exported import OnnxClassifier

    model = cnnviz.load_model(MODELS / "shapes.keras")
    image = cnnviz.load_image(ROOT / "assets" / "samples" / "shape_circle.png")
    big = np.kron(image, np.ones((3, 2, 1), dtype=np.uint8))  # 192x128, resized to the model as predict does
    answer = OnnxClassifier(MODELS / "shapes.onnx").predict(big, top_k=3)
    expected = cnnviz.predict(model, big, top_k=3)[0]
    assert answer["class"] == expected["class"]
    assert [entry["class"] for entry in answer["top_k"]] == [entry["class"] for entry in expected["top_k"]]
    assert answer["heatmap"].shape == (192, 128)
    np.testing.assert_allclose(answer["heatmap"], cnnviz.explain(model, big)[0], atol=1e-3)


def test_answering_from_onnx_imports_neither_tensorflow_nor_keras():
    run_in_a_fresh_python(
        f"""
import sys
from cnnviz.exported import OnnxClassifier
from cnnviz.images import load_image
answer = OnnxClassifier({str(MODELS / "shapes.onnx")!r}).predict(load_image({str(ROOT / "assets/samples/shape_circle.png")!r}))
assert answer["class"] == "circle", answer["class"]
assert "tensorflow" not in sys.modules and "keras" not in sys.modules, "TensorFlow was imported"
"""
    )


def test_a_file_that_is_not_a_cnnviz_onnx_export_gets_a_clear_message(tmp_path):
    from cnnviz.exported import OnnxClassifier

    (tmp_path / "junk.onnx").write_bytes(b"not onnx")
    with pytest.raises(cnnviz.ModelFileError, match="cannot load this ONNX model"):
        OnnxClassifier(tmp_path / "junk.onnx")
