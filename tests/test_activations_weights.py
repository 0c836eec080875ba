"""Feature maps, activation maximization, kernels, weight histograms and changes."""

from pathlib import Path

import keras
import numpy as np
import pytest

import cnnviz
from cnnviz import activations, render
from cnnviz.errors import ConfigError
from cnnviz.introspect import model_batch
from cnnviz.weights import fresh_copy

SHAPES = Path(__file__).resolve().parent.parent / "assets" / "models" / "shapes.keras"


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


def test_high_frequency_share_of_a_checkerboard_is_all_and_of_a_ramp_is_almost_none():
    checker = (np.indices((16, 16)).sum(axis=0) % 2 * 255).astype(np.uint8)[None, ..., None]
    ramp = np.tile(np.linspace(0, 255, 16), (16, 1))[None, ..., None]
    flat = np.full((1, 16, 16, 3), 128, np.uint8)
    # A checkerboard is all Nyquist; a ramp's energy is at the lowest frequencies (its wrap-around edge aside).
    assert activations.high_frequency_share(checker)[0] == pytest.approx(1.0)
    assert activations.high_frequency_share(ramp)[0] < 0.1
    assert activations.high_frequency_share(flat)[0] == 0.0


def test_fourier_filter_images_are_smoother_and_excite_more_than_pixel_ascent():
    trained = cnnviz.load_model(SHAPES)
    probe = keras.Model(trained.input, trained.get_layer("conv4").output)
    chosen = [0, 1, 2, 3]

    def excitement(images):
        outputs = np.asarray(probe(images.astype(np.float32)))
        return np.mean([outputs[row, ..., unit].mean() for row, unit in enumerate(chosen)])

    fourier = cnnviz.filter_images(trained, "conv4", filters=chosen)
    pixel = cnnviz.filter_images(trained, "conv4", filters=chosen, parameterization="pixel")
    assert fourier.shape == pixel.shape == (4, 64, 64, 3)
    assert (
        activations.high_frequency_share(fourier).mean()
        < 0.75 * activations.high_frequency_share(pixel).mean()
    )
    assert excitement(fourier) > excitement(pixel)


def test_a_filter_behind_a_relu_is_climbed_from_the_value_before_it(model):
    infos = {info.name: info for info in cnnviz.list_layers(model)}
    assert activations._climbed_layer(model, infos["act2"]) == "bn2"
    assert activations._climbed_layer(model, infos["conv2"]) == "conv2"


def _linear_net():
    inputs = keras.Input((29, 31, 1))
    x = keras.layers.Conv2D(2, 3, strides=2, padding="same", name="a")(inputs)
    x = keras.layers.AveragePooling2D(2, name="b")(x)
    x = keras.layers.ZeroPadding2D(((1, 0), (2, 1)), name="c")(x)
    x = keras.layers.Conv2D(2, (5, 3), padding="valid", dilation_rate=(1, 2), name="d")(x)
    skip = keras.layers.Conv2D(2, 1, name="e")(x)
    x = keras.layers.Add(name="f")([x, keras.layers.Conv2D(2, 3, padding="same", name="g")(skip)])
    return keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x)))


