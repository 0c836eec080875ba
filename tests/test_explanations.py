"""Heatmaps: contracts, correctness against tf-keras-vis and a hand computation,
the pointing game, sanity checks, nested and Sequential models, no mutation."""

from pathlib import Path

import keras
import numpy as np
import pytest
from keras import layers

import cnnviz
from cnnviz import explanations, render
from cnnviz.errors import ConfigError
from cnnviz.shapes import generate_shapes
from cnnviz.weights import fresh_copy

from .conftest import run_in_a_fresh_python

SHAPES_MODEL = Path(__file__).resolve().parent.parent / "assets" / "models" / "shapes.keras"
# A seed the default model never trained on (training uses dataset seed 0).
UNSEEN_SEED = 2026


@pytest.fixture(scope="module")
def shapes_model():
    return cnnviz.load_model(SHAPES_MODEL)


@pytest.fixture(scope="module")
def unseen_shapes():
    return generate_shapes(160, seed=UNSEEN_SEED)


def _small_cnn(seed: int = 0, input_shape=(24, 24, 3)):
    return cnnviz.build_model(
        cnnviz.ConvNetConfig(
            input_shape=input_shape, num_classes=3, conv_blocks=2, filters=4, batch_norm=True
        ),
        seed=seed,
    )


def _max_points_inside(heatmaps, boxes):
    count = len(heatmaps)
    rows, columns = np.unravel_index(heatmaps.reshape(count, -1).argmax(axis=1), heatmaps.shape[1:])
    return (columns >= boxes[:, 0]) & (columns < boxes[:, 2]) & (rows >= boxes[:, 1]) & (rows < boxes[:, 3])


@pytest.mark.parametrize("method", list(explanations.METHODS))
def test_explain_contract_every_method(shapes_model, unseen_shapes, method):
    images = unseen_shapes[0][:3]
    heatmaps = cnnviz.explain(shapes_model, images, method=method)
    assert heatmaps.shape == (3, 64, 64)
    assert heatmaps.dtype == np.float32
    assert heatmaps.min() >= 0.0
    np.testing.assert_allclose(heatmaps.reshape(3, -1).max(axis=1), 1.0, atol=1e-6)
    # A different class gives a different map.
    other = cnnviz.explain(shapes_model, images[:1], method=method, class_index=3)
    first = cnnviz.explain(shapes_model, images[:1], method=method, class_index=0)
    assert np.abs(other - first).max() > 0.05


def test_explain_returns_an_array_at_the_images_size_and_explain_each_a_map_per_size(
    shapes_model, unseen_shapes
):
    image = unseen_shapes[0][0]
    big = np.asarray(cnnviz.images.resize_image(image, (100, 80)))
    one = cnnviz.explain(shapes_model, big)
    assert isinstance(one, np.ndarray) and one.shape == (1, 100, 80)
    assert cnnviz.explain(shapes_model, [big, big]).shape == (2, 100, 80)
    with pytest.raises(ConfigError, match="explain_each"):
        cnnviz.explain(shapes_model, [big, image])
    mixed = cnnviz.explain_each(shapes_model, [big, image])
    assert isinstance(mixed, list) and mixed[0].shape == (100, 80) and mixed[1].shape == (64, 64)
    assert all(heatmap.min() >= 0.0 and heatmap.max() == pytest.approx(1.0) for heatmap in mixed)
    np.testing.assert_allclose(mixed[0], one[0], atol=1e-6)  # the same map either way


def test_default_layer_is_last_rectified_conv_map(shapes_model):
    assert explanations.default_cam_layer(shapes_model) == "act4"
    # A 1x1 "logits" convolution is never chosen.
    inputs = keras.Input((16, 16, 3))
    x = layers.Conv2D(4, 3, activation="relu", name="features")(inputs)
    x = layers.GlobalAveragePooling2D(keepdims=True)(x)
    x = layers.Conv2D(2, 1, name="conv_logits")(x)
    outputs = layers.Flatten()(x)
    assert explanations.default_cam_layer(keras.Model(inputs, outputs)) == "features"


