import json
import zipfile

import numpy as np
import pytest

import cnnviz
from cnnviz.errors import ModelFileError
from cnnviz.models import ConvNetConfig, build_model
from cnnviz.training import TrainConfig

from .conftest import write_image

SMALL = ConvNetConfig(input_shape=(16, 16, 3), num_classes=2, conv_blocks=2, filters=4)


@pytest.fixture
def trained(tiny_arrays):
    model = cnnviz.train(SMALL, tiny_arrays, TrainConfig(epochs=10, batch_size=8)).model
    assert cnnviz.evaluate(model, tiny_arrays).accuracy >= 0.9
    return model


def test_evaluate_agrees_with_sklearn_on_a_model_that_makes_mistakes():
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    rng = np.random.default_rng(3)
    images = rng.integers(0, 255, (60, 16, 16, 3)).astype(np.uint8)
    labels = rng.integers(0, 3, 60)
    model = build_model(SMALL.replace(num_classes=3), seed=1)  # untrained: it gets many wrong
    result = cnnviz.evaluate(model, (images, labels), class_names=("a", "b", "c"))
    # Predictions computed here, independently of cnnviz.evaluate.
    probabilities = np.asarray(model(images.astype(np.float32), training=False))
    predictions = probabilities.argmax(axis=1)
    assert 0 < result.accuracy < 1  # both right and wrong answers to check
    assert result.accuracy == pytest.approx(accuracy_score(labels, predictions))
    np.testing.assert_array_equal(
        result.confusion_matrix, confusion_matrix(labels, predictions, labels=[0, 1, 2])
    )
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predictions, labels=[0, 1, 2], zero_division=0
    )
    for row, p, r, f, n in zip(result.per_class, precision, recall, f1, support):
        assert (row["precision"], row["recall"], row["f1"], row["support"]) == pytest.approx((p, r, f, n))
    assert [row["class"] for row in result.per_class] == ["a", "b", "c"]
    # Mistakes: exactly the wrong ones, the most confident first.
    wrong = np.flatnonzero(predictions != labels)
    assert sorted(result.misclassified.tolist()) == wrong.tolist()
    confidences = probabilities[result.misclassified, predictions[result.misclassified]]
    assert len(confidences) >= 2 and (np.diff(confidences) <= 1e-6).all()
    cell = result.cell_indices(1, 2)
    assert cell.tolist() == np.flatnonzero((labels == 1) & (predictions == 2)).tolist()
    np.testing.assert_array_equal(result.top_k(2)[:, 0], predictions)


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
