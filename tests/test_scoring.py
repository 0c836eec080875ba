"""The explanation scoreboard (deletion, insertion, pointing, sanity, cost), penultimate features,
and "why A and not B": checked against a naive second implementation, hand computations and the
shipped shapes model."""

from pathlib import Path

import keras
import numpy as np
import pytest

import cnnviz
from cnnviz import runs, scoring
from cnnviz.errors import ConfigError
from cnnviz.scoring import ScoreRow, recommend

SHAPES_MODEL = Path(__file__).resolve().parent.parent / "assets" / "models" / "shapes.keras"


@pytest.fixture(scope="module")
def shapes_model():
    return cnnviz.load_model(SHAPES_MODEL)


@pytest.fixture(scope="module")
def shapes_data(shapes_model):
    """The shapes test split the model never saw, as `cnnviz score --data shapes` loads it."""
    return runs.evaluation_data(shapes_model, "shapes")


@pytest.fixture(scope="module")
def shapes_test(shapes_data):
    return shapes_data.test


@pytest.fixture(scope="module")
def gradcam_board(shapes_model, shapes_data):
    """Grad-CAM at the default layer on 100 correctly classified test images, with the random row."""
    return cnnviz.score_explanations(
        shapes_model, shapes_data, methods=["gradcam"], layers=["act4"], images=100
    )


# ---------------------------------------------------------------- a naive second implementation


