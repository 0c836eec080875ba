import math
import os
import threading

import keras
import numpy as np
import pytest

import cnnviz
from cnnviz.errors import ConfigError
from cnnviz.events import BatchEnd, EpochEnd, TrainBegin, TrainEnd
from cnnviz.models import ConvNetConfig, build_model
from cnnviz.training import TrainConfig, augment_preview, resolve_precision
from cnnviz.training.control import warmup_cosine_rate

SMALL = ConvNetConfig(input_shape=(16, 16, 3), num_classes=2, conv_blocks=2, filters=4)


def test_learns_a_separable_problem_and_reports_typed_events(tiny_arrays):
    events = []
    result = cnnviz.train(SMALL, tiny_arrays, TrainConfig(epochs=8, batch_size=8), on_event=events.append)
    assert result.stop_reason == "completed"
    assert result.epochs == 8
    assert result.val_accuracy is not None
    assert cnnviz.evaluate(result.model, tiny_arrays).accuracy >= 0.9
    assert isinstance(events[0], TrainBegin) and isinstance(events[-1], TrainEnd)
    assert sum(isinstance(event, EpochEnd) for event in events) == 8
    assert any(isinstance(event, BatchEnd) for event in events)
    assert events[-1].epochs == 8 and events[-1].reason == "completed"
    assert len(result.history["loss"]) == 8
    assert result.samples_per_second > 0


def test_stop_event_stops_within_one_batch(tiny_arrays):
    images = np.repeat(tiny_arrays[0], 20, axis=0)
    labels = np.repeat(tiny_arrays[1], 20)
    stop = threading.Event()

    def on_event(event):
        if isinstance(event, BatchEnd):
            stop.set()

    result = cnnviz.train(
        SMALL, (images, labels), TrainConfig(epochs=5, batch_size=8), on_event=on_event, stop_event=stop
    )
    assert result.stop_reason == "stopped"
    assert result.samples_seen <= 8 * 2
    assert result.epochs == 1


def test_until_the_budget_runs_epochs_until_the_time_is_spent(tiny_arrays):
    images = np.repeat(tiny_arrays[0], 10, axis=0)
    labels = np.repeat(tiny_arrays[1], 10)
    result = cnnviz.train(SMALL, (images, labels), TrainConfig(epochs=None, time_budget=2, batch_size=8))
    assert result.stop_reason == "time_budget"
    assert result.train_seconds >= 2
    assert result.val_accuracy is not None and result.val_accuracy >= 0.5


def test_until_the_budget_needs_a_budget():
    with pytest.raises(ConfigError, match="time_budget"):
        TrainConfig(epochs=None)


def test_a_run_nobody_watches_stops_and_sets_the_stop_event(tiny_arrays):
    images = np.repeat(tiny_arrays[0], 20, axis=0)
    labels = np.repeat(tiny_arrays[1], 20)
    stop = threading.Event()
    result = cnnviz.train(
        SMALL,
        (images, labels),
        TrainConfig(epochs=None, time_budget=60, batch_size=8),
        stop_event=stop,
        watched=lambda: False,
        unwatched_after=1.0,
    )
    assert result.stop_reason == "unwatched" and "nobody had watched" in result.message
    assert stop.is_set()  # so what runs next (a comparison's next variant) does not start
    assert result.train_seconds < 30


def test_a_nan_input_stops_at_once_and_keeps_the_initial_weights(tiny_arrays):
    model = build_model(SMALL)
    initial = [weights.copy() for weights in model.get_weights()]
    images, labels = tiny_arrays
    poisoned = images.astype(np.float32)
    poisoned[0, 0, 0, 0] = np.nan
    result = cnnviz.train(model, (poisoned, labels), TrainConfig(epochs=3, validation_split=0.0))
    assert result.stop_reason == "nan"
    assert "last good weights" in result.message
    assert result.kept_epoch == 0  # the initial weights
    for before, after in zip(initial, result.model.get_weights()):
        np.testing.assert_array_equal(before, after)
        assert np.isfinite(after).all()


