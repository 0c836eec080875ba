"""Hostile and unusual inputs (tests/hostile.py) through the loader, the dataset
readers, the model loader and the CLI: clear one-line refusals, or real results."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

import cnnviz
from cnnviz.cli import main
from cnnviz.errors import CnnvizError

from . import hostile

ROOT = Path(__file__).resolve().parent.parent
SHAPES_MODEL = str(ROOT / "assets" / "models" / "shapes.keras")
SAMPLE = str(ROOT / "assets" / "samples" / "shape_circle.png")


def _one_clear_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line.startswith("cnnviz:")]
    assert lines and "Traceback" not in err, err
    return lines[-1]


@pytest.mark.parametrize(
    "name, data, message", hostile.bad_images(), ids=[c[0] for c in hostile.bad_images()]
)
def test_bad_images_are_refused_in_one_line_by_loader_and_cli(name, data, message, tmp_path, capsys):
    with pytest.raises(cnnviz.ImageError) as error:
        cnnviz.load_image(data)
    assert message in str(error.value) and "\n" not in str(error.value)
    path = tmp_path / name
    path.write_bytes(data)
    # One bad file among good ones: a non-zero exit, one line, and the good file still answered.
    assert main(["predict", SHAPES_MODEL, SAMPLE, str(path), "--json"]) == 2
    payload = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [item["class"] for item in payload["predictions"]] == ["circle"]
    assert payload["errors"][0]["file"] == str(path) and message in payload["errors"][0]["error"]


@pytest.mark.parametrize(
    "name, data, shape", hostile.good_images(), ids=[c[0] for c in hostile.good_images()]
)
def test_unusual_images_work(name, data, shape, tmp_path, capsys):
    image = cnnviz.load_image(data)
    assert image.shape == shape and image.dtype == np.uint8
    path = tmp_path / name
    path.write_bytes(data)
    assert main(["predict", SHAPES_MODEL, str(path), "--json"]) == 0
    prediction = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["predictions"][0]
    assert prediction["class"] in ("circle", "square", "triangle", "star")


def test_exif_rotation_is_applied_not_just_the_size():
    image = cnnviz.load_image(hostile._exif_rotated())
    # 40 wide x 20 high, left half blue; rotated 90 degrees clockwise: the blue half ends on top.
    assert image[5, 10, 2] > 200 and image[5, 10, 0] < 60
    assert image[35, 10, 0] > 200 and image[35, 10, 2] < 60


def test_bad_zips_are_refused_by_the_reader_and_the_cli(tmp_path, capsys):
    for name, path, message in hostile.bad_zips(tmp_path / "zips"):
        with pytest.raises(CnnvizError) as error:
            cnnviz.load_dataset(path)
        assert message in str(error.value), (name, str(error.value))
        assert (
            main(["train", "--data", str(path), "--epochs", "1", "--out", str(tmp_path / "m.keras")]) == 2
        ), name
        assert message in _one_clear_line(capsys), name
        assert not (tmp_path / "m.keras").exists()


def test_a_zip_bomb_is_refused_by_its_declared_size_or_its_bomb_entry_skipped(tmp_path, monkeypatch, capsys):
    path = hostile.zip_bomb(tmp_path / "bomb.zip")
    assert path.stat().st_size < 2 * 2**20
    data = cnnviz.load_dataset(path, validation_split=0.0, test_split=0.0)  # default limits: 2 GB unpacked
    assert len(data.train) == 8
    assert data.report.skipped[0][0] == "cats/zeros.png"
    monkeypatch.setenv("CNNVIZ_MAX_ZIP_BYTES", str(100 * 2**20))
    with pytest.raises(cnnviz.DatasetError, match="unpacks to 300 MB, over the limit of 100 MB"):
        cnnviz.load_dataset(path)
    assert main(["train", "--data", str(path), "--out", str(tmp_path / "m.keras")]) == 2
    assert "over the limit" in _one_clear_line(capsys)


def test_hostile_zip_entries_are_skipped_and_never_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a traversal would land around here
    for name, path, images in hostile.skipped_entry_zips(tmp_path / "zips"):
        data = cnnviz.load_dataset(path, validation_split=0.0, test_split=0.0)
        assert len(data.train) == images, name
        assert data.report.skipped, name
    written = {p.name for p in tmp_path.parent.rglob("*.png")} | {p.name for p in Path("/tmp").glob("*.png")}
    assert not {"x.png", "y.png", "cnnviz-absolute.png"} & written


def test_good_zips_load(tmp_path):
    for name, path, images in hostile.good_zips(tmp_path / "zips"):
        data = cnnviz.load_dataset(path, validation_split=0.0, test_split=0.0)
        assert len(data.train) == images, name
        assert data.class_names == ("cats", "dogs"), name


def test_bad_model_files_are_refused_in_one_line_by_the_loader_and_the_cli_and_no_code_from_them_runs(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("CNNVIZ_MAX_MODEL_BYTES", hostile.MODEL_BYTES_FOR_TESTS)
    for name, path, message in hostile.bad_models(tmp_path / "models"):
        with pytest.raises(cnnviz.ModelFileError) as error:
            cnnviz.load_model(path)
        assert message in str(error.value), (name, str(error.value))
        assert main(["predict", str(path), SAMPLE]) == 2, name
        assert message in _one_clear_line(capsys), name
    assert not (tmp_path / "models" / hostile.LAMBDA_RAN).exists()


def test_a_model_for_another_input_size_resizes_the_image(tmp_path, capsys):
    model = cnnviz.build_model(cnnviz.preset_config("fast", (20, 30, 1), 3))
    path = cnnviz.save_model(model, tmp_path / "small.keras", ("a", "b", "c"))
    assert main(["predict", str(path), SAMPLE, "--json"]) == 0  # a 64x64 colour image into 20x30 gray
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["predictions"][0]["class"] in (
        "a",
        "b",
        "c",
    )


def test_a_model_without_conv_layers_predicts_and_grad_cam_says_why_not(tmp_path, capsys):
    import keras

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs))
    outputs = keras.layers.Activation("softmax", name="probs")(keras.layers.Dense(2, name="logits")(x))
    path = cnnviz.save_model(keras.Model(inputs, outputs), tmp_path / "dense.keras", ("a", "b"))
    assert main(["predict", str(path), SAMPLE]) == 0
    capsys.readouterr()
    assert main(["explain", str(path), SAMPLE, "--out", str(tmp_path / "out")]) == 2
    assert "convolution" in _one_clear_line(capsys).lower()
    # Methods that need no feature map still work on it.
    assert main(["explain", str(path), SAMPLE, "--method", "saliency", "--out", str(tmp_path / "out")]) == 0


def test_one_image_per_class_trains(tmp_path):
    images = np.stack([np.zeros((16, 16, 3), np.uint8), np.full((16, 16, 3), 255, np.uint8)])
    result = cnnviz.train("fast", (images, np.array([0, 1])), cnnviz.TrainConfig(epochs=2, batch_size=64))
    assert result.epochs == 2 and result.samples_seen == 4


def test_a_one_second_budget_stops_in_time_and_keeps_a_model(tiny_arrays):
    images, labels = tiny_arrays
    result = cnnviz.train("fast", (images, labels), cnnviz.TrainConfig(time_budget=1.0, epochs=None))
    assert result.stop_reason == "time_budget"
    assert result.model.predict(images[:2].astype("float32"), verbose=0).shape == (2, 2)


def test_training_killed_at_random_moments_always_leaves_a_loadable_model(tmp_path):
    """SIGKILL, no clean-up: --out holds the previous model or the last finished epoch, never a torn file."""
    import os
    import random
    import shutil
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "model.keras"
    shutil.copy(SHAPES_MODEL, out)  # the previous saved model
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    rng = random.Random(2026)  # a random moment early in the run (no epoch saved yet), one later (some saved)
    moments = [rng.uniform(3, 9), rng.uniform(12, 16)]
    classes_seen = set()
    for moment in moments:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cnnviz",
                "train",
                "--data",
                "digits",
                "--epochs",
                "200",
                "--out",
                str(out),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(moment)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        assert process.returncode == -signal.SIGKILL
        model = cnnviz.load_model(out)  # never torn
        classes_seen.add(len(cnnviz.class_names_of(model)))
        assert model.output_shape[-1] in (4, 10)
    assert 10 in classes_seen  # at least one kill came after a finished epoch had been saved


@pytest.mark.parametrize("preset", list(cnnviz.PRESETS))
def test_the_parameter_count_read_from_a_config_equals_the_built_models(preset, tmp_path):
    from cnnviz.saving import _config_sizes

    config = cnnviz.preset_config(preset, (64, 64, 3), 4)
    if isinstance(config, cnnviz.TransferConfig):
        config = config.replace(backbone_weights=None)
    model = cnnviz.build_model(config)
    path = cnnviz.save_model(model, tmp_path / "model.keras")
    with __import__("zipfile").ZipFile(path) as archive:
        parameters, activations, error = _config_sizes(json.loads(archive.read("config.json")))
    assert error is None and parameters == model.count_params()
    # The activations one image makes: every layer's output, as the built model reports them.
    assert activations == sum(
        math.prod(side or 1 for side in node.output_tensors[0].shape[1:])
        for layer in model._flatten_layers(include_self=False)
        for node in layer._inbound_nodes
    )
    assert cnnviz.load_model(path).count_params() == model.count_params()


def test_a_model_over_the_parameter_limit_is_refused_with_nothing_allocated_then_or_later(tmp_path):
    """2 billion filters (24 GB) in a fresh process: refused, and the deferred variables never allocate later."""
    path = hostile.many_parameters(tmp_path / "filters.keras")
    from .conftest import run_in_a_fresh_python

    run_in_a_fresh_python(
        f"""
