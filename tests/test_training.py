import math
import os
import threading

import numpy as np
import pytest

import cnnviz
from cnnviz.errors import ConfigError
from cnnviz.models import ModelConfig, build_model
from cnnviz.training import TrainConfig, augment_preview, resolve_precision

SMALL = ModelConfig(input_shape=(16, 16, 3), num_classes=2, conv_blocks=2, filters=4)


def test_learns_a_separable_problem(tiny_arrays):
    events = []
    result = cnnviz.train(SMALL, tiny_arrays, TrainConfig(epochs=8, batch_size=8), on_event=events.append)
    assert result.stop_reason == "completed"
    assert result.epochs == 8
    assert result.val_accuracy is not None
    assert cnnviz.evaluate(result.model, tiny_arrays).accuracy >= 0.9
    kinds = [event["event"] for event in events]
    assert kinds[0] == "train_begin" and kinds[-1] == "train_end"
    assert kinds.count("epoch_end") == 8
    assert "batch_end" in kinds
    assert len(result.history["loss"]) == 8
    assert result.samples_per_second > 0


def test_stop_event_stops_within_one_batch(tiny_arrays):
    images = np.repeat(tiny_arrays[0], 20, axis=0)
    labels = np.repeat(tiny_arrays[1], 20)
    stop = threading.Event()
    seen = []

    def on_event(event):
        if event["event"] == "batch_end":
            seen.append(event)
            stop.set()

    result = cnnviz.train(
        SMALL, (images, labels), TrainConfig(epochs=5, batch_size=8), on_event=on_event, stop_event=stop
    )
    assert result.stop_reason == "stopped"
    assert result.samples_seen <= 8 * 2
    assert result.epochs == 1


def test_time_budget_stops_and_keeps_weights(tiny_arrays):
    images = np.repeat(tiny_arrays[0], 10, axis=0)
    labels = np.repeat(tiny_arrays[1], 10)
    result = cnnviz.train(SMALL, (images, labels), TrainConfig(epochs=100000, time_budget=2, batch_size=8))
    assert result.stop_reason == "time_budget"
    assert result.epochs < 100000
    assert result.val_accuracy is not None and result.val_accuracy >= 0.5


def test_nan_loss_stops_and_restores_last_good_weights(tiny_arrays):
    model = build_model(SMALL)
    initial = [weights.copy() for weights in model.get_weights()]
    images, labels = tiny_arrays
    poisoned = images.astype(np.float32)
    poisoned[0, 0, 0, 0] = np.nan
    result = cnnviz.train(model, (poisoned, labels), TrainConfig(epochs=3, validation_split=0.0))
    assert result.stop_reason == "nan"
    assert "last good weights" in result.message
    for before, after in zip(initial, result.model.get_weights()):
        np.testing.assert_array_equal(before, after)
        assert np.isfinite(after).all()


def test_huge_learning_rate_is_caught(tiny_arrays):
    result = cnnviz.train(
        ModelConfig(input_shape=(16, 16, 3), num_classes=2, conv_blocks=1, filters=4, batch_norm=False),
        tiny_arrays,
        TrainConfig(epochs=30, learning_rate=100.0, optimizer="sgd", schedule="constant"),
    )
    weights = result.model.get_weights()
    assert all(np.isfinite(array).all() for array in weights)
    if result.stop_reason == "nan":
        assert "lower learning rate" in result.message


def test_checkpoint_is_written_atomically_each_epoch(tiny_arrays, tmp_path, monkeypatch):
    path = tmp_path / "ckpt.keras"
    replaced = []
    real_replace = os.replace

    def spy(source, destination):
        replaced.append((os.path.basename(source), os.path.basename(destination)))
        assert os.path.getsize(source) > 0
        return real_replace(source, destination)

    monkeypatch.setattr(os, "replace", spy)
    cnnviz.train(SMALL, tiny_arrays, TrainConfig(epochs=2), checkpoint_path=path)
    assert len(replaced) == 2
    assert all(destination == "ckpt.keras" and source != destination for source, destination in replaced)
    assert not [p for p in tmp_path.iterdir() if p.name != "ckpt.keras"]
    loaded = cnnviz.load_model(path)
    assert loaded.count_params() == build_model(SMALL).count_params()


