import keras
import numpy as np
import pytest

import cnnviz
from cnnviz.models import ConvNetConfig
from cnnviz.training import TrainConfig
from cnnviz.training.optimizers import ConvMuon
from tests.conftest import run_in_a_fresh_python

SMALL = ConvNetConfig(input_shape=(16, 16, 3), num_classes=2, conv_blocks=2, filters=4)


def _one_step(optimizer, initial: np.ndarray, gradient: np.ndarray, path: str = "conv") -> np.ndarray:
    """The change one step of `optimizer` makes to a weight named `path` holding `initial`."""
    with keras.name_scope(path):
        variable = keras.Variable(initial, name="kernel")
    optimizer.build([variable])
    optimizer.apply_gradients([(keras.ops.convert_to_tensor(gradient), variable)])
    return np.asarray(variable.numpy()) - initial


def test_a_conv_kernels_update_is_the_orthogonal_factor_of_its_gradient_as_the_svd_gives_it():
    rng = np.random.default_rng(0)
    gradient = rng.normal(size=(3, 3, 4, 8)).astype("float32")
    learning_rate = 0.01
    update = -_one_step(ConvMuon(learning_rate), np.zeros_like(gradient), gradient)

    matrix = gradient.reshape(36, 8)
    u, _, vt = np.linalg.svd(matrix, full_matrices=False)
    reference = u @ vt  # the semi-orthogonal matrix nearest the gradient
    # Keras scales Muon's update to Adam's size: lr * sqrt(max(rows, columns)) * rms_rate (0.2).
    scaled = update.reshape(36, 8) / (learning_rate * np.sqrt(36) * 0.2)

    cosine = np.sum(scaled * reference) / (np.linalg.norm(scaled) * np.linalg.norm(reference))
    assert cosine > 0.97
    # Newton-Schulz's five steps bring every singular value near 1 (Muon's authors: about 0.7-1.2).
    singular_values = np.linalg.svd(scaled, compute_uv=False)
    assert singular_values.min() > 0.6 and singular_values.max() < 1.3
    # Adam's first step would move every weight by about the learning rate, whatever the gradient's shape.
    assert not np.allclose(np.abs(update), learning_rate, rtol=0.05)


def test_dense_and_depthwise_kernels_biases_and_batch_norm_take_the_same_steps_as_keras_adam():
    rng = np.random.default_rng(1)
    for shape, path in (
        ((16, 4), "logits"),  # a dense kernel, the classifier's or a hidden one
        ((3, 3, 8, 1), "depthwise"),  # one output channel: not a matrix to orthogonalize
        ((8,), "conv"),  # a bias
        ((8,), "bn"),
    ):
        gradient = rng.normal(size=shape).astype("float32")
        initial = rng.normal(size=shape).astype("float32")
        muon = _one_step(ConvMuon(0.01), initial, gradient, path)
        adam = _one_step(keras.optimizers.Adam(0.01), initial, gradient, path)
        np.testing.assert_allclose(muon, adam, rtol=1e-5, atol=1e-7, err_msg=f"{shape} {path}")


def test_a_conv_layer_named_in_exclude_layers_takes_adam_steps():
    rng = np.random.default_rng(2)
    gradient = rng.normal(size=(3, 3, 4, 8)).astype("float32")
    muon = _one_step(ConvMuon(0.01, exclude_layers=["conv9"]), np.zeros_like(gradient), gradient, "conv9")
    adam = _one_step(keras.optimizers.Adam(0.01), np.zeros_like(gradient), gradient, "conv9")
    np.testing.assert_allclose(muon, adam, rtol=1e-5, atol=1e-7)


def test_the_optimizer_rebuilds_from_its_saved_config():
    optimizer = ConvMuon(0.005, momentum=0.8, exclude_layers=["conv1"])
    rebuilt = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(optimizer))
    assert type(rebuilt) is ConvMuon
    assert rebuilt.get_config() == optimizer.get_config()
    assert (rebuilt.momentum, rebuilt.exclude_layers) == (0.8, ["conv1"])


def test_each_optimizer_trains_at_its_own_learning_rate_unless_one_is_given(tiny_arrays):
    assert TrainConfig().peak_learning_rate == 0.02
    assert TrainConfig(optimizer="adam").peak_learning_rate == 0.01
    assert TrainConfig(optimizer="sgd", learning_rate=0.3).peak_learning_rate == 0.3
    for optimizer, expected in (("sgd", 0.05), ("rmsprop", 0.001)):
        config = TrainConfig(
            optimizer=optimizer, schedule="constant", epochs=1, batch_size=16, precision="float32"
        )
        model = cnnviz.train(SMALL, tiny_arrays, config).model
        assert float(model.optimizer.learning_rate) == pytest.approx(expected), optimizer


def test_the_default_optimizer_is_muon_and_training_with_it_learns(tiny_arrays):
    assert TrainConfig().optimizer == "muon"
    result = cnnviz.train(SMALL, tiny_arrays, TrainConfig(epochs=8, batch_size=8, precision="float32"))
    assert isinstance(result.model.optimizer, ConvMuon)
    assert cnnviz.evaluate(result.model, tiny_arrays).accuracy >= 0.9


def test_models_trained_with_muon_are_saved_so_that_keras_alone_loads_them(tiny_arrays, tmp_path):
    images = tiny_arrays[0][:4].astype("float32")
    trained = cnnviz.train(SMALL, tiny_arrays, TrainConfig(epochs=1, batch_size=8, precision="float32")).model
    # A user's model compiled for float16, whose optimizer Keras wraps in a LossScaleOptimizer.
    wrapped = cnnviz.build_model(SMALL)
    wrapped.compile(keras.optimizers.LossScaleOptimizer(ConvMuon()), "sparse_categorical_crossentropy")
    wrapped.fit(*tiny_arrays, epochs=1, verbose=0)
    for name, model in (("trained", trained), ("wrapped", wrapped)):
        cnnviz.save_model(model, tmp_path / f"{name}.keras", class_names=("dark", "bright"))
        np.save(tmp_path / f"{name}.npy", model(images).numpy())
    np.save(tmp_path / "images.npy", images)
    run_in_a_fresh_python(
        "import sys, numpy as np, keras\n"
        f"folder = {str(tmp_path)!r}\n"
        "images = np.load(f'{folder}/images.npy')\n"
        "for name in ('trained', 'wrapped'):\n"
        "    model = keras.saving.load_model(f'{folder}/{name}.keras')\n"
        "    np.testing.assert_allclose(model(images).numpy(), np.load(f'{folder}/{name}.npy'), atol=1e-5)\n"
        "assert 'cnnviz' not in sys.modules\n"
    )
    # cnnviz itself still reads the class names from the rewritten file.
    assert cnnviz.class_names_of(cnnviz.load_model(tmp_path / "trained.keras")) == ("dark", "bright")


def test_a_model_compiled_with_a_keras_optimizer_keeps_its_compile_settings_in_the_file(
    tiny_arrays, tmp_path
):
    import json
    import zipfile

    config = TrainConfig(optimizer="adam", epochs=1, batch_size=8, precision="float32")
    model = cnnviz.train(SMALL, tiny_arrays, config).model
    path = cnnviz.save_model(model, tmp_path / "adam.keras")
    with zipfile.ZipFile(path) as archive:
        saved = json.loads(archive.read("config.json"))
    assert saved["compile_config"]["optimizer"]["class_name"] == "Adam"
    assert not list(tmp_path.glob("*.staged.keras")) and not list(tmp_path.glob(".adam.*"))