def _naive_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """A Gaussian blur written out: a kernel truncated at 4 sigma, edges repeated, rows then columns."""
    radius = int(4 * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(image.astype(np.float64), ((radius, radius), (radius, radius), (0, 0)), mode="edge")
    height, width = image.shape[:2]
    rows = sum(weight * padded[i : i + height, :, :] for i, weight in enumerate(kernel))
    return sum(weight * rows[:, i : i + width, :] for i, weight in enumerate(kernel))


def _naive_aucs(model, image, heatmap, class_index, steps, deletion_fill, sigma_share=0.05):
    """Deletion and insertion AUC of one image, one step at a time, with the model's own softmax."""
    height, width, _ = image.shape
    pixels = height * width
    flat_map = heatmap.ravel().tolist()
    order = sorted(range(pixels), key=lambda pixel: -flat_map[pixel])  # stable: ties in reading order
    blur = _naive_blur(image, sigma_share * max(height, width))
    black = np.zeros_like(image, dtype=np.float64)
    areas = []
    for start, end in (
        (image.astype(np.float64), black if deletion_fill == "black" else blur),
        (blur, image.astype(np.float64)),
    ):
        curve = []
        for step in range(steps + 1):
            count = step * pixels // steps
            changed = start.copy()
            for pixel in order[:count]:
                changed[pixel // width, pixel % width, :] = end[pixel // width, pixel % width, :]
            probabilities = np.asarray(model(changed[None].astype(np.float32), training=False))[0]
            curve.append(float(probabilities[class_index]))
        areas.append(sum((curve[k] + curve[k + 1]) / 2 for k in range(steps)) / steps)
    return areas


@pytest.mark.parametrize(("method", "deletion_fill"), [("gradcam", "blur"), ("saliency", "black")])
def test_scoreboard_aucs_agree_with_a_naive_loop_within_1e_5(
    shapes_model, shapes_data, shapes_test, method, deletion_fill
):
    steps = 8
    board = cnnviz.score_explanations(
        shapes_model,
        shapes_data,
        methods=[method],
        layers=["act4"],
        images=4,
        steps=steps,
        deletion_fill=deletion_fill,
    )
    images = shapes_test.images[board.indices]
    heatmaps = cnnviz.explain(shapes_model, images, method=method, class_index=board.classes, layer="act4")
    naive = np.array(
        [
            _naive_aucs(shapes_model, image, heatmap, int(label), steps, deletion_fill)
            for image, heatmap, label in zip(images, heatmaps, board.classes)
        ]
    )
    row = board.row(method)
    assert abs(row.deletion_auc - naive[:, 0].mean()) <= 1e-5
    assert abs(row.insertion_auc - naive[:, 1].mean()) <= 1e-5


def test_auc_is_the_trapezoid_area_on_the_unit_interval():
    # A straight fall from 1 to 0: half; a constant: itself; two steps 1, 0.5, 0: (0.75 + 0.25) / 2.
    assert scoring.auc(np.linspace(1, 0, 17)[None])[0] == pytest.approx(0.5)
    assert scoring.auc(np.full((1, 5), 0.3))[0] == pytest.approx(0.3)
    assert scoring.auc(np.array([[1.0, 0.5, 0.0]]))[0] == pytest.approx(0.5)


def test_perturbation_path_changes_the_hottest_pixels_first_and_ends_at_the_fill():
    image = np.full((1, 4, 4, 3), 200.0, np.float32)
    heatmap = np.arange(16, dtype=np.float32)[::-1].reshape(1, 4, 4)  # pixel 0 hottest
    path = scoring.perturbation_path(image, heatmap, "deletion", steps=4, deletion_fill="black")
    assert path.shape == (1, 5, 4, 4, 3)
    assert (path[0, 0] == 200).all() and (path[0, -1] == 0).all()
    first_step = path[0, 1, ..., 0].ravel()
    assert (first_step[:4] == 0).all() and (first_step[4:] == 200).all()  # the four hottest, in reading order
    inserted = scoring.perturbation_path(image, heatmap, "insertion", steps=4)
    np.testing.assert_allclose(inserted[0, -1], image[0])


# ---------------------------------------------------------------- the targets on the shipped model


def test_gradcam_beats_random_on_deletion_and_insertion_and_passes_pointing_and_sanity(gradcam_board):
    gradcam, chance = gradcam_board.row("gradcam", "act4"), gradcam_board.row("random")
    assert gradcam_board.n == 100
    assert gradcam.deletion_auc < chance.deletion_auc
    assert gradcam.insertion_auc > chance.insertion_auc
    assert gradcam.pointing >= 0.9
    assert gradcam.sanity_correlation < 0.5
    assert chance.pointing < 0.5  # chance really is chance: a random pixel is rarely inside the box


def test_scoreboard_json_has_every_field_and_a_recommendation_with_its_reason(gradcam_board):
    payload = gradcam_board.to_dict()
    assert set(payload) == {"methods", "recommended", "n"}
    fields = {
        "method",
        "layer",
        "deletion_auc",
        "insertion_auc",
        "pointing",
        "energy",
        "sanity_correlation",
        "ms_per_image",
    }
    assert all(set(row) == fields for row in payload["methods"])
    assert [row["method"] for row in payload["methods"]] == ["gradcam", "random"]
    assert payload["recommended"]["method"] == "gradcam" and payload["recommended"]["layer"] == "act4"
    assert "sanity" in payload["recommended"]["reason"]


def test_default_layers_are_the_last_three_rectified_conv_maps(shapes_model):
    assert cnnviz.introspect.cam_layers(shapes_model) == ["act2", "act3", "act4"]
    assert cnnviz.default_cam_layer(shapes_model) == "act4"


def test_data_without_boxes_gives_no_pointing(shapes_model, shapes_test):
    no_boxes = shapes_test.subset(np.arange(40))
    no_boxes.boxes = None
    board = cnnviz.score_explanations(shapes_model, no_boxes, methods=["saliency"], images=5)
    assert board.row("saliency").pointing is None and board.row("saliency").energy is None


def _row(method, faithfulness, sanity, ms):
    return ScoreRow(method, None, 0.2, 0.2 + faithfulness, None, None, sanity, ms)


def test_recommendation_rule_skips_failed_sanity_and_random_and_breaks_ties_by_speed():
    rows = [
        _row("scorecam", 0.9, 0.8, 1.0),  # best, but fails the sanity check
        _row("occlusion", 0.6, 0.1, 50.0),
        _row("gradcam", 0.6, 0.1, 0.5),  # ties occlusion: faster wins
        _row("saliency", 0.4, 0.1, 0.1),
        _row("random", 0.95, 0.0, 0.0),
    ]
    assert recommend(rows)["method"] == "gradcam"
    assert recommend([rows[0], rows[-1]])["method"] is None


def test_bad_methods_layers_data_and_counts_are_clear_errors(shapes_model, shapes_data):
    with pytest.raises(ConfigError, match="unknown method 'nope'"):
        cnnviz.score_explanations(shapes_model, shapes_data, methods=["nope"])
    with pytest.raises(ConfigError, match="no layer 'conv9'.*act2, act3, act4"):
        cnnviz.score_explanations(shapes_model, shapes_data, methods=["gradcam"], layers=["conv9"])
    with pytest.raises(ConfigError, match="images must be"):
        cnnviz.score_explanations(shapes_model, shapes_data, images=0)
    with pytest.raises(ConfigError, match="evaluation_data"):
        cnnviz.score_explanations(shapes_model, "shapes")


# ---------------------------------------------------------------- features and "why A and not B"


def test_features_are_what_the_logits_layer_reads(shapes_model, shapes_test):
    images = shapes_test.images[:6]
    pooled = keras.Model(shapes_model.input, shapes_model.get_layer("global_pool").output)
    expected = np.asarray(pooled(images.astype(np.float32), training=False))
    vectors = cnnviz.features(shapes_model, images)
    assert vectors.shape == (6, 128)
    np.testing.assert_allclose(vectors, expected, atol=1e-5)
    # The logits are a dense layer of exactly these features.
    kernel, bias = shapes_model.get_layer("logits").get_weights()
    logits = keras.Model(shapes_model.input, shapes_model.get_layer("logits").output)(
        images.astype(np.float32)
    )
    np.testing.assert_allclose(vectors @ kernel + bias, np.asarray(logits), atol=1e-4)


def test_contrast_map_sign_raising_marked_pixels_raises_logit_a_over_b(shapes_model, shapes_test):
    """On images of A the model calls B, brightening what the contrast map marks raises logit A - logit B;
    brightening the pixels with the most negative gradient lowers it."""
    from cnnviz.explanations import class_scores, contrastive_gradients

    predicted = cnnviz.predict_probabilities(shapes_model, shapes_test.images).argmax(axis=1)
    wrong = np.flatnonzero(predicted != shapes_test.labels)[:5]
    assert len(wrong) >= 3, "the test split should hold a few mistakes to contrast"
    for index in wrong:
        image = shapes_test.images[index].astype(np.float32)
        a, b = int(shapes_test.labels[index]), int(predicted[index])

        def margin(x, a=a, b=b):
            return float(
                class_scores(shapes_model, x[None], a)[0] - class_scores(shapes_model, x[None], b)[0]
            )

        marks = cnnviz.contrastive_map(shapes_model, image[None], a, b)[0]
        gradient = contrastive_gradients(shapes_model, image[None], a, b)[0]
        marked = marks >= np.quantile(marks, 0.95)
        against = gradient <= np.quantile(gradient, 0.05)
        raised, lowered = image.copy(), image.copy()
        raised[marked] += 2.0
        lowered[against] += 2.0
        assert margin(raised) > margin(image)
        assert margin(lowered) < margin(image)


def test_why_not_gives_three_maps_and_nearest_training_images_of_each_class(shapes_model):
    data = cnnviz.load_dataset("shapes", seed=0)
    image = data.test.images[0]
    why = cnnviz.why_not(shapes_model, image, "square", "star", examples=data.train, k=3)
    assert why.target == 1 and why.foil == 3
    for heatmap in (why.target_map, why.foil_map, why.contrast_map):
        assert heatmap.shape == (64, 64) and heatmap.max() == pytest.approx(1.0)
    assert why.target_examples.shape == (3, 64, 64, 3)
    assert (data.train.labels[why.target_example_indices] == 1).all()
    assert (data.train.labels[why.foil_example_indices] == 3).all()
    # Nearest means nearest: no other square lies closer in the penultimate layer.
    query = cnnviz.features(shapes_model, image)
    squares = np.flatnonzero(data.train.labels == 1)
    distances = np.linalg.norm(cnnviz.features(shapes_model, data.train.images[squares]) - query, axis=1)
    np.testing.assert_array_equal(why.target_example_indices, squares[np.argsort(distances)[:3]])
    assert "square" in why.sentence and "star" in why.sentence


def test_why_not_refuses_one_class_twice_and_an_unknown_class(shapes_model):
    image = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(ConfigError, match="two different classes"):
        cnnviz.why_not(shapes_model, image, "star", 3)
    with pytest.raises(ConfigError, match="'hexagon'"):
        cnnviz.why_not(shapes_model, image, "hexagon", "star")


def test_pointing_and_energy_by_hand_with_inclusive_boxes():
    heatmaps = np.zeros((2, 8, 8), np.float32)
    heatmaps[0, 5, 7] = 3.0  # hottest at row 5, column 7: on the box's inclusive corner
    heatmaps[0, 0, 0] = 1.0  # a quarter of the total lies outside
    heatmaps[1, 2, 2] = 1.0  # hottest outside its box
    heatmaps[1, 6, 6] = 0.5
    boxes = np.array([[7, 5, 7, 5], [4, 4, 7, 7]])
    pointing, energy = scoring._pointing(heatmaps, boxes)
    assert pointing == pytest.approx(0.5)
    assert energy == pytest.approx((3 / 4 + 0.5 / 1.5) / 2)


def test_sanity_is_the_mean_rank_correlation_and_a_flat_map_shares_nothing():
    ramp = np.arange(16, dtype=np.float32).reshape(1, 4, 4)
    assert scoring._sanity(ramp, ramp**2) == pytest.approx(1.0)  # same order: 1
    assert scoring._sanity(ramp, -ramp) == pytest.approx(-1.0)
    assert scoring._sanity(ramp, np.zeros_like(ramp)) == 0.0
    both = np.concatenate([ramp, ramp])
    assert scoring._sanity(both, np.concatenate([ramp, -ramp])) == pytest.approx(0.0)


def test_a_model_without_a_conv_map_is_scored_and_contrasted_with_the_methods_that_need_none():
    import keras

    inputs = keras.Input((12, 12, 1))
    x = keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs))
    logits = keras.layers.Dense(2, name="logits")(keras.layers.Dense(8, activation="relu")(x))
    model = keras.Model(inputs, keras.layers.Softmax(name="probs")(logits))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (30, 12, 12, 1)).astype(np.uint8)
    labels = cnnviz.predict_probabilities(model, images).argmax(axis=1)  # all "right": something to score
    from cnnviz.data import Split

    board = cnnviz.score_explanations(model, Split(images, labels.astype(np.int64)), images=5)
    assert {row.method for row in board.rows} == {
        name for name, method in cnnviz.METHODS.items() if not method.needs_layer
    } | {"random"}
    assert cnnviz.features(model, images[:3]).shape == (3, 8)
    why = cnnviz.why_not(model, images[0], "class_0", "class_1", examples=(images, labels))
    assert why.method == "saliency" and why.target_map.shape == (12, 12)
    with pytest.raises(ConfigError, match="k must be"):
        cnnviz.why_not(model, images[0], 0, 1, k=0)