def test_a_forced_divergence_in_epoch_two_stops_and_restores_epoch_ones_weights(tiny_arrays):
    import keras

    seen = {}

    class Diverge(keras.callbacks.Callback):
        """Epoch 1 trains normally; epoch 2 starts from a non-finite kernel, so its first loss is NaN."""

        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                seen["after_epoch_1"] = [weights.copy() for weights in self.model.get_weights()]

        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                kernel = self.model.get_layer("conv1").kernel
                kernel.assign(np.full(kernel.shape, np.inf, np.float32))

    result = cnnviz.train(SMALL, tiny_arrays, TrainConfig(epochs=5, batch_size=8), callbacks=[Diverge()])
    assert result.stop_reason == "nan"
    assert "in epoch 2" in result.message and "try a lower learning rate" in result.message
    assert result.epochs == 2 and len(result.history["loss"]) == 1  # the NaN epoch is not in the history
    assert result.kept_epoch == 1 and not result.kept_best  # rolled back by the NaN guard, not chosen
    for kept, good in zip(result.model.get_weights(), seen["after_epoch_1"]):
        np.testing.assert_array_equal(kept, good)


def test_the_best_epochs_weights_come_back_when_the_last_epoch_is_worse(tiny_arrays):
    import keras

    seen = {}

    class SpoilTheLastEpoch(keras.callbacks.Callback):
        """After the last epoch's training, before its validation, the logits' weights are shuffled away."""

        def on_epoch_end(self, epoch, logs=None):
            seen.setdefault("val_accuracy", []).append(logs["val_accuracy"])
            seen.setdefault("weights", []).append([w.copy() for w in self.model.get_weights()])

        def on_train_batch_end(self, batch, logs=None):
            if len(seen.get("weights", [])) == 5 and batch == self.params["steps"] - 1:
                logits = self.model.get_layer("logits")
                logits.kernel.assign(-np.asarray(logits.kernel))  # the classes swapped: accuracy collapses

    result = cnnviz.train(
        SMALL, tiny_arrays, TrainConfig(epochs=6, batch_size=8), callbacks=[SpoilTheLastEpoch()]
    )
    best_epoch = int(np.argmax(seen["val_accuracy"]))
    assert seen["val_accuracy"][-1] < max(seen["val_accuracy"])  # the spoiled last epoch is worse
    assert result.val_accuracy == pytest.approx(max(seen["val_accuracy"]))
    assert result.kept_epoch == best_epoch + 1 and result.summary()["kept epoch"] == best_epoch + 1
    assert result.kept_best
    assert f"Kept epoch {best_epoch + 1}'s weights, the best on validation." in result.message
    for kept, best in zip(result.model.get_weights(), seen["weights"][best_epoch]):
        np.testing.assert_array_equal(kept, best)


def test_the_learning_rate_assigned_follows_warm_up_then_cosine(tiny_arrays):
    import keras

    assigned = []

    class Record(keras.callbacks.Callback):  # runs after cnnviz's own schedule in the same hook
        def on_train_batch_begin(self, batch, logs=None):
            assigned.append(float(self.model.optimizer.learning_rate))

    images = np.repeat(tiny_arrays[0], 5, axis=0)[:160]
    labels = np.repeat(tiny_arrays[1], 5)[:160]
    peak, epochs = 0.02, 10
    config = TrainConfig(epochs=epochs, batch_size=16, learning_rate=peak, validation_split=0.0)
    result = cnnviz.train(SMALL, (images, labels), config, callbacks=[Record()])
    assert result.kept_epoch == epochs and not result.kept_best  # no validation: the last one
    assert result.message == f"Training completed {epochs} epochs."
    steps_per_epoch, total = 10, 100
    warmup = 5  # a twentieth of the run (shorter than one epoch)
    assert len(assigned) == total
    np.testing.assert_allclose(
        assigned[:warmup], [peak * (step + 1) / warmup for step in range(warmup)], rtol=1e-6
    )
    for step in (warmup, 50, 75, 99):
        expected = max(peak * 0.5 * (1 + math.cos(math.pi * step / total)), peak * 1e-3)
        assert assigned[step] == pytest.approx(expected, rel=1e-5), step
    assert assigned[50] == pytest.approx(peak / 2, rel=1e-5)  # half way: half the peak
    assert steps_per_epoch * epochs == total


