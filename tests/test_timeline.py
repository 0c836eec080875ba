"""The training timeline: snapshots before training and after every epoch, kept inside the .keras file,
drawn as PNG strips and a GIF by the CLI."""

import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cnnviz
from cnnviz.errors import ModelFileError
from cnnviz.timeline import probe_indices, timeline_of

from .test_cli import _last_json, _run


@pytest.fixture(scope="module")
def timeline_run():
    rng = np.random.default_rng(0)
    labels = np.arange(96) % 3
    images = rng.integers(0, 90, (96, 20, 20, 3)).astype(np.uint8)
    images[labels == 1, :10] += 150  # bright top half
    images[labels == 2, 10:] += 150  # bright bottom half
    design = cnnviz.ConvNetConfig(input_shape=(20, 20, 3), num_classes=3, conv_blocks=2, filters=4)
    config = cnnviz.TrainConfig(epochs=2, batch_size=16, timeline=5, validation_split=0.25)
    return cnnviz.train(design, (images, labels), config), images, labels


def test_probe_images_are_spread_over_the_classes_in_turn():
    assert probe_indices(np.array([0, 0, 0, 1, 1, 2]), 4).tolist() == [0, 3, 5, 1]
    assert probe_indices(np.array([1, 1, 1]), 5).tolist() == [0, 1, 2]  # fewer images than asked: all