def test_our_gradcam_equals_tf_keras_vis(shapes_model, unseen_shapes):
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.utils.scores import CategoricalScore

    images = unseen_shapes[0][:8]
    classes = [0, 1, 2, 3, 3, 2, 1, 0]
    logits_model = keras.Model(shapes_model.input, shapes_model.get_layer("logits").output)
    theirs = Gradcam(logits_model, clone=True)(
        CategoricalScore(classes),
        images.astype(np.float32),
        penultimate_layer="act4",
        seek_penultimate_conv_layer=False,  # else it walks back from act4 to conv4
        expand_cam=False,
        normalize_cam=False,
    )
    ours = explanations.class_activation_maps(shapes_model, images, "gradcam", classes, "act4")
    assert ours.shape == theirs.shape
    normalize = render.normalize_maps
    assert np.abs(normalize(ours) - normalize(np.asarray(theirs))).max() <= 1e-3


def test_pointing_game_of_the_shipped_model_on_unseen_shapes(shapes_model, unseen_shapes):
    images, labels, boxes = unseen_shapes
    correct = cnnviz.predict_probabilities(shapes_model, images).argmax(axis=1) == labels
    assert correct.mean() > 0.9
    heatmaps = cnnviz.explain(shapes_model, images[correct], method="gradcam")
    assert _max_points_inside(heatmaps, boxes[correct]).mean() >= 0.9


def test_occlusion_drop_is_larger_on_the_shape(shapes_model, unseen_shapes):
    images, _, boxes = unseen_shapes
    drops = explanations.occlusion_map(shapes_model, images[:6], patch_size=8, stride=4)
    for drop, (left, top, right, bottom) in zip(drops, boxes[:6]):
        inside = np.zeros(drop.shape, bool)
        inside[top:bottom, left:right] = True
        assert drop[inside].mean() > drop[~inside].mean()


def test_integrated_gradients_completeness(shapes_model, unseen_shapes):
    images = unseen_shapes[0][:4]
    attributions = explanations.integrated_gradients(shapes_model, images, steps=64)
    predicted = cnnviz.predict_probabilities(shapes_model, images).argmax(axis=1)
    expected = explanations.class_scores(shapes_model, images, predicted) - explanations.class_scores(
        shapes_model, np.zeros_like(images), predicted
    )
    totals = attributions.reshape(4, -1).sum(axis=1)
    np.testing.assert_allclose(totals, expected, rtol=0.05)


@pytest.mark.parametrize("method", ["saliency", "integrated_gradients", "gradcam"])
def test_sanity_check_randomized_weights_change_the_map(shapes_model, unseen_shapes, method):
    """Adebayo et al. 2018: a map that survives weight randomization explains nothing."""
    from scipy.stats import spearmanr

    images = unseen_shapes[0][:6]
    random_model = fresh_copy(shapes_model, seed=1)  # same design, fresh weights
    trained = cnnviz.explain(shapes_model, images, method=method, class_index=0)
    randomized = cnnviz.explain(random_model, images, method=method, class_index=0)
    # Only maps that say something count (Grad-CAM's ReLU can zero a map for a class not in the image);
    # a flat map from the random model shares nothing with the trained one.
    pairs = [(a.ravel(), b.ravel()) for a, b in zip(trained, randomized) if np.ptp(a) > 0]
    assert len(pairs) >= 3
    correlations = [spearmanr(a, b)[0] if np.ptp(b) > 0 else 0.0 for a, b in pairs]
    assert np.mean(correlations) < 0.5


def test_score_cam_channel_cap_is_the_fast_variant(shapes_model, unseen_shapes):
    image = unseen_shapes[0][:1]
    capped = explanations.score_cam(shapes_model, image, max_channels=8)
    full = explanations.score_cam(shapes_model, image, max_channels=None)
    assert capped.shape == full.shape == (1, 64, 64)
    assert not np.allclose(capped, full)


@pytest.mark.parametrize("method", list(explanations.METHODS))
def test_no_method_changes_the_model(method):
    model = _small_cnn()
    images = np.random.default_rng(0).integers(0, 255, (2, 24, 24, 3), dtype=np.uint8)
    weights_before = [w.copy() for w in model.get_weights()]
    output_before = np.asarray(model(images.astype(np.float32)))
    activation_before = model.layers[-1].activation
    cnnviz.explain(model, images, method=method)
    for before, after in zip(weights_before, model.get_weights()):
        np.testing.assert_array_equal(before, after)
    assert model.layers[-1].activation is activation_before
    np.testing.assert_array_equal(output_before, np.asarray(model(images.astype(np.float32))))