def test_warmup_cosine_rate_by_hand():
    assert warmup_cosine_rate(0.1, warmed=0.25, progress=0.0) == pytest.approx(0.025)
    assert warmup_cosine_rate(0.1, warmed=1.25, progress=0.5) == pytest.approx(0.05)
    assert warmup_cosine_rate(0.1, warmed=2.5, progress=1.0) == pytest.approx(1e-4)  # the floor


class _Schedule:
    """A `WarmupCosine` on a fake clock: `rate_at(seconds, steps_done)` is the rate it sets for the next step."""

    def __init__(self, steps_per_epoch: int, epochs: int | None, budget: float | None, peak: float):
        import keras

        from cnnviz.training import control

        self.now = 0.0
        self.state = control.RunState(steps_per_epoch, epochs, budget, clock=lambda: self.now)
        self.schedule = control.WarmupCosine(self.state, peak)
        self.model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
        self.model.compile(optimizer=keras.optimizers.Adam(0.0), loss="mse")
        self.schedule.set_model(self.model)
        self.schedule.on_train_begin()

    def rate_at(self, seconds: float, steps_done: int) -> float:
        self.now, self.state.steps_done = seconds, steps_done
        self.schedule.on_train_batch_begin(steps_done)
        return float(self.model.optimizer.learning_rate)

    def first_batch_ends(self, seconds: float) -> None:
        self.now = seconds
        self.schedule.on_train_batch_end(0)


def _cosine(peak: float, progress: float) -> float:
    return peak * 0.5 * (1 + math.cos(math.pi * progress))


def test_a_budget_run_warms_up_and_anneals_over_the_time_after_its_first_batch():
    peak, budget, first_batch_end = 0.01, 10.0, 2.0  # the first batch ends once the step is traced
    run = _Schedule(steps_per_epoch=100, epochs=None, budget=budget, peak=peak)
    assert run.rate_at(0.0, 0) == pytest.approx(peak / 100, rel=1e-5)  # the first step of a one-epoch warm-up
    run.first_batch_ends(first_batch_end)
    rest = budget - first_batch_end
    # A twentieth of the 8 s left (0.4 s) ends the warm-up long before the 100 steps of an epoch.
    assert run.rate_at(first_batch_end + 0.2, 3) == pytest.approx(peak * 0.5, rel=1e-5)
    assert run.rate_at(first_batch_end + 0.1 * rest, 5) == pytest.approx(_cosine(peak, 0.1), rel=1e-5)
    half = run.rate_at(first_batch_end + rest / 2, 40)
    assert half == pytest.approx(peak / 2, rel=1e-5)  # half the time left: half the peak
    assert run.rate_at(budget, 80) == pytest.approx(
        peak * 1e-3, rel=1e-5
    )  # the floor at the end of the budget
    run.schedule.on_train_begin()  # a new fit: its clock waits for its own first batch again
    run.state.steps_done = 0
    assert run.rate_at(budget + 5, 0) == pytest.approx(peak / 100, rel=1e-5)


def test_a_budget_run_whose_epoch_is_short_warms_up_over_that_epoch():
    peak, budget, first_batch_end = 0.01, 10.0, 2.0
    run = _Schedule(steps_per_epoch=4, epochs=None, budget=budget, peak=peak)
    run.first_batch_ends(first_batch_end)
    # 0.1 s after the first batch is an eightieth of the time left, but the 4-step epoch is over.
    assert run.rate_at(first_batch_end + 0.05, 3) == pytest.approx(peak, rel=1e-5)  # the last warm-up step
    share = 0.1 / (budget - first_batch_end)
    assert run.rate_at(first_batch_end + 0.1, 4) == pytest.approx(_cosine(peak, share), rel=1e-5)


