"""Feature maps, activation maximization, kernels, weight histograms and changes."""

import keras
import numpy as np
import pytest

import cnnviz
from cnnviz import render
from cnnviz.errors import ConfigError
from cnnviz.weights import fresh_copy


@pytest.fixture
def model():
    return cnnviz.build_model(
        cnnviz.ConvNetConfig(input_shape=(24, 24, 3), num_classes=3, conv_blocks=2, filters=4), seed=0
    )


def test_layer_list_names_maps_and_convs(model):
    infos = {info.name: info for info in cnnviz.list_layers(model)}
    assert "image" not in infos
    assert infos["conv1"].is_conv and infos["conv1"].has_map and infos["conv1"].output_shape == (24, 24, 4)
    assert not infos["logits"].has_map and infos["logits"].parameters == 8 * 3 + 3


def test_feature_maps_equal_the_layer_outputs(model):
    image = np.random.default_rng(0).integers(0, 255, (24, 24, 3), dtype=np.uint8)
    maps = cnnviz.feature_maps(model, image)
    assert list(maps) == [info.name for info in cnnviz.list_layers(model) if info.has_map]
    direct = keras.Model(model.input, model.get_layer("act2").output)(image[None].astype(np.float32))
    np.testing.assert_allclose(maps["act2"], np.asarray(direct)[0], rtol=1e-5, atol=1e-6)
    only = cnnviz.feature_maps(model, image, layers=["conv1"])
    assert list(only) == ["conv1"] and only["conv1"].shape == (24, 24, 4)


def test_filter_images_excite_their_filter_more_than_noise(model):
    probe = keras.Model(model.input, model.get_layer("act2").output)
    noise = np.random.default_rng(3).normal(128, 8, (2, 24, 24, 3)).clip(0, 255).astype(np.uint8)
    # Two filters that respond at all (a ReLU filter dead for every input cannot be excited).
    chosen = [
        int(c) for c in np.argsort(-np.asarray(probe(noise.astype(np.float32))).mean(axis=(0, 1, 2)))[:2]
    ]
    images = cnnviz.filter_images(model, "act2", filters=chosen, steps=40)
    assert images.shape == (2, 24, 24, 3) and images.dtype == np.uint8
    for row, channel in enumerate(chosen):
        excited = np.asarray(probe(images[row : row + 1].astype(np.float32)))[..., channel].mean()
        baseline = np.asarray(probe(noise[row : row + 1].astype(np.float32)))[..., channel].mean()
        assert excited > baseline


def test_class_images_of_the_shipped_shapes_model_are_classified_as_their_class():
    from pathlib import Path

    trained = cnnviz.load_model(Path(__file__).resolve().parent.parent / "assets" / "models" / "shapes.keras")
    images = cnnviz.class_images(trained)
    assert images.shape == (4, 64, 64, 3) and images.dtype == np.uint8
    assert list(cnnviz.predict_probabilities(trained, images).argmax(axis=1)) == [0, 1, 2, 3]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m: cnnviz.filter_images(m, "nope"), "no layer named 'nope'"),
        (lambda m: cnnviz.filter_images(m, "conv1", filters=[9]), "must be in 0..3"),
        (lambda m: cnnviz.class_images(m, classes=[5]), "must be in 0..2"),
        (lambda m: cnnviz.kernel_images(m, "conv2", mode="rgb"), "rgb needs 3"),
        (lambda m: cnnviz.kernel_images(m, "logits"), "not a 2-D convolution"),
        (lambda m: cnnviz.feature_maps(m, np.zeros((2, 24, 24, 3), np.uint8)), "one image"),
    ],
)
def test_bad_requests_get_clear_messages(model, call, message):
    with pytest.raises(ConfigError, match=message):
        call(model)


