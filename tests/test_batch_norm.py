"""Batch norm on TensorFlow's fused kernel during `fit` (`cnnviz.training.batch_norm`), against Keras' own layer."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import cnnviz
from cnnviz.models import ConvNetConfig, build_model, walk_layers
from cnnviz.training import TrainConfig, batch_norm

SMALL = ConvNetConfig(input_shape=(16, 16, 3), num_classes=2, conv_blocks=2, filters=4)


def _pair(shape, **kwargs):
    """A Keras batch norm layer and a fused copy with the same random weights."""
    rng = np.random.default_rng(1)
    layers = [keras.layers.BatchNormalization(**kwargs), keras.layers.BatchNormalization(**kwargs)]
    for layer in layers:
        layer.build(shape)
    weights = [rng.uniform(0.5, 1.5, w.shape).astype("float32") for w in layers[0].get_weights()]
    for layer in layers:
        layer.set_weights(weights)
    model = keras.Sequential([keras.Input(shape[1:]), layers[1]])
    assert batch_norm.fuse(model) == [layers[1]]
    return layers


def _step(layer, images):
    """One training-mode call: outputs, gradients of a nonlinear loss (inputs, gamma, beta), running stats."""
    images = tf.constant(images)
    with tf.GradientTape() as tape:
        tape.watch(images)
        outputs = layer(images, training=True)
        loss = tf.reduce_sum(outputs * tf.sin(outputs))
    weights = [w for w in (layer.gamma, layer.beta) if w is not None]
    gradients = tape.gradient(loss, [images, *weights])
    return [
        outputs.numpy(),
        *(g.numpy() for g in gradients),
        layer.moving_mean.numpy(),
        layer.moving_variance.numpy(),
    ]


@pytest.mark.parametrize(
    "shape, kwargs",
    [
        ((8, 28, 28, 16), {"momentum": 0.7}),
        ((16, 3, 3, 32), {"epsilon": 1.001e-5}),  # the smallest it takes (ResNet's)
        ((6, 5, 5, 4), {"center": False}),
        ((6, 5, 5, 4), {"scale": False, "momentum": 0.5}),
        ((1, 1, 1, 4), {}),  # one value per channel: variance 0, as Keras
    ],
)
def test_the_fused_training_step_gives_keras_outputs_gradients_and_running_averages(shape, kwargs):
    keras_layer, fused_layer = _pair(shape, **kwargs)
    images = np.random.default_rng(2).normal(3.0, 2.0, shape).astype("float32")
    start = fused_layer.moving_mean.numpy()
    expected, got = _step(keras_layer, images), _step(fused_layer, images)
    assert len(expected) == len(got)
    for want, have in zip(expected, got):
        assert np.isfinite(have).all()
        np.testing.assert_allclose(have, want, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(want).max())))
    # The running mean moved (by the same step as Keras').
    assert not np.allclose(got[-2], start)


def test_under_mixed_bfloat16_the_fused_step_computes_in_float32_and_returns_bfloat16():
    shape = (8, 7, 7, 8)
    keras_layer, fused_layer = _pair(shape, dtype="mixed_bfloat16")
    images = np.random.default_rng(3).normal(0.0, 1.0, shape).astype("float32")
    want = keras_layer(images, training=True)
    have = fused_layer(images, training=True)
    assert have.dtype == want.dtype == "bfloat16"
    np.testing.assert_allclose(np.asarray(have, "float32"), np.asarray(want, "float32"), atol=0.05)
    np.testing.assert_allclose(
        fused_layer.moving_variance.numpy(), keras_layer.moving_variance.numpy(), rtol=1e-4
    )


def test_inference_other_ranks_and_layers_it_cannot_cover_run_keras_own_code():
    keras_layer, fused_layer = _pair((4, 6, 6, 3))
    images = np.random.default_rng(4).normal(1.0, 1.0, (4, 6, 6, 3)).astype("float32")
    np.testing.assert_array_equal(fused_layer(images, training=False), keras_layer(images, training=False))
    flat_keras, flat_fused = _pair((8, 5))  # features, not images
    features = np.random.default_rng(5).normal(size=(8, 5)).astype("float32")
    np.testing.assert_array_equal(flat_fused(features, training=True), flat_keras(features, training=True))

    class Custom(keras.layers.BatchNormalization):
        pass

    left_alone = [
        Custom(),
        keras.layers.BatchNormalization(renorm=True),
        keras.layers.BatchNormalization(synchronized=True),
        keras.layers.BatchNormalization(epsilon=1e-6),
        keras.layers.BatchNormalization(dtype="float64"),
    ]
    model = keras.Sequential([keras.Input((6, 6, 3)), *left_alone, keras.layers.BatchNormalization()])
    assert batch_norm.fuse(model) == [model.layers[-1]]
    assert all("call" not in vars(layer) for layer in left_alone)


def test_the_fused_layer_traces_to_the_fused_kernel_in_training_and_keras_does_not():
    keras_layer, fused_layer = _pair((4, 6, 6, 3))
    spec = tf.TensorSpec((4, 6, 6, 3), "float32")

    def kernels(layer, training):
        graph = tf.function(lambda x: layer(x, training=training)).get_concrete_function(spec).graph
        return {op.type for op in graph.get_operations()} & {"FusedBatchNormV3"}

    assert kernels(fused_layer, True) == {"FusedBatchNormV3"}
    assert kernels(keras_layer, True) == set() and kernels(fused_layer, False) == set()


def test_a_nan_pixel_makes_the_training_loss_nan_as_with_keras_own_batch_norm():
    # Without care the fused step's loss stayed finite here (ln 2: the network's outputs flattened), so
    # cnnviz's NaN guard missed the broken run.
    images = np.random.default_rng(6).integers(0, 100, (32, 16, 16, 3)).astype("float32")
    images[0, 0, 0, 0] = np.nan
    labels = np.arange(32) % 2
    losses = {}
    for fused in (False, True):
        model = build_model(SMALL)
        changed = batch_norm.fuse(model) if fused else []
        assert len(changed) == (2 if fused else 0)
        model.compile("adam", "sparse_categorical_crossentropy", jit_compile=False)
        losses[fused] = float(model.train_on_batch(images, labels))
    assert np.isnan(losses[False]) and np.isnan(losses[True])


def test_the_layers_are_put_back_when_fit_raises():
    model = build_model(SMALL)
    norms = [layer for layer in walk_layers(model) if _is_norm(layer)]
    with (
        pytest.raises(RuntimeError, match="interrupted"),
        batch_norm.for_training(model, steps_per_epoch=2, shorten=True),
    ):
        assert all("call" in vars(layer) and layer.momentum == 0.5 for layer in norms)
        raise RuntimeError("interrupted")
    assert all("call" not in vars(layer) and layer.momentum == 0.9 for layer in norms)


def test_train_fits_every_batch_norm_fused_and_hands_back_plain_keras_layers(tiny_arrays):
    fused_during = []

    class Watch(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            fused_during.extend("call" in vars(layer) for layer in walk_layers(self.model) if _is_norm(layer))

    users = build_model(SMALL)
    for model in (SMALL, users):  # a design, and a Keras model of the user's
        fused_during.clear()
        result = cnnviz.train(model, tiny_arrays, TrainConfig(epochs=1, batch_size=8), callbacks=[Watch()])
        assert len(fused_during) >= 2 and all(fused_during)
        norms = [layer for layer in walk_layers(result.model) if _is_norm(layer)]
        assert norms and not any("call" in vars(layer) for layer in norms)
        assert not result.model.losses  # the NaN check's zero losses stay inside the run
    # The user's model itself (train copies it) is never changed.
    assert not any("call" in vars(layer) for layer in walk_layers(users) if _is_norm(layer))


def test_a_run_with_fused_batch_norm_ends_with_the_weights_of_a_run_with_keras_own(tiny_arrays, monkeypatch):
    config = TrainConfig(epochs=2, batch_size=8, validation_split=0.0, precision="float32", seed=3)
    fused = cnnviz.train(SMALL, tiny_arrays, config).model.get_weights()
    monkeypatch.setattr(batch_norm, "fuse", lambda model: [])
    plain = cnnviz.train(SMALL, tiny_arrays, config).model.get_weights()
    assert len(fused) == len(plain)
    for have, want in zip(fused, plain):
        np.testing.assert_allclose(have, want, rtol=1e-3, atol=1e-4)


def _is_norm(layer) -> bool:
    return isinstance(layer, keras.layers.BatchNormalization)