def test_a_run_with_epochs_and_a_budget_follows_whichever_is_further():
    peak, budget, first_batch_end = 0.01, 10.0, 2.0
    # 100 epochs of 100 steps: by steps alone the warm-up would last the first 100 steps.
    run = _Schedule(steps_per_epoch=100, epochs=100, budget=budget, peak=peak)
    assert run.rate_at(0.0, 0) == pytest.approx(peak / 100, rel=1e-5)
    run.first_batch_ends(first_batch_end)
    rest = budget - first_batch_end
    assert run.rate_at(first_batch_end + 0.2, 3) == pytest.approx(
        peak * 0.5, rel=1e-5
    )  # the time's twentieth
    assert run.rate_at(first_batch_end + rest / 2, 40) == pytest.approx(
        peak / 2, rel=1e-5
    )  # the time is further
    # With a budget far off, the steps decide: 100 of 10,000 steps.
    slow = _Schedule(steps_per_epoch=100, epochs=100, budget=10_000.0, peak=peak)
    slow.first_batch_ends(first_batch_end)
    assert slow.rate_at(first_batch_end + 1, 50) == pytest.approx(peak * 51 / 100, rel=1e-5)
    assert slow.rate_at(first_batch_end + 2, 5_000) == pytest.approx(peak / 2, rel=1e-5)


def test_a_model_passed_in_is_never_changed_and_a_new_one_comes_back(tiny_arrays):
    model = build_model(SMALL)
    before = [weights.copy() for weights in model.get_weights()]
    result = cnnviz.train(model, tiny_arrays, TrainConfig(epochs=2, batch_size=8))
    assert result.model is not model
    for original, now in zip(before, model.get_weights()):
        np.testing.assert_array_equal(original, now)
    assert any(not np.array_equal(a, b) for a, b in zip(before, result.model.get_weights()))


def test_two_runs_with_one_seed_in_two_threads_give_identical_weights(tiny_arrays):
    config = SMALL.replace(block_dropout=0.2)  # dropout draws random numbers too, and so does augmentation
    results = {}

    def run(name, seed):
        settings = TrainConfig(epochs=3, batch_size=8, seed=seed, flip="horizontal", translate=0.1)
        results[name] = cnnviz.train(config, tiny_arrays, settings)

    threads = [threading.Thread(target=run, args=(name, 5)) for name in ("first", "second")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    run("other", 6)
    first, second, other = (results[name].model.get_weights() for name in ("first", "second", "other"))
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, c) for a, c in zip(first, other))


def test_training_leaves_the_global_random_state_alone(tiny_arrays):
    import random

    np.random.seed(123)
    random.seed(123)
    expected = (np.random.random(), random.random())
    np.random.seed(123)
    random.seed(123)
    cnnviz.train(SMALL, tiny_arrays, TrainConfig(epochs=1, seed=7))
    assert (np.random.random(), random.random()) == expected


def test_checkpoint_is_written_atomically_each_epoch(tiny_arrays, tmp_path, monkeypatch):
    path = tmp_path / "ckpt.keras"
    replaced = []
    real_replace = os.replace

    def spy(source, destination):
        replaced.append((os.path.basename(source), os.path.basename(destination)))
        assert os.path.getsize(source) > 0
        return real_replace(source, destination)

    monkeypatch.setattr(os, "replace", spy)
    cnnviz.train(
        SMALL, tiny_arrays, TrainConfig(epochs=2), checkpoint_path=path, metadata={"training": {"seed": 0}}
    )
    assert len(replaced) == 2
    assert all(destination == "ckpt.keras" and source != destination for source, destination in replaced)
    assert not [p for p in tmp_path.iterdir() if p.name != "ckpt.keras"]
    loaded = cnnviz.load_model(path)
    assert loaded.count_params() == build_model(SMALL).count_params()
    from cnnviz.saving import get_metadata

    assert get_metadata(loaded)["training"] == {"seed": 0}  # checkpoints carry the run's metadata


