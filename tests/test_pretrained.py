"""Transfer learning and the ImageNet classifier, offline: random weights, or
weights files the test itself plants in the Keras cache."""

import json

import numpy as np
import pytest

import cnnviz
from cnnviz import pretrained
from cnnviz.pretrained import WeightsUnavailableError

from .conftest import trust_planted_files


def _plant_weights(keras_home, network, file_name):
    """Writes `network`'s weights where keras.applications looks for them, in
    the legacy HDF5 layout the real download has."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    folder = keras_home / "models"
    folder.mkdir(exist_ok=True)
    with h5py.File(folder / file_name, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, network)
    return folder / file_name


def test_backbone_layers_are_model_layers_frozen_except_the_last_ones():
    config = cnnviz.preset_config(
        "transfer_mobilenet_v2", (28, 28, 1), 3, backbone_weights=None, fine_tune_layers=12
    )
    model = cnnviz.build_model(config)
    names = [layer.name for layer in model.layers]
    # Flat, not one nested layer: explanations reach any backbone layer by name.
    assert {"backbone_resize", "gray_to_rgb", "backbone_preprocess", "Conv1", "out_relu"} <= set(names)
    assert model.get_layer("backbone_resize").output.shape[1:3] == (96, 96)
    assert cnnviz.default_cam_layer(model) == "out_relu"
    backbone = names[names.index("backbone_preprocess") + 1 : names.index("global_pool")]
    tail = [model.get_layer(name) for name in backbone[-12:]]
    assert not any(model.get_layer(name).trainable for name in backbone[:-12])
    assert all(layer.trainable != isinstance(layer, cnnviz_bn()) for layer in tail)
    assert model.get_layer("logits").trainable


def cnnviz_bn():
    from keras import layers

    return layers.BatchNormalization


def test_frozen_backbone_stays_put_while_the_head_learns(tiny_arrays):
    images, labels = tiny_arrays
    images = np.repeat(np.repeat(images, 2, axis=1), 2, axis=2)  # 32x32, the smallest MobileNetV2 input
    config = cnnviz.preset_config("transfer_mobilenet_v2", images.shape[1:], 2, backbone_weights=None)
    model = cnnviz.build_model(config)
    conv_before = model.get_layer("Conv1").get_weights()[0].copy()
    bn_before = [w.copy() for w in model.get_layer("bn_Conv1").get_weights()]
    head_before = model.get_layer("logits").get_weights()[0].copy()
    result = cnnviz.train(
        model, (images, labels), cnnviz.TrainConfig(epochs=1, batch_size=16, learning_rate=0.01)
    )
    trained = result.model
    np.testing.assert_array_equal(trained.get_layer("Conv1").get_weights()[0], conv_before)
    for after, before in zip(trained.get_layer("bn_Conv1").get_weights(), bn_before):
        np.testing.assert_array_equal(after, before)  # frozen batch norm runs in inference mode
    assert not np.array_equal(trained.get_layer("logits").get_weights()[0], head_before)


def test_imagenet_backbone_weights_load_from_the_keras_cache(keras_home):
    import keras

    planted = keras.applications.MobileNetV2(input_shape=(96, 96, 3), include_top=False, weights=None)
    _plant_weights(keras_home, planted, pretrained.weights_file("mobilenet_v2", 96)[0])
    assert pretrained.weights_cached("mobilenet_v2", 96)
    model = cnnviz.build_model(cnnviz.preset_config("transfer_mobilenet_v2", (64, 64, 3), 4))
    for name in ("Conv1", "block_16_project", "Conv_1_bn"):
        for got, want in zip(model.get_layer(name).get_weights(), planted.get_layer(name).get_weights()):
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("preset", ["transfer_mobilenet_v2", "transfer_efficientnet_b0"])
def test_offline_without_cached_weights_says_what_to_do(keras_home, preset):
    config = cnnviz.preset_config(preset, (64, 64, 3), 4)
    with pytest.raises(WeightsUnavailableError) as error:
        cnnviz.build_model(config)
    message = str(error.value)
    assert "\n" not in message
    assert str(keras_home / "models") in message
    assert "not in the Keras cache" in message and "backbone_weights=None" in message


def test_efficientnet_backbone_explains_and_survives_save_and_load(tmp_path):
    config = cnnviz.preset_config("transfer_efficientnet_b0", (64, 64, 3), 4, backbone_weights=None)
    model = cnnviz.build_model(config)
    assert "backbone_preprocess" not in [layer.name for layer in model.layers]  # it rescales itself
    images = np.random.default_rng(0).integers(0, 255, (2, 64, 64, 3), dtype=np.uint8)
    heatmaps = cnnviz.explain(model, images, "gradcam")
    assert heatmaps.shape == (2, 64, 64) and np.isfinite(heatmaps).all()
    path = cnnviz.save_model(model, tmp_path / "transfer.keras", class_names=("a", "b", "c", "d"))
    loaded = cnnviz.load_model(path)
    np.testing.assert_allclose(
        cnnviz.predict_probabilities(loaded, images), cnnviz.predict_probabilities(model, images), atol=1e-5
    )
    assert [layer.trainable for layer in loaded.layers] == [layer.trainable for layer in model.layers]


def test_bad_backbone_fields_are_refused():
    with pytest.raises(cnnviz.ConfigError, match="backbone must be one of"):
        cnnviz.TransferConfig(backbone="resnet9000")
    with pytest.raises(cnnviz.ConfigError, match="backbone_size"):
        cnnviz.TransferConfig(backbone="mobilenet_v2", backbone_size=100)


@pytest.fixture
def planted_imagenet(keras_home, monkeypatch):
    """A random MobileNetV2 and made-up class names where the real downloads go."""
    import keras

    trust_planted_files(monkeypatch)  # the stand-in class index has another hash
    planted = keras.applications.MobileNetV2(weights=None, classifier_activation=None)
    _plant_weights(keras_home, planted, pretrained.weights_file("mobilenet_v2", 224, include_top=True)[0])
    names = {str(number): [f"n{number:08d}", f"thing_{number}"] for number in range(1000)}
    (keras_home / "models" / "imagenet_class_index.json").write_text(json.dumps(names))
    return planted


def test_imagenet_classifier_from_planted_weights_and_class_names(planted_imagenet):
    import keras

    planted = planted_imagenet
    model = cnnviz.imagenet_classifier()
    assert cnnviz.class_names_of(model)[7] == "thing 7"
    photo = np.random.default_rng(1).integers(0, 255, (224, 224, 3), dtype=np.uint8)
    probabilities = cnnviz.predict_probabilities(model, photo[None])
    assert probabilities.shape == (1, 1000)
    np.testing.assert_allclose(probabilities.sum(), 1.0, rtol=1e-5)
    # The same numbers as keras.applications' own pipeline on the planted network.
    expected = keras.activations.softmax(
        planted(keras.applications.mobilenet_v2.preprocess_input(photo[None].astype("float32")))
    )
    np.testing.assert_allclose(probabilities, np.asarray(expected), atol=1e-5)
    heatmap = cnnviz.explain(model, photo[None], "gradcam")
    assert cnnviz.default_cam_layer(model) == "out_relu"
    assert heatmap.shape == (1, 224, 224) and heatmap.max() == pytest.approx(1.0)


def test_imagenet_classifier_offline_says_what_to_do(keras_home):
    with pytest.raises(WeightsUnavailableError, match="ImageNet"):
        cnnviz.imagenet_classifier()


def test_cli_predicts_and_explains_photos_with_the_imagenet_model(planted_imagenet, tmp_path, capsys):
    from cnnviz.cli import main

    from .conftest import write_image

    photo = write_image(tmp_path / "photo.jpg", np.full((300, 200, 3), 120, dtype=np.uint8))
    assert main(["predict", "imagenet", str(photo), "--top-k", "5", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["predictions"][0]
    assert len(result["top_k"]) == 5 and result["class"].startswith("thing ")
    assert main(["explain", "imagenet", str(photo), "--out", str(tmp_path / "out"), "--json"]) == 0
    written = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["results"][0]["heatmap_png"]
    from PIL import Image

    assert Image.open(written).size == (200, 300)  # at the photo's own size


def test_cli_imagenet_offline_is_one_clear_line(keras_home, tmp_path, capsys):
    from cnnviz.cli import main

    from .conftest import write_image

    photo = write_image(tmp_path / "photo.png", np.zeros((8, 8, 3), dtype=np.uint8))
    assert main(["predict", "imagenet", str(photo)]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "ImageNet" in error and "Keras cache" in error


def _open_imagenet_choice():
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from ui.models import IMAGENET, load_imagenet_model

    load_imagenet_model.clear()
    app = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app.py"), default_timeout=180)
    app.session_state["model.choice"] = IMAGENET
    app.run()
    assert not app.exception, app.exception
    return app


def test_studio_offers_the_imagenet_classifier(planted_imagenet):
    app = _open_imagenet_choice()
    sidebar = " ".join(caption.value for caption in app.sidebar.caption)
    assert "1000 classes: thing 0, thing 1" in sidebar and "224x224x3" in sidebar
    assert not app.sidebar.error
    assert any("Upload an image" in info.value for info in app.info)


def test_studio_imagenet_offline_says_so_in_the_sidebar(keras_home):
    app = _open_imagenet_choice()
    assert "not in the Keras cache" in app.sidebar.error[0].value
    assert any("Choose a model" in info.value for info in app.info)
