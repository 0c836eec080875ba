import keras
import numpy as np

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


def test_biases_batch_norm_and_the_logits_layer_take_the_same_steps_as_keras_adam():
    rng = np.random.default_rng(1)
    for shape, path in (((8,), "conv"), ((8,), "bn"), ((16, 4), "logits")):
        gradient = rng.normal(size=shape).astype("float32")
        initial = rng.normal(size=shape).astype("float32")
        muon = _one_step(ConvMuon(0.01), initial, gradient, path)
        adam = _one_step(keras.optimizers.Adam(0.01), initial, gradient, path)
        np.testing.assert_allclose(muon, adam, rtol=1e-5, atol=1e-7, err_msg=f"{shape} {path}")


def test_a_hidden_dense_kernel_is_orthogonalized_not_given_adam_steps():
    rng = np.random.default_rng(2)
    gradient = rng.normal(size=(16, 4)).astype("float32")
    muon = _one_step(ConvMuon(0.01), np.zeros_like(gradient), gradient, "dense")
    adam = _one_step(keras.optimizers.Adam(0.01), np.zeros_like(gradient), gradient, "dense")
    assert not np.allclose(muon, adam, rtol=0.05)
    u, _, vt = np.linalg.svd(gradient, full_matrices=False)
    cosine = np.sum(-muon * (u @ vt)) / (np.linalg.norm(muon) * np.linalg.norm(u @ vt))
    assert cosine > 0.97


def test_the_default_optimizer_is_muon_and_training_with_it_learns(tiny_arrays):
    assert TrainConfig().optimizer == "muon"
    result = cnnviz.train(SMALL, tiny_arrays, TrainConfig(epochs=8, batch_size=8))
    assert isinstance(result.model.optimizer, ConvMuon)
    assert cnnviz.evaluate(result.model, tiny_arrays).accuracy >= 0.9


def test_a_model_trained_with_muon_is_saved_so_that_keras_alone_loads_it(tiny_arrays, tmp_path):
    result = cnnviz.train(SMALL, tiny_arrays, TrainConfig(epochs=1, batch_size=8))
    path = cnnviz.save_model(result.model, tmp_path / "muon.keras", class_names=("dark", "bright"))
    expected = result.model(tiny_arrays[0][:4].astype("float32")).numpy()
    np.save(tmp_path / "images.npy", tiny_arrays[0][:4])
    np.save(tmp_path / "expected.npy", expected)
    assert result.model.compiled  # saving leaves the trained model as it was
    run_in_a_fresh_python(
        "import sys, numpy as np, keras\n"
        f"model = keras.saving.load_model({str(path)!r})\n"
        "assert 'cnnviz' not in sys.modules\n"
        f"images = np.load({str(tmp_path / 'images.npy')!r}).astype('float32')\n"
        f"np.testing.assert_allclose(model(images).numpy(), np.load({str(tmp_path / 'expected.npy')!r}), atol=1e-5)\n"
    )