@pytest.mark.parametrize("layer", ["a", "b", "d", "f"])
def test_receptive_field_is_where_a_linear_net_units_gradient_is_nonzero(layer):
    import tensorflow as tf

    net = _linear_net()
    keras.utils.set_random_seed(0)
    for weights in net.weights:
        weights.assign(np.random.default_rng(1).uniform(0.5, 1.5, weights.shape).astype(np.float32))
    field = activations.receptive_field(net, layer)
    tap = keras.Model(net.input, net.get_layer(layer).output)
    image = tf.Variable(np.zeros((1, 29, 31, 1), np.float32))
    rows, columns = tap.output.shape[1:3]
    for row, column in [(0, 0), (rows // 2, columns // 2), (rows - 1, columns - 1)]:
        with tf.GradientTape() as tape:
            value = tf.reduce_sum(tap(image)[0, row, column])
        touched = np.argwhere(np.abs(tape.gradient(value, image).numpy()[0, ..., 0]) > 0)
        top, left, bottom, right = field.window(row, column)
        inside = [max(top, 0), max(left, 0)], [min(bottom, 29) - 1, min(right, 31) - 1]
        # Every pixel that moves the unit lies in its field...
        assert np.all(touched.min(axis=0) >= inside[0]) and np.all(touched.max(axis=0) <= inside[1])
        if (row, column) == (rows // 2, columns // 2):
            # ...and, with positive weights, a central unit's field (in the image) is exactly the pixels that move it.
            assert touched.min(axis=0).tolist() == inside[0] and touched.max(axis=0).tolist() == inside[1]


def test_where_branches_of_different_shapes_meet_the_field_holds_both():
    import tensorflow as tf

    inputs = keras.Input((15, 15, 1))
    wide = keras.layers.Conv2D(1, (1, 5), padding="same", name="wide")(inputs)
    tall = keras.layers.Conv2D(1, (5, 1), padding="same", name="tall")(inputs)
    joined = keras.layers.Add(name="joined")([wide, tall])
    net = keras.Model(inputs, joined)
    for weights in net.weights:
        weights.assign(np.ones(weights.shape, np.float32))
    field = activations.receptive_field(net, "joined")
    assert field.size == (5, 5) and field.window(7, 7) == (5, 5, 10, 10)
    image = tf.Variable(np.zeros((1, 15, 15, 1), np.float32))
    with tf.GradientTape() as tape:
        value = tf.reduce_sum(net(image)[0, 7, 7])
    touched = np.argwhere(tape.gradient(value, image).numpy()[0, ..., 0] != 0)
    assert touched.min(axis=0).tolist() == [5, 5] and touched.max(axis=0).tolist() == [9, 9]


def test_a_model_that_takes_any_size_has_no_fixed_receptive_field_and_its_patches_are_whole_images():
    inputs = keras.Input((None, None, 3))
    maps = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="conv")(inputs)
    head = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(maps))
    net = keras.Model(inputs, head)
    assert activations.receptive_field(net, "conv") is None
    images = np.random.default_rng(0).integers(0, 255, (5, 16, 16, 3), dtype=np.uint8)
    found = activations.top_patches(net, "conv", images, filters=[0], k=2)
    read, _ = model_batch(net, images)  # the images at the size this model reads them
    np.testing.assert_array_equal(found.patches[0], read[found.image_indices[0]].astype(np.uint8))


def test_a_softmax_activation_is_climbed_as_it_is():
    inputs = keras.Input((8, 8, 3))
    conv = keras.layers.Conv2D(2, 3, padding="same", name="conv")(inputs)
    soft = keras.layers.Activation("softmax", name="soft")(conv)
    relu = keras.layers.Activation("relu", name="rect")(soft)
    net = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(relu)))
    infos = {info.name: info for info in cnnviz.list_layers(net)}
    assert activations._climbed_layer(net, infos["soft"]) == "soft"
    assert activations._climbed_layer(net, infos["rect"]) == "soft"


def test_top_patches_are_the_strongest_images_cut_at_their_strongest_unit(model):
    images = np.random.default_rng(4).integers(0, 255, (30, 24, 24, 3), dtype=np.uint8)
    found = activations.top_patches(model, "act2", images, filters=[1, 3], k=4)
    maps = keras.Model(model.input, model.get_layer("act2").output)(images.astype(np.float32)).numpy()
    field = activations.receptive_field(model, "act2")
    assert found.patches.shape == (2, 4, *field.size, 3) and found.filters == (1, 3)
    for row, channel in enumerate((1, 3)):
        strongest = maps[..., channel].reshape(30, -1).max(axis=1)
        np.testing.assert_array_equal(found.image_indices[row], np.argsort(-strongest, kind="stable")[:4])
        np.testing.assert_allclose(found.activations[row], np.sort(strongest)[::-1][:4], rtol=1e-5)
        first = found.image_indices[row, 0]
        unit = np.unravel_index(maps[first, ..., channel].argmax(), maps.shape[1:3])
        assert tuple(found.positions[row, 0]) == unit
        top, left, bottom, right = field.window(*unit)
        inside = images[first, max(top, 0) : bottom, max(left, 0) : right]
        cut = found.patches[row, 0, max(top, 0) - top :, max(left, 0) - left :][
            : inside.shape[0], : inside.shape[1]
        ]
        np.testing.assert_array_equal(cut, inside)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m: cnnviz.filter_images(m, "nope"), "no layer named 'nope'"),
        (lambda m: cnnviz.filter_images(m, "conv1", filters=[9]), "must be in 0..3"),
        (lambda m: cnnviz.class_images(m, classes=[5]), "must be in 0..2"),
        (lambda m: cnnviz.filter_images(m, "conv1", parameterization="fft"), "must be one of fourier, pixel"),
        (
            lambda m: activations.top_patches(m, "logits", np.zeros((2, 24, 24, 3), np.uint8)),
            "image-like map",
        ),
        (lambda m: activations.top_patches(m, "conv1", np.zeros((0, 24, 24, 3), np.uint8)), "at least one"),
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
