import json
import zipfile

import numpy as np
import pytest

import cnnviz
from cnnviz.errors import ModelFileError
from cnnviz.models import ModelConfig, build_model
from cnnviz.training import TrainConfig

from .conftest import write_image

SMALL = ModelConfig(input_shape=(16, 16, 3), num_classes=2, conv_blocks=2, filters=4)


@pytest.fixture
def trained(tiny_arrays):
    model = cnnviz.train(SMALL, tiny_arrays, TrainConfig(epochs=10, batch_size=8)).model
    assert cnnviz.evaluate(model, tiny_arrays).accuracy >= 0.9
    return model


def test_evaluate_matches_sklearn_definitions(trained, tiny_arrays):
    images, labels = tiny_arrays
    result = cnnviz.evaluate(trained, (images, labels), class_names=("dark", "bright"))
    predictions = result.predictions
    assert result.accuracy == pytest.approx(np.mean(predictions == labels))
    assert result.confusion_matrix.sum() == len(labels)
    assert np.trace(result.confusion_matrix) == int(np.sum(predictions == labels))
    assert [row["class"] for row in result.per_class] == ["dark", "bright"]
    for index in np.flatnonzero(predictions != labels):
        assert index in result.misclassified
    confidences = result.probabilities[result.misclassified, result.predictions[result.misclassified]]
    assert (np.diff(confidences) <= 1e-6).all()
    cell = result.cell_indices(1, 1)
    assert ((labels[cell] == 1) & (predictions[cell] == 1)).all()
    assert result.top_k(2).shape == (len(labels), 2)


def test_predict_top_k_and_raw_file(trained, tiny_arrays, tmp_path):
    path = cnnviz.save_model(trained, tmp_path / "m.keras", class_names=("dark", "bright"))
    loaded = cnnviz.load_model(path)
    # A raw file of another size and mode: the model's own preprocessing applies.
    bright = np.random.default_rng(5).integers(120, 220, (40, 50, 3)).astype(np.uint8)
    image_path = write_image(tmp_path / "bright.jpg", bright)
    prediction = cnnviz.predict(loaded, cnnviz.load_image(image_path), top_k=2)[0]
    assert prediction["class"] == "bright"
    assert [entry["class"] for entry in prediction["top_k"]] == ["bright", "dark"]
    assert prediction["probability"] == prediction["top_k"][0]["probability"]
    # The saved model predicts exactly as the trained one.
    batch = tiny_arrays[0][:5].astype(np.float32)
    np.testing.assert_allclose(np.asarray(loaded(batch)), np.asarray(trained(batch)), atol=1e-6)


def test_saved_file_carries_class_names(trained, tmp_path):
    path = cnnviz.save_model(trained, tmp_path / "m.keras", class_names=("dark", "bright"))
    with zipfile.ZipFile(path) as archive:
        assert json.loads(archive.read("cnnviz.json"))["class_names"] == ["dark", "bright"]
    assert cnnviz.class_names_of(cnnviz.load_model(path)) == ("dark", "bright")


def test_lambda_model_refused_by_safe_mode(tmp_path):
    import keras

    inputs = keras.Input((8, 8, 1))
    outputs = keras.layers.Dense(2)(keras.layers.Flatten()(keras.layers.Lambda(lambda x: x * 2)(inputs)))
    model = keras.Model(inputs, outputs)
    path = tmp_path / "lambda.keras"
    model.save(path)
    with pytest.raises(ModelFileError, match="refused for safety"):
        cnnviz.load_model(path)


@pytest.mark.parametrize("content", [b"", b"just text", b"PK\x03\x04broken zip"])
def test_not_a_model_file(tmp_path, content):
    path = tmp_path / "fake.keras"
    path.write_bytes(content)
    with pytest.raises(ModelFileError):
        cnnviz.load_model(path)


def test_missing_model_and_wrong_suffix(tmp_path):
    with pytest.raises(ModelFileError, match="no such model"):
        cnnviz.load_model(tmp_path / "nope.keras")
    with pytest.raises(ModelFileError, match=".keras"):
        cnnviz.save_model(build_model(SMALL), tmp_path / "model.h5")


def test_failed_save_keeps_previous_file(trained, tmp_path, monkeypatch):
    import keras

    path = cnnviz.save_model(trained, tmp_path / "m.keras")
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise RuntimeError("disk died mid-write")

    monkeypatch.setattr(keras.saving, "save_model", crash)
    with pytest.raises(RuntimeError):
        cnnviz.save_model(trained, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.keras"]