def test_kernel_images_scale_each_kernel_around_half(model):
    kernel = model.get_layer("conv1").kernel
    values = np.zeros(kernel.shape, np.float32)
    values[1, 1, 0, 0] = 2.0  # filter 0: one positive weight
    values[0, 0, 2, 1] = -4.0  # filter 1: one negative weight
    clone = keras.models.clone_model(model)
    clone.get_layer("conv1").kernel.assign(values)
    rgb = cnnviz.kernel_images(clone)
    assert rgb.shape == (4, 3, 3, 3) and rgb.dtype == np.float32
    assert rgb[0, 1, 1, 0] == 1.0 and rgb[0, 0, 0, 0] == 0.5
    assert rgb[1, 0, 0, 2] == 0.0
    assert np.all(rgb[2] == 0.5)  # all-zero kernel: all "zero weight"
    assert cnnviz.kernel_images(clone, mode="mean").shape == (4, 3, 3)
    assert cnnviz.kernel_images(clone, "conv2", mode="channels").shape == (8, 4, 3, 3)


def test_weight_histograms_count_every_weight(model):
    histograms = cnnviz.weight_histograms(model, bins=10)
    assert len(histograms) == len(model.weights)
    for entry, variable in zip(histograms, model.weights):
        assert entry["counts"].sum() == np.prod(variable.shape)
        assert len(entry["edges"]) == 11
    kinds = {entry["kind"] for entry in histograms}
    assert {"kernel", "gamma", "beta", "moving_mean"} <= kinds


def test_weight_changes_measure_what_moved(model):
    same = cnnviz.weight_changes(model, model)
    assert all(entry["relative_change"] == 0.0 for entry in same)
    other = fresh_copy(model, seed=5)
    moved = {entry["name"]: entry for entry in cnnviz.weight_changes(model, other)}
    assert moved["conv1/kernel"]["relative_change"] > 0.1
    assert moved["conv1/kernel"]["before"].shape == (3 * 3 * 3 * 4,)
    smaller = cnnviz.build_model(cnnviz.ConvNetConfig(input_shape=(24, 24, 3), num_classes=3, conv_blocks=1))
    with pytest.raises(ConfigError, match="not the same design"):
        cnnviz.weight_changes(model, smaller)


def test_a_fresh_copy_is_the_same_design_newly_initialized_the_same_way_for_a_seed(model):
    before = [weights.copy() for weights in model.get_weights()]
    first, again, other = fresh_copy(model, seed=1), fresh_copy(model, seed=1), fresh_copy(model, seed=2)
    assert [w.shape for w in first.get_weights()] == [w.shape for w in before]
    kernel = first.get_layer("conv1").kernel
    assert not np.array_equal(kernel, model.get_layer("conv1").kernel)
    np.testing.assert_array_equal(kernel, again.get_layer("conv1").kernel)
    assert not np.array_equal(kernel, other.get_layer("conv1").kernel)
    for original, now in zip(before, model.get_weights()):
        np.testing.assert_array_equal(original, now)


def test_tile_lays_images_out_in_rows():
    images = np.arange(5 * 2 * 2).reshape(5, 2, 2).astype(np.float32)
    mosaic = render.tile(images, columns=3, padding=1, fill=-1)
    assert mosaic.shape == (2 * 3 - 1, 3 * 3 - 1)
    np.testing.assert_array_equal(mosaic[3:5, 3:5], images[4])
    assert mosaic[2, 0] == -1 and mosaic[3, 6] == -1


def test_no_view_changes_the_model(model):
    image = np.random.default_rng(0).integers(0, 255, (24, 24, 3), dtype=np.uint8)
    weights_before = [w.copy() for w in model.get_weights()]
    output_before = np.asarray(model(image[None].astype(np.float32)))
    cnnviz.feature_maps(model, image)
    cnnviz.filter_images(model, "conv1", filters=[0], steps=3)
    cnnviz.class_images(model, classes=[1], steps=3)
    cnnviz.kernel_images(model)
    cnnviz.weight_histograms(model)
    cnnviz.weight_changes(model, model)
    for before, after in zip(weights_before, model.get_weights()):
        np.testing.assert_array_equal(before, after)
    np.testing.assert_array_equal(output_before, np.asarray(model(image[None].astype(np.float32))))