def test_a_snapshot_before_training_and_after_every_epoch(timeline_run):
    result, _, _ = timeline_run
    timeline = result.timeline
    assert [snapshot.epoch for snapshot in timeline] == [0, 1, 2]
    first, last = timeline[0], timeline[-1]
    assert first.val_accuracy is None
    assert [snapshot.val_accuracy for snapshot in timeline[1:]] == pytest.approx(
        result.history["val_accuracy"]
    )
    assert sorted(first.labels.tolist()[:3]) == [0, 1, 2]  # every class among the first probes
    assert first.images.shape == (5, 20, 20, 3) and first.images.dtype == np.uint8
    assert last.probabilities.shape == (5, 3)
    np.testing.assert_allclose(last.probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert last.heatmaps.shape == (5, 20, 20) and last.heatmaps.min() >= 0.0 and last.heatmaps.max() <= 1.0
    assert last.kernels.dtype == np.uint8 and last.kernels.shape == (4, 3, 3, 3)  # 4 first-layer RGB kernels
    assert last.features.dtype == np.float16 and last.features.shape[0] == len(last.feature_labels) == 24
    # The network changes: its kernels and its answers move between epoch 0 and the end.
    assert not np.array_equal(first.kernels, last.kernels)
    assert np.abs(first.probabilities - last.probabilities).max() > 0.01
    # The last snapshot is the returned model's own answer (no best-weights rollback in 2 improving epochs).
    np.testing.assert_allclose(
        cnnviz.predict_probabilities(result.model, first.images), last.probabilities, atol=1e-4
    )


def test_feature_images_are_the_images_whose_features_the_snapshots_keep(timeline_run):
    from cnnviz.embedding import features
    from cnnviz.training.timeline import feature_images

    result, images, labels = timeline_run
    found, found_labels = feature_images((images, labels), cnnviz.TrainConfig(validation_split=0.25))
    last = result.timeline[-1]
    np.testing.assert_array_equal(found_labels, last.feature_labels)
    np.testing.assert_allclose(
        features(result.model, found), last.features.astype(np.float32), rtol=2e-3, atol=2e-3
    )


def test_the_timeline_is_off_unless_asked(tiny_arrays):
    result = cnnviz.train(
        cnnviz.ConvNetConfig(input_shape=(16, 16, 3), num_classes=2, conv_blocks=1, filters=2),
        tiny_arrays,
        cnnviz.TrainConfig(epochs=1),
    )
    assert result.timeline is None and timeline_of(result.model) is None
    with pytest.raises(cnnviz.ConfigError, match="timeline"):
        cnnviz.TrainConfig(timeline=100)


def test_an_epoch_whose_validation_loss_is_nan_gets_no_snapshot_and_is_not_kept():
    import keras

    rng = np.random.default_rng(1)
    labels = np.arange(48) % 3
    images = rng.integers(0, 255, (48, 16, 16, 3)).astype(np.uint8)

    class SpoilAfterEpochTwo(keras.callbacks.Callback):
        """After epoch 2's last batch, before its validation: an infinite logits kernel, so val_loss is NaN."""

        def on_train_batch_end(self, batch, logs=None):
            if self.model.optimizer.iterations.numpy() == 2 * self.params["steps"]:
                kernel = self.model.get_layer("logits").kernel
                kernel.assign(np.full(kernel.shape, np.inf, np.float32))

    design = cnnviz.ConvNetConfig(input_shape=(16, 16, 3), num_classes=3, conv_blocks=1, filters=4)
    config = cnnviz.TrainConfig(epochs=4, batch_size=12, timeline=3, validation_split=0.25)
    result = cnnviz.train(design, (images, labels), config, callbacks=[SpoilAfterEpochTwo()])
    assert result.stop_reason == "nan" and "in epoch 2" in result.message
    assert [snapshot.epoch for snapshot in result.timeline] == [0, 1]  # epoch 2 was rolled back
    assert result.kept_epoch == 1 and not result.kept_best
    assert np.isfinite(result.model.get_layer("logits").kernel.numpy()).all()


def test_the_timeline_travels_inside_the_keras_file(timeline_run, tmp_path):
    result, _, _ = timeline_run
    path = cnnviz.save_model(result.model, tmp_path / "m.keras")
    assert "timeline.npz" in zipfile.ZipFile(path).namelist()
    loaded = timeline_of(cnnviz.load_model(path))
    assert [snapshot.epoch for snapshot in loaded] == [0, 1, 2]
    for saved, original in zip(loaded, result.timeline):
        np.testing.assert_array_equal(saved.images, original.images)
        np.testing.assert_array_equal(saved.kernels, original.kernels)
        np.testing.assert_array_equal(saved.features, original.features)
        np.testing.assert_allclose(
            saved.heatmaps, original.heatmaps, atol=0.5 / 255 + 1e-6
        )  # stored as uint8
        np.testing.assert_allclose(saved.probabilities, original.probabilities)
        assert saved.val_accuracy == original.val_accuracy
    # A damaged timeline entry is the loader's clear message, not a traceback.
    broken = tmp_path / "broken.keras"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(broken, "w") as target:
        for entry in source.infolist():
            data = b"not an npz" if entry.filename == "timeline.npz" else source.read(entry.filename)
            target.writestr(entry, data)
    with pytest.raises(ModelFileError, match="timeline is damaged"):
        cnnviz.load_model(broken)


def test_cli_timeline_out_writes_a_strip_per_probe_and_a_gif_frame_per_epoch(capsys, tmp_path):
    out = tmp_path / "timeline"
    status, stdout, err = _run(
        capsys,
        "train",
        "--data",
        "shapes",
        "--num-samples",
        "200",
        "--epochs",
        "2",
        "--timeline",
        "3",
        "--timeline-out",
        str(out),
        "--out",
        str(tmp_path / "m.keras"),
        "--json",
    )
    assert status == 0, err
    payload = _last_json(stdout)
    assert payload["timeline_epochs"] == [0, 1, 2]
    assert [Path(strip).name for strip in payload["timeline"]["strips"]] == [
        "probe_0.png",
        "probe_1.png",
        "probe_2.png",
    ]
    strip = Image.open(payload["timeline"]["strips"][0])
    assert strip.width == 3 * 96  # one 96-px tile per snapshot
    gif = Image.open(payload["timeline"]["gif"])
    assert gif.n_frames == 3
    status, _, err = _run(
        capsys, "train", "--data", "shapes", "--timeline-out", str(out), "--out", str(tmp_path / "n.keras")
    )
    assert status == 2 and "add --timeline K" in err


def _npz(**arrays) -> bytes:
    import io

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def test_a_hostile_timeline_is_refused_before_it_is_read(timeline_run):
    import io

    from cnnviz.timeline import MAX_INFLATED_BYTES, dump_timeline, load_timeline

    good = dump_timeline(timeline_run[0].timeline)
    assert [s.epoch for s in load_timeline(good)] == [0, 1, 2]
    # A small entry that unpacks to more than the limit: refused from the zip's index, nothing inflated.
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("features.npy", b"\0" * (MAX_INFLATED_BYTES + 1))
    assert len(bomb.getvalue()) < 1024**2
    with pytest.raises(ModelFileError, match="unpacks to"):
        load_timeline(bomb.getvalue())
    # Text where numbers belong, and arrays that do not fit each other.
    base = {
        "epochs": np.array([0]),
        "val_accuracy": np.array([np.nan]),
        "seconds": np.array([0.1]),
        "images": np.zeros((2, 8, 8, 3), np.uint8),
        "0/labels": np.array([0, 1]),
        "0/probabilities": np.full((2, 2), 0.5),
        "0/heatmaps": np.zeros((2, 8, 8), np.uint8),
        "0/kernels": np.zeros((1, 3, 3, 3), np.uint8),
        "0/features": np.zeros((4, 3), np.float16),
        "0/feature_labels": np.zeros(4, np.int64),
    }
    assert load_timeline(_npz(**base))[0].heatmaps.shape == (2, 8, 8)
    for change in (
        {"0/labels": np.array(["a", "b"])},
        {"0/heatmaps": np.zeros((2, 4, 4), np.uint8)},
        {"0/labels": np.array([0, 7])},
        {"0/probabilities": np.full(2, 0.5)},
        {"seconds": np.array([0.1, 0.2])},
    ):
        with pytest.raises(ModelFileError, match="timeline is damaged"):
            load_timeline(_npz(**{**base, **change}))


def test_a_long_run_keeps_the_first_and_last_snapshots_and_at_most_the_cap():
    from cnnviz.timeline import thin

    kept = thin(list(range(500)), most=101)
    assert len(kept) <= 101 and kept[0] == 0 and kept[-1] == 499
    assert kept == sorted(kept) and thin(list(range(50)), most=101) == list(range(50))