def test_keras_callbacks_are_accepted(tiny_arrays):
    import keras

    seen = []

    class Recorder(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(epoch)

    cnnviz.train(SMALL, tiny_arrays, TrainConfig(epochs=2), callbacks=[Recorder()])
    assert seen == [0, 1]


@pytest.mark.parametrize("patience, said", [(1, "1 epoch "), (2, "2 epochs ")])
def test_early_stopping_stops_after_the_patience_and_says_so_in_words(tiny_arrays, patience, said):
    # A frozen learning problem: labels are random, validation cannot improve for long.
    rng = np.random.default_rng(1)
    images = rng.integers(0, 255, (40, 16, 16, 3)).astype(np.uint8)
    labels = rng.integers(0, 2, 40)
    result = cnnviz.train(
        SMALL, (images, labels), TrainConfig(epochs=200, early_stopping=patience, learning_rate=1e-4)
    )
    assert result.stop_reason == "early_stopping"
    assert result.epochs < 200
    assert f"no improvement for {said}(epoch {result.epochs})." in result.message
    # The best epoch came `patience` epochs before the stop; its weights come back unless the last tied it.
    assert result.kept_epoch in (result.epochs - patience, result.epochs)
    assert ("Kept epoch" in result.message) == (result.kept_epoch != result.epochs) == result.kept_best


def test_augmentation_preview_changes_images_and_keeps_dtype(tiny_arrays):
    images = tiny_arrays[0][:4]
    same = augment_preview(images, TrainConfig())
    np.testing.assert_array_equal(same, images)
    changed = augment_preview(
        images, TrainConfig(flip="horizontal", rotate=0.2, zoom=0.2, translate=0.2, contrast=0.3)
    )
    assert changed.dtype == np.uint8 and changed.shape == images.shape
    assert not np.array_equal(changed, images)


def test_training_with_augmentation_feeds_augmented_batches(tiny_arrays, monkeypatch):
    from cnnviz.training import loop

    built = []
    real = loop.make_augmentation

    def spy(config, seed=0):
        built.append(real(config, seed))
        return built[-1]

    monkeypatch.setattr(loop, "make_augmentation", spy)
    result = cnnviz.train(SMALL, tiny_arrays, TrainConfig(epochs=1, translate=0.1, flip="horizontal"))
    assert result.epochs == 1
    assert [layer.name for layer in built[0].layers] == ["flip", "translate"]
    # ...and the batches training sees are the augmented ones: the pipeline's first batch is not the raw one.
    from cnnviz.training.sources import as_source

    source = as_source(tiny_arrays)
    raw = next(iter(source.dataset("train", 32, shuffle=True, seed=0)))[0].numpy()
    augmented = next(iter(source.dataset("train", 32, shuffle=True, seed=0, augmentation=built[0])))[
        0
    ].numpy()
    assert raw.shape == augmented.shape and not np.allclose(raw, augmented)


def test_precision_auto_follows_the_cpu(monkeypatch):
    from cnnviz.training import precision

    monkeypatch.setattr(precision, "read_cpuinfo", lambda: "flags : avx2 avx512_bf16 amx_bf16 amx_tile")
    monkeypatch.setattr("tensorflow.config.list_physical_devices", lambda kind=None: [])
    assert resolve_precision("auto") == "bfloat16"
    # AVX512_BF16 without AMX: measured slower in bfloat16 than in float32.
    monkeypatch.setattr(precision, "read_cpuinfo", lambda: "flags : avx2 avx512f avx512_bf16")
    assert resolve_precision("auto") == "float32"
    monkeypatch.setattr(precision, "read_cpuinfo", lambda: "flags : avx2 fma")
    assert resolve_precision("auto") == "float32"
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


def test_bfloat16_training_returns_float32_model_with_its_metadata(tiny_arrays):
    result = cnnviz.train(
        SMALL, tiny_arrays, TrainConfig(epochs=1, precision="bfloat16"), metadata={"training": {"seed": 3}}
    )
    assert result.precision == "bfloat16"
    assert all(str(layer.dtype_policy.compute_dtype) == "float32" for layer in result.model.layers)
    assert np.isfinite(np.asarray(result.model(tiny_arrays[0][:2].astype(np.float32)))).all()
    from cnnviz.saving import get_metadata

    assert get_metadata(result.model)["training"] == {"seed": 3}


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
        ({"seed": 1.5}, "seed"),
    ],
)
def test_bad_train_config(changes, field):
    with pytest.raises(ConfigError, match=field):
        TrainConfig(**changes)


def test_shape_mismatch_is_a_clear_error(tiny_arrays):
    with pytest.raises(ConfigError, match="expects images of shape"):
        cnnviz.train(
            ConvNetConfig(input_shape=(32, 32, 3), num_classes=2), tiny_arrays, TrainConfig(epochs=1)
        )