def _nested_model():
    """A keras.applications backbone used as one layer, like transfer learning."""
    keras.utils.set_random_seed(0)
    backbone = keras.applications.MobileNetV2(
        input_shape=(32, 32, 3), alpha=0.35, include_top=False, weights=None
    )
    inputs = keras.Input((32, 32, 3))
    x = layers.Rescaling(1 / 127.5, offset=-1, name="scale")(inputs)
    x = backbone(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = layers.Dense(3, activation="softmax", name="head")(x)
    return keras.Model(inputs, outputs), backbone


def _small_nested_model():
    """A small Functional backbone as a layer: untrained, but its outputs are not vanishing."""
    keras.utils.set_random_seed(0)
    backbone_input = keras.Input((32, 32, 3))
    x = layers.Conv2D(8, 3, activation="relu", name="b_conv1")(backbone_input)
    x = layers.Conv2D(8, 3, strides=2, activation="relu", name="b_conv2")(x)
    backbone = keras.Model(backbone_input, x, name="small_backbone")
    inputs = keras.Input((32, 32, 3))
    x = backbone(layers.Rescaling(1 / 255)(inputs))
    outputs = layers.Dense(3, activation="softmax")(layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, outputs), backbone


@pytest.mark.parametrize("method", list(explanations.METHODS))
def test_nested_backbone_works_for_every_method(method):
    # Untrained MobileNetV2 features are ~1e-10, too small for any probability
    # to move when a patch is covered; occlusion gets the small backbone.
    model, backbone = _small_nested_model() if method == "occlusion" else _nested_model()
    images = np.random.default_rng(1).integers(0, 255, (2, 32, 32, 3), dtype=np.uint8)
    options = {"max_channels": 8} if method == "scorecam" else {}
    options |= {"samples": 4} if method == "smoothgrad" else {}
    options |= {"steps": 8} if method == "integrated_gradients" else {}
    heatmaps = cnnviz.explain(model, images, method=method, **options)
    assert heatmaps.shape == (2, 32, 32)
    assert np.isfinite(heatmaps).all() and heatmaps.min() >= 0
    if method != "occlusion":
        assert heatmaps.max() == pytest.approx(1.0)
    else:  # an untrained model's probability may not drop anywhere; the raw map must still move
        assert np.abs(explanations.occlusion_map(model, images)).max() > 0


def test_nested_gradcam_equals_a_hand_computation():
    import tensorflow as tf

    model, backbone = _nested_model()
    layer_name = explanations.default_cam_layer(model)
    assert layer_name.startswith(f"{backbone.name}/")
    inner_name = layer_name.split("/")[-1]
    images = np.random.default_rng(2).integers(0, 255, (3, 32, 32, 3), dtype=np.uint8)
    tapped = keras.Model(backbone.input, [backbone.get_layer(inner_name).output, backbone.output])
    head = model.get_layer("head")
    x = tf.constant(images, tf.float32)
    with tf.GradientTape() as tape:
        activations, features = tapped(model.get_layer("scale")(x))
        logits = tf.matmul(model.get_layer("pool")(features), head.kernel) + head.bias
        score = tf.reduce_sum(logits[:, 1])
    gradients = tape.gradient(score, activations)
    expected = np.maximum(
        np.einsum("nhwc,nc->nhw", activations.numpy(), gradients.numpy().mean(axis=(1, 2))), 0
    )
    ours = explanations.class_activation_maps(model, images, "gradcam", class_index=1, layer=layer_name)
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-6)


