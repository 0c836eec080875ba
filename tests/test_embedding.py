"""2-D maps of penultimate features: PCA, t-SNE, and per-epoch maps turned to match."""

import dataclasses

import numpy as np
import pytest

from cnnviz import embedding
from cnnviz.errors import ConfigError


def _clusters(count=120, dims=20, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 3
    centres = rng.normal(0, 10, (3, dims))
    return (centres[labels] + rng.normal(0, 1, (count, dims))).astype(np.float32), labels


def test_pca_map_is_the_top_two_singular_directions_scaled_to_unit_spread():
    vectors, _ = _clusters()
    points = embedding.project(vectors, "pca")
    centred = vectors - vectors.mean(axis=0)
    _, _, directions = np.linalg.svd(centred, full_matrices=False)
    by_hand = centred @ directions[:2].T
    by_hand /= by_hand.std(axis=0)
    assert points.shape == (120, 2) and points.dtype == np.float32
    for axis in range(2):  # a direction's sign is arbitrary
        sign = np.sign(points[:, axis] @ by_hand[:, axis])
        np.testing.assert_allclose(points[:, axis], sign * by_hand[:, axis], atol=1e-4)


def test_tsne_keeps_each_cluster_together_and_reports_its_iterations():
    vectors, labels = _clusters()
    seen = []
    points = embedding.project(vectors, "tsne", progress=lambda done, total: seen.append((done, total)))
    # Every image's 5 nearest neighbours on the map are of its own cluster.
    neighbours = embedding.nearest(points, points, k=6)[:, 1:]
    assert np.all(labels[neighbours] == labels[:, None])
    # Read from t-SNE's own log, every 50 iterations, in order (not only the final call).
    assert (50, 1000) in seen and (950, 1000) in seen
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)


def test_align_undoes_a_rotation_and_a_mirror():
    reference = np.random.default_rng(1).normal(size=(50, 2)).astype(np.float32)
    angle = 1.1
    turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) @ np.diag([1, -1])
    np.testing.assert_allclose(embedding.align(reference @ turn, reference), reference, atol=1e-5)


@dataclasses.dataclass
class _Snapshot:
    features: np.ndarray


def test_timeline_maps_turn_every_epoch_to_match_the_last_and_skip_epochs_without_features():
    vectors, _ = _clusters()
    mirrored = vectors.copy()
    mirrored[:, 0] *= -1  # the same geometry; PCA may flip any axis
    maps = embedding.timeline_maps([_Snapshot(mirrored), _Snapshot(np.zeros((0, 0))), _Snapshot(vectors)])
    assert maps[1] is None
    np.testing.assert_allclose(maps[0], maps[2], atol=1e-4)


@pytest.mark.parametrize(
    "vectors, method, message",
    [
        (np.zeros((10, 4)), "umap", "one of pca, tsne"),
        (np.zeros((2, 4)), "pca", "at least 3"),
        (np.full((5, 4), np.nan), "pca", "NaN or infinite"),
        (np.zeros(5), "pca", r"\(N, D\)"),
        (np.ones((10, 4)), "tsne", "the same features"),
    ],
)
def test_bad_maps_get_clear_messages(vectors, method, message):
    with pytest.raises(ConfigError, match=message):
        embedding.project(vectors, method)