def test_keras_callbacks_are_accepted(tiny_arrays):
    import keras

    seen = []

    class Recorder(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(epoch)

    cnnviz.train(SMALL, tiny_arrays, TrainConfig(epochs=2), callbacks=[Recorder()])
    assert seen == [0, 1]


def test_early_stopping(tiny_arrays):
    # A frozen learning problem: labels are random, validation cannot improve for long.
    rng = np.random.default_rng(1)
    images = rng.integers(0, 255, (40, 16, 16, 3)).astype(np.uint8)
    labels = rng.integers(0, 2, 40)
    result = cnnviz.train(
        SMALL, (images, labels), TrainConfig(epochs=200, early_stopping=2, learning_rate=1e-4)
    )
    assert result.stop_reason == "early_stopping"
    assert result.epochs < 200


def test_augmentation_preview_changes_images_and_keeps_dtype(tiny_arrays):
    images = tiny_arrays[0][:4]
    same = augment_preview(images, TrainConfig())
    np.testing.assert_array_equal(same, images)
    changed = augment_preview(
        images, TrainConfig(flip="horizontal", rotate=0.2, zoom=0.2, translate=0.2, contrast=0.3)
    )
    assert changed.dtype == np.uint8 and changed.shape == images.shape
    assert not np.array_equal(changed, images)


def test_training_with_augmentation_runs(tiny_arrays):
    result = cnnviz.train(SMALL, tiny_arrays, TrainConfig(epochs=1, translate=0.1, flip="horizontal"))
    assert result.epochs == 1


def test_precision_auto_resolves_to_supported_choice():
    assert resolve_precision("auto") in ("float32", "bfloat16")
    assert resolve_precision("float32") == "float32"
    with pytest.raises(ConfigError):
        resolve_precision("float8")


@pytest.mark.parametrize(
    "flags, native",
    [
        ("fpu sse avx avx2 fma", False),
        ("fpu avx512f avx512_bf16 avx512_vnni", True),
        ("fpu amx_bf16 amx_tile", True),
    ],
)
def test_native_bfloat16_detection(flags, native):
    from cnnviz.training import cpu_has_native_bfloat16

    assert cpu_has_native_bfloat16(f"processor\t: 0\nflags\t\t: {flags}\n") is native
    assert cpu_has_native_bfloat16("no flags line") is False


def test_precision_auto_follows_the_cpu(monkeypatch):
    import cnnviz.training as training

    monkeypatch.setattr(training, "_read_cpuinfo", lambda: "flags : avx2 avx512_bf16")
    monkeypatch.setattr("tensorflow.config.list_physical_devices", lambda kind=None: [])
    assert resolve_precision("auto") == "bfloat16"
    monkeypatch.setattr(training, "_read_cpuinfo", lambda: "flags : avx2 fma")
    assert resolve_precision("auto") == "float32"


def test_bfloat16_training_returns_float32_model(tiny_arrays):
    result = cnnviz.train(SMALL, tiny_arrays, TrainConfig(epochs=1, precision="bfloat16"))
    assert result.precision == "bfloat16"
    assert all(str(layer.dtype_policy.compute_dtype) == "float32" for layer in result.model.layers)
    assert np.isfinite(np.asarray(result.model(tiny_arrays[0][:2].astype(np.float32)))).all()


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"optimizer": "lion"}, "optimizer"),
        ({"learning_rate": 0}, "learning_rate"),
        ({"learning_rate": math.nan}, "learning_rate"),
        ({"batch_size": 0}, "batch_size"),
        ({"epochs": 2.5}, "epochs"),
        ({"time_budget": -1}, "time_budget"),
        ({"rotate": 2}, "rotate"),
        ({"precision": "fp8"}, "precision"),
    ],
)
def test_bad_train_config(changes, field):
    with pytest.raises(ConfigError, match=field):
        TrainConfig(**changes)


def test_shape_mismatch_is_a_clear_error(tiny_arrays):
    with pytest.raises(ConfigError, match="expects images of shape"):
        cnnviz.train(ModelConfig(input_shape=(32, 32, 3), num_classes=2), tiny_arrays, TrainConfig(epochs=1))


def test_batch_larger_than_dataset(tiny_arrays):
    result = cnnviz.train(SMALL, tiny_arrays, TrainConfig(epochs=1, batch_size=4096))
    assert result.epochs == 1