import keras, cnnviz
try:
    cnnviz.load_model({str(path)!r})
except cnnviz.ModelFileError as error:
    assert "parameters, over the limit" in str(error), error
else:
    raise AssertionError("loaded")
with keras.StatelessScope():  # would initialize any variable left on Keras' list
    pass
# This process's own peak (VmHWM; ru_maxrss would also count the pytest process it was forked from).
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")) / 1024
assert peak < 1500, peak
"""
    )


def test_the_model_limits_are_configurable(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNVIZ_MAX_MODEL_PARAMS", "1000")
    with pytest.raises(cnnviz.ModelFileError, match=r"98,676 parameters, over the limit of 1,000"):
        cnnviz.load_model(SHAPES_MODEL)
    monkeypatch.delenv("CNNVIZ_MAX_MODEL_PARAMS")
    monkeypatch.setenv("CNNVIZ_MAX_MODEL_BYTES", "100000")
    with pytest.raises(cnnviz.ModelFileError, match=r"CNNVIZ_MAX_MODEL_BYTES"):
        cnnviz.load_model(SHAPES_MODEL)
    monkeypatch.delenv("CNNVIZ_MAX_MODEL_BYTES")
    assert cnnviz.load_model(SHAPES_MODEL).count_params() == 98676


def _any_size_model(input_shape=(None, None, 3)):
    import keras

    inputs = keras.Input(input_shape)
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv1")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(16, 3, activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(4, activation="softmax", name="probs")(x)
    return keras.Model(inputs, outputs)


def _noise_image(height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)


def test_a_model_that_takes_any_size_predicts_each_image_at_its_own_size_up_to_the_stated_side(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("CNNVIZ_MAX_INPUT_SIDE", "256")
    path = cnnviz.save_model(_any_size_model(), tmp_path / "any.keras", ("a", "b", "c", "d"))
    model = cnnviz.load_model(path)
    images = [
        _noise_image(120, 80),
        _noise_image(1000, 750, 1),
        _noise_image(10, 10, 2),
        _noise_image(40, 900, 3),
    ]
    results = cnnviz.predict(model, images, top_k=4)
    assert [result["input_size"] for result in results] == [[120, 80], [256, 192], [32, 32], [32, 256]]
    # The probabilities are the model's own at that size (a hand call, no cnnviz resizing on the first image).
    direct = np.asarray(model(images[0][None].astype("float32"), training=False))[0]
    by_class = {entry["class"]: entry["probability"] for entry in results[0]["top_k"]}
    np.testing.assert_allclose([by_class[name] for name in "abcd"], direct, rtol=1e-5)


@pytest.mark.parametrize("method", ["gradcam", "scorecam", "saliency", "integrated_gradients", "occlusion"])
def test_heatmaps_of_a_model_that_takes_any_size_equal_those_of_the_same_model_fixed_at_that_size(method):
    any_size = _any_size_model()
    fixed = _any_size_model((96, 72, 3))
    fixed.set_weights(any_size.get_weights())
    image = _noise_image(96, 72, 5)
    options = {"patch_size": 16, "stride": 16} if method == "occlusion" else {}
    ours = cnnviz.explain(any_size, image, method=method, **options)
    reference = cnnviz.explain(fixed, image, method=method, **options)
    assert ours.shape == (1, 96, 72)
    np.testing.assert_allclose(ours, reference, atol=1e-4)
    # Images of other sizes, together: each map is at its image's size and equals that image's alone,
    # with a class given per image.
    others = [_noise_image(50, 70, 6), image, _noise_image(300, 40, 7)]
    together = cnnviz.explain_each(any_size, others, method=method, class_index=[1, 2, 3], **options)
    assert [heatmap.shape for heatmap in together] == [(50, 70), (96, 72), (300, 40)]
    for heatmap, alone, index in zip(together, others, [1, 2, 3]):
        np.testing.assert_allclose(
            heatmap,
            cnnviz.explain(any_size, alone, method=method, class_index=index, **options)[0],
            atol=1e-5,
        )


def test_the_cli_says_which_size_a_model_that_takes_any_size_read_the_image_at(tmp_path, capsys):
    path = cnnviz.save_model(_any_size_model(), tmp_path / "any.keras", ("a", "b", "c", "d"))
    image = tmp_path / "wide.png"
    from PIL import Image

    Image.fromarray(_noise_image(300, 1200)).save(image)
    assert main(["predict", str(path), str(image)]) == 0
    captured = capsys.readouterr()
    assert "(read at 128x512)" in captured.out
    assert "takes any input size" in captured.err and "CNNVIZ_MAX_INPUT_SIDE" in captured.err
    assert main(["explain", str(path), str(image), "--out", str(tmp_path / "out"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["results"][0]
    assert result["input_size"] == [128, 512]
    from PIL import Image as PILImage

    assert PILImage.open(result["heatmap_png"]).size == (1200, 300)


def test_a_model_that_takes_any_size_is_evaluated_on_the_data_at_its_own_size():
    from cnnviz import runs
    from cnnviz.saving import set_metadata

    data = cnnviz.load_dataset("shapes")
    model = _any_size_model()
    set_metadata(model, class_names=list(data.class_names))
    result = runs.evaluate_saved(model, "shapes")
    assert result.n == len(data.test)
    expected = cnnviz.predict_probabilities(model, data.test.images).argmax(axis=1)
    assert result.accuracy == pytest.approx(float(np.mean(expected == data.test.labels)))


def test_occlusion_on_a_large_image_read_by_an_any_size_model_scales_its_patches_or_says_which_stride_to_use():
    model = _any_size_model()
    # Default patches at 300 px (scale 2): 16 wide, every 8 (1,184 passes); the same as asking for them.
    image = _noise_image(260, 300)
    np.testing.assert_allclose(
        cnnviz.explain(model, image, method="occlusion"),
        cnnviz.explain(model, image, method="occlusion", patch_size=16, stride=8),
    )
    image = _noise_image(384, 512)
    with pytest.raises(cnnviz.ConfigError, match=r"needs 12,065 passes per image, over 4,096; use a stride"):
        cnnviz.explain(model, image, method="occlusion", patch_size=8, stride=4)