def test_batch_larger_than_dataset(tiny_arrays):
    result = cnnviz.train(SMALL, tiny_arrays, TrainConfig(epochs=1, batch_size=4096))
    assert result.epochs == 1 and result.samples_seen == 28  # 32 images, 4 held out for validation


def test_a_global_tensorflow_seed_set_elsewhere_does_not_change_a_run(tiny_arrays):
    import tensorflow as tf

    try:
        tf.random.set_seed(1)
        first = cnnviz.train(
            SMALL, tiny_arrays, TrainConfig(epochs=2, batch_size=8, seed=4)
        ).model.get_weights()
        tf.random.set_seed(2)
        second = cnnviz.train(
            SMALL, tiny_arrays, TrainConfig(epochs=2, batch_size=8, seed=4)
        ).model.get_weights()
    finally:
        tf.random.set_seed(None)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_noise_augmentation_draws_a_spread_per_image_up_to_the_share_asked():
    flat = np.full((64, 16, 16, 3), 128, np.uint8)
    noisy = cnnviz.augment_preview(flat, cnnviz.TrainConfig(noise=0.08), seed=0).astype(np.float32)
    spreads = noisy.reshape(64, -1).std(axis=1)
    assert spreads.max() <= 0.08 * 255 * 1.1  # at most the share asked (plus sampling error)
    assert spreads.min() < 0.3 * spreads.max()  # each image its own spread, some nearly clean
    assert abs(noisy.mean() - 128) < 1.0  # noise, not a brightness change
    assert cnnviz.TrainConfig(noise=0.05).augments and not cnnviz.TrainConfig().augments
    with pytest.raises(cnnviz.ConfigError, match="noise"):
        cnnviz.TrainConfig(noise=1.5)


def test_custom_augmentations_run_under_a_global_bfloat16_policy_and_only_when_training():
    import keras

    from cnnviz.training.augmentation import make_augmentation

    images = np.full((8, 16, 16, 3), 128, np.float32)
    config = cnnviz.TrainConfig(noise=0.1, texture=0.2)
    try:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
        changed = cnnviz.augment_preview(images, config, seed=0)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert np.abs(changed.astype(int) - 128).max() > 5
    unchanged = make_augmentation(config, seed=0)(images, training=False)
    np.testing.assert_array_equal(np.asarray(unchanged), images)


def test_custom_augmentations_rebuild_from_their_config_into_the_same_float32_layer():
    from cnnviz.training.augmentation import make_augmentation

    config = cnnviz.TrainConfig(noise=0.1, texture=0.2)
    images = np.random.default_rng(0).uniform(0, 255, (4, 16, 16, 3)).astype(np.float32)
    pipeline = make_augmentation(config, seed=3)
    expected = {"noise": {"most": 25.5, "seed": 8}, "texture": {"most": 51.0, "seed": 9, "share": 0.7}}
    for name, settings in expected.items():
        layer = pipeline.get_layer(name)
        layer_config = layer.get_config()
        assert {key: layer_config[key] for key in settings} == pytest.approx(settings)
        rebuilt = type(layer).from_config(layer_config)
        assert rebuilt.dtype_policy.name == "float32"
        fresh = make_augmentation(config, seed=3).get_layer(name)  # not called yet, as `rebuilt`
        np.testing.assert_allclose(
            np.asarray(rebuilt(images, training=True)), np.asarray(fresh(images, training=True))
        )
        assert np.abs(np.asarray(rebuilt(images, training=True)) - images).max() > 1  # it does change images