def test_sequential_models_work_for_every_method():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((20, 20, 1)),
            layers.Conv2D(4, 3, activation="relu", name="c1"),
            layers.MaxPooling2D(),
            layers.Conv2D(6, 3, activation="relu", name="c2"),
            layers.GlobalAveragePooling2D(),
            layers.Dense(2, activation="softmax"),
        ]
    )
    images = np.random.default_rng(0).integers(0, 255, (2, 20, 20, 1), dtype=np.uint8)
    assert explanations.default_cam_layer(model) == "c2"
    for method in explanations.METHODS:
        options = {"patch_size": 4, "stride": 2} if method == "occlusion" else {}
        heatmaps = cnnviz.explain(model, images, method=method, **options)
        assert heatmaps.shape == (2, 20, 20) and np.isfinite(heatmaps).all(), method
        if method != "occlusion":  # an untrained model's probability may not drop anywhere
            assert heatmaps.max() == pytest.approx(1.0), method


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m, x: cnnviz.explain(m, x, method="magic"), "unknown method 'magic'"),
        (lambda m, x: cnnviz.explain(m, x, layer="nope"), "no layer named 'nope'"),
        (lambda m, x: cnnviz.explain(m, x, class_index=7), "class_index must be in 0..2"),
        (lambda m, x: cnnviz.explain(m, x, method="occlusion", patch_size=99), "patch_size must be"),
        (lambda m, x: cnnviz.explain(m, x, method="saliency", samples=3), "saliency does not take samples"),
        (lambda m, x: cnnviz.explain(m, x, layer="rescale"), "give no gradient at layer 'rescale'"),
        (lambda m, x: render.overlay(x[0], np.ones((4, 4)), colormap="nope"), "unknown colormap"),
    ],
)
def test_bad_arguments_get_clear_messages(call, message):
    model = _small_cnn()
    images = np.zeros((1, 24, 24, 3), np.uint8)
    with pytest.raises(ConfigError, match=message):
        call(model, images)


def test_cam_on_a_model_without_convolutions_says_what_to_use():
    inputs = keras.Input((8, 8, 1))
    outputs = layers.Dense(2, activation="softmax")(layers.Flatten()(inputs))
    model = keras.Model(inputs, outputs)
    with pytest.raises(ConfigError, match="saliency"):
        cnnviz.explain(model, np.zeros((1, 8, 8, 1), np.uint8))
    assert cnnviz.explain(model, np.ones((1, 8, 8, 1), np.uint8) * 9, method="saliency").shape == (1, 8, 8)


def test_overlay_blends_with_the_given_opacity():
    image = np.full((10, 12, 3), 200, np.uint8)
    heatmap = np.zeros((5, 6), np.float32)
    heatmap[0, 0] = 1.0
    untouched = render.overlay(image, heatmap, opacity=0.0)
    np.testing.assert_array_equal(untouched, image)
    full = render.overlay(image, heatmap, colormap="Viridis", opacity=1.0)
    lut = render.colormap_lut("Viridis")
    assert full.shape == (10, 12, 3) and full.dtype == np.uint8
    np.testing.assert_array_equal(full[-1, -1], lut[0])  # cold corner = the colormap's low end
    gray = render.overlay(np.full((10, 12, 1), 50, np.uint8), heatmap, opacity=0.5)
    assert gray.shape == (10, 12, 3)
    with pytest.raises(ConfigError, match="opacity"):
        render.overlay(image, heatmap, opacity=2)


def _independent_shapes(count: int, seed: int = 7):
    """Shapes drawn with plain PIL on flat backgrounds: not our generator's code, textures or colours."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    images, labels, boxes = [], [], []
    for index in range(count):
        label = index % 4
        background = tuple(int(v) for v in rng.integers(0, 256, 3))
        ink = background
        while sum(abs(a - b) for a, b in zip(background, ink)) < 150:
            ink = tuple(int(v) for v in rng.integers(0, 256, 3))
        canvas = Image.new("RGB", (256, 256), background)
        draw = ImageDraw.Draw(canvas)
        radius = rng.uniform(40, 85)
        cx, cy = rng.uniform(radius, 256 - radius, 2)
        angle = rng.uniform(0, 2 * np.pi)
        if label == 0:
            draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=ink)
            points = [(cx - radius, cy - radius), (cx + radius, cy + radius)]
        else:
            corners, radii = {
                1: (4, [radius] * 4),
                2: (3, [radius] * 3),
                3: (10, [radius, radius * 0.45] * 5),
            }[label]
            points = [
                (
                    cx + radii[j] * np.cos(angle + 2 * np.pi * j / corners),
                    cy + radii[j] * np.sin(angle + 2 * np.pi * j / corners),
                )
                for j in range(corners)
            ]
            draw.polygon(points, fill=ink)
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        images.append(np.asarray(canvas.resize((64, 64), Image.Resampling.LANCZOS)))
        labels.append(label)
        boxes.append([min(xs) / 4, min(ys) / 4, max(xs) / 4, max(ys) / 4])
    return np.stack(images), np.array(labels), np.array(boxes)


def test_the_shipped_model_and_gradcam_hold_on_shapes_drawn_independently(shapes_model):
    images, labels, boxes = _independent_shapes(120)
    correct = cnnviz.predict_probabilities(shapes_model, images).argmax(axis=1) == labels
    assert correct.mean() >= 0.95
    heatmaps = cnnviz.explain(shapes_model, images[correct], method="gradcam")
    assert _max_points_inside(heatmaps, boxes[correct]).mean() >= 0.9


@pytest.mark.parametrize("size", [(64, 64), (7, 9), (3, 130), (1, 1)])
def test_bilinear_resize_matches_tensorflow_within_1e_5(size):
    import tensorflow as tf

    maps = np.random.default_rng(4).random((3, 8, 12)).astype(np.float32) * 5
    theirs = tf.image.resize(maps[..., None], size, method="bilinear").numpy()[..., 0]
    ours = render.resize_maps(maps, size)
    assert ours.shape == (3, *size) and ours.dtype == np.float32
    assert np.abs(ours - theirs).max() <= 1e-5


def test_rendering_a_heatmap_loads_no_tensorflow():
    code = (
        "import sys, numpy as np\n"
        "from cnnviz import render\n"
        "maps = render.normalize_maps(render.resize_maps(np.random.rand(1, 4, 4), (32, 32)))\n"
        "picture = render.overlay(np.zeros((32, 32, 3), np.uint8), maps[0])\n"
        "assert picture.shape == (32, 32, 3) and picture.max() > 0\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n"
    )
    run_in_a_fresh_python(code)


def test_the_registry_says_which_methods_read_a_layer_and_gives_each_a_label():
    assert [name for name, method in explanations.METHODS.items() if method.needs_layer] == [
        "gradcam",
        "gradcam++",
        "layercam",
        "scorecam",
    ]
    assert all(method.label and method.name == name for name, method in explanations.METHODS.items())


def test_a_new_method_is_one_registry_entry(monkeypatch, shapes_model, unseen_shapes):
    def centre(model, images, class_index, layer, radius=8):
        maps = np.zeros((len(images), 64, 64), np.float32)
        maps[:, 32 - radius : 32 + radius, 32 - radius : 32 + radius] = 1
        return maps

    monkeypatch.setitem(
        explanations.METHODS, "centre", explanations.Method("centre", "Centre", centre, options={"radius": 8})
    )
    heatmaps = cnnviz.explain(shapes_model, unseen_shapes[0][:2], method="centre", radius=4)
    assert (
        heatmaps.shape == (2, 64, 64)
        and heatmaps[:, 32, 32].tolist() == [1.0, 1.0]
        and heatmaps[:, 0, 0].sum() == 0
    )


@pytest.mark.slow
def test_a_freshly_trained_shapes_model_points_at_the_shapes():
    """The training code, not the shipped file: a short run (32 px shapes, 8 epochs) must learn to look at
    the shapes, at its 8x8 layer, clearly more often than the same design untrained."""
    data = cnnviz.load_dataset("shapes", num_samples=3000, image_size=32)
    result = cnnviz.train("fast", data, cnnviz.TrainConfig(epochs=8))
    images, labels, boxes = generate_shapes(200, seed=UNSEEN_SEED, image_size=32)
    correct = cnnviz.predict_probabilities(result.model, images).argmax(axis=1) == labels
    assert correct.mean() >= 0.6  # 4 classes: chance is 0.25
    trained = _max_points_inside(
        cnnviz.explain(result.model, images[correct], layer="act3"), boxes[correct]
    ).mean()
    design = cnnviz.preset_config("fast", data.image_shape, 4)
    untrained = np.mean(
        [
            _max_points_inside(
                cnnviz.explain(cnnviz.build_model(design, seed=seed), images[correct], layer="act3"),
                boxes[correct],
            ).mean()
            for seed in (9, 10, 11)
        ]
    )
    assert trained >= 0.55 and trained >= untrained + 0.2