def test_texture_augmentation_adds_a_two_level_pattern_to_most_images_up_to_the_share_asked():
    flat = np.full((200, 32, 32, 3), 128, np.uint8)
    textured = cnnviz.augment_preview(flat, cnnviz.TrainConfig(texture=0.2), seed=0).astype(np.float32)
    change = textured - 128
    touched = np.abs(change).reshape(200, -1).max(axis=1) > 1
    assert 0.55 < touched.mean() < 0.85  # about 70 % of the images get a pattern
    assert np.abs(change).max() <= 0.2 * 255 + 1  # never stronger than the share asked
    for image in change[touched][:20]:
        channel = image[..., int(np.argmax(np.abs(image).max(axis=(0, 1))))]
        levels = np.unique(np.rint(channel))
        assert len(levels) == 2 and levels[0] == -levels[1]  # two levels, +strength and -strength
        assert 0.2 < (channel > 0).mean() < 0.8  # a pattern over the whole image, not a wash
    strengths = np.abs(change[touched]).reshape(touched.sum(), -1).max(axis=1)
    assert strengths.min() < 0.4 * strengths.max()  # each image its own strength
    gray = cnnviz.augment_preview(flat[..., :1], cnnviz.TrainConfig(texture=0.2), seed=1)
    assert gray.shape == (200, 32, 32, 1)
    assert (np.abs(gray.astype(int) - 128).reshape(200, -1).max(axis=1) > 1).mean() > 0.5  # gray gets it too
    assert cnnviz.TrainConfig(texture=0.1).augments
    with pytest.raises(cnnviz.ConfigError, match="texture"):
        cnnviz.TrainConfig(texture=-0.1)


def test_batch_norm_averages_span_about_half_an_epoch_during_a_run_so_a_tiny_folder_validates(tmp_path):
    from cnnviz.models import walk_layers
    from tests.test_streaming import _bright_dark_folder

    # 60 images: 42 train in 2 batches an epoch. With the design's momentum of 0.9 the running statistics
    # still held most of their starting values after 4 epochs, and seed 0 scored 50 % on validation with
    # 100 % training accuracy.
    data = cnnviz.load_dataset(str(_bright_dark_folder(tmp_path / "pets", per_class=30)))
    design = cnnviz.preset_config("fast", data.image_shape, data.num_classes)
    during = []

    class Momentum(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            during.extend(layer.momentum for layer in walk_layers(self.model) if _is_norm(layer))

    config = TrainConfig(epochs=4, seed=0, precision="float32")
    result = cnnviz.train(design, data, config, callbacks=[Momentum()])
    assert during and set(during) == {0.5}
    assert result.val_accuracy == 1.0 and cnnviz.evaluate(result.model, data).accuracy == 1.0
    # The model handed back (and saved) carries the design's momentum.
    assert {layer.momentum for layer in walk_layers(result.model) if _is_norm(layer)} == {0.9}
    # From 20 batches an epoch up (here 720 training images: 23), the design's own momentum stays.
    images = np.repeat(data.train.images, 20, axis=0)[:800]
    labels = np.repeat(data.train.labels, 20)[:800]
    during.clear()
    cnnviz.train(design, (images, labels), TrainConfig(epochs=1, precision="float32"), callbacks=[Momentum()])
    assert during and set(during) == {0.9}


def _is_norm(layer) -> bool:
    return isinstance(layer, keras.layers.BatchNormalization)


def test_the_default_batch_is_64_for_many_small_images_and_32_otherwise_and_the_result_says_which():
    config = TrainConfig()
    assert config.batch_size is None
    assert config.batch_size_for((28, 28, 1), 4000) == 64
    assert config.batch_size_for((28, 28, 1), 3999) == 32
    assert config.batch_size_for((48, 48, 3), 50000) == 32  # not small
    assert config.batch_size_for((28, 28, 1), None) == 32
    assert TrainConfig(batch_size=16).batch_size_for((28, 28, 1), 8000) == 16
    with pytest.raises(ConfigError, match="batch_size"):
        TrainConfig(batch_size=0)

    class Steps(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.count = 0

        def on_train_batch_end(self, batch, logs=None):
            self.count += 1

    rng = np.random.default_rng(0)
    for count, batch in ((4000, 64), (3999, 32)):
        images = rng.integers(0, 255, (count, 8, 8, 1), dtype=np.uint8)
        labels = np.arange(count) % 2
        steps = Steps()
        result = cnnviz.train(
            "fast", (images, labels), TrainConfig(epochs=1, validation_split=0.0), callbacks=[steps]
        )
        assert steps.count == math.ceil(count / batch)
        assert result.config.batch_size == batch  # the result says which batch the run used
        convolutions = [layer for layer in result.model.layers if isinstance(layer, keras.layers.Conv2D)]
        # A preset name is fitted to the images as given: two convolutions per block for 4,000 of them.
        assert len(convolutions) == 4 * (2 if count == 4000 else 1)
