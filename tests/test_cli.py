import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cnnviz.cli import main

from .conftest import write_image

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "models"


def _run(capsys, *argv):
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _last_json(out):
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture
def image_folder(tmp_path):
    rng = np.random.default_rng(0)
    for name, low in (("dark", 0), ("bright", 150)):
        for index in range(12):
            write_image(
                tmp_path / "data" / name / f"{index}.png",
                rng.integers(low, low + 100, (20, 20, 3)).astype(np.uint8),
            )
    return tmp_path / "data"


def test_train_evaluate_predict_json_contract(capsys, tmp_path, image_folder):
    model_path = tmp_path / "m.keras"
    status, out, err = _run(
        capsys,
        "train",
        "--data",
        str(image_folder),
        "--epochs",
        "6",
        "--batch-size",
        "8",
        "--image-size",
        "16",
        "--out",
        str(model_path),
        "--json",
    )
    assert status == 0, err
    summary = _last_json(out)
    assert set(summary) >= {"train_seconds", "epochs", "samples_per_second", "val_accuracy", "classes"}
    assert summary["classes"] == ["bright", "dark"] and summary["epochs"] == 6
    assert 1 <= summary["kept_epoch"] <= 6  # the epoch whose weights were saved
    assert summary["parameters"] > 0 and summary["flops_per_image"] > summary["parameters"]
    assert model_path.exists()

    # Its own training folder: scored on the test split it never saw (2 of 12 per class).
    status, out, err = _run(capsys, "evaluate", str(model_path), "--data", str(image_folder), "--json")
    assert status == 0, err
    report = _last_json(out)
    assert report["n"] == 4 and report["classes"] == ["bright", "dark"]
    # Another folder: all of it.
    import shutil

    other = shutil.copytree(image_folder, tmp_path / "other")
    status, out, err = _run(capsys, "evaluate", str(model_path), "--data", str(other), "--json")
    assert status == 0, err
    report = _last_json(out)
    assert report["n"] == 24 and np.asarray(report["confusion_matrix"]).sum() == 24
    assert report["accuracy"] >= 0.9  # bright vs dark: an inverted class map would score 0

    good = image_folder / "bright" / "0.png"
    bad = tmp_path / "bad.png"
    bad.write_text("<html>")
    status, out, err = _run(capsys, "predict", str(model_path), str(good), str(bad), "--top-k", "2", "--json")
    assert status != 0
    answer = _last_json(out)
    assert [item["file"] for item in answer["predictions"]] == [str(good)]
    assert len(answer["predictions"][0]["top_k"]) == 2
    assert set(answer["predictions"][0]) == {"file", "class", "probability", "top_k", "input_size"}
    assert answer["predictions"][0]["input_size"] == [16, 16]  # the trained model's own size
    assert answer["errors"][0]["file"] == str(bad) and "not an image" in answer["errors"][0]["error"]
    assert err.strip().count("\n") == 0 and "Traceback" not in err


def test_evaluate_unknown_class_folder_is_clear(capsys, tmp_path, image_folder):
    model_path = tmp_path / "m.keras"
    assert (
        _run(
            capsys,
            "train",
            "--data",
            str(image_folder),
            "--epochs",
            "1",
            "--image-size",
            "16",
            "--out",
            str(model_path),
        )[0]
        == 0
    )
    import shutil

    other = shutil.copytree(image_folder, image_folder.parent / "other")
    (other / "bright").rename(other / "zebra")
    status, out, err = _run(capsys, "evaluate", str(model_path), "--data", str(other))
    assert status == 2
    assert "'zebra' is not one the model knows" in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--data", "nowhere", "--out", "m.keras"], "unknown data source"),
        (["train", "--data", "digits", "--epochs", "zero", "--out", "m.keras"], "not a whole number"),
        (["train", "--data", "digits", "--time-budget", "-3", "--out", "m.keras"], "positive"),
        (["train", "--data", "digits", "--out", "model.h5"], "must end in .keras"),
        (["train", "--data", "digits", "--preset", "huge", "--out", "m.keras"], "invalid choice"),
        (["evaluate", "missing.keras", "--data", "digits"], "no such model"),
        (["predict", "missing.keras", "x.png"], "no such model"),
        (["frobnicate"], "invalid choice"),
        (["train", "--data", "digits", "--set", "wings=2", "--out", "m.keras"], "FIELD one of"),
        (
            ["train", "--data", "digits", "--set", "pooled_blocks=9", "--out", "m.keras"],
            "pooled_blocks must be",
        ),
        (["explain", "missing.keras", "x.png", "--out", "o"], "no such model"),
        (["explain", "m.keras", "x.png", "--out", "o", "--method", "magic"], "invalid choice"),
        (["explain", "m.keras", "x.png", "--out", "o", "--opacity", "3"], "between 0 and 1"),
    ],
)
def test_bad_input_one_line_no_traceback(capsys, argv, message):
    status, out, err = _run(capsys, *argv)
    assert status == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_not_a_model_file(capsys, tmp_path):
    fake = tmp_path / "fake.keras"
    fake.write_bytes(b"pickle? no")
    status, _, err = _run(capsys, "predict", str(fake), "x.png")
    assert status == 2 and "not a Keras 3 .keras model file" in err


def test_native_noise_on_stderr_is_held_back_unless_the_block_fails(capfd):
    import os

    from cnnviz.cli import native_stderr_held_back

    # What TensorFlow's C++ side writes to descriptor 2 while it loads, on AVX-512 CPUs.
    with native_stderr_held_back():
        os.write(2, b"I0000 port.cc:153] oneDNN custom operations are on.\n")
    assert capfd.readouterr().err == ""
    with pytest.raises(ImportError), native_stderr_held_back():
        os.write(2, b"libtensorflow_cc.so.2: cannot open shared object file\n")
        raise ImportError("no tensorflow")
    assert "cannot open shared object file" in capfd.readouterr().err  # a failure keeps its reason
    print("after", file=sys.stderr)
    assert capfd.readouterr().err == "after\n"  # and stderr is back


def test_python_dash_m_entry_point(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "cnnviz", "predict", str(tmp_path / "none.keras"), "x.png"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines() == [
        f"cnnviz: {tmp_path / 'none.keras'}: no such model file."
    ]


@pytest.mark.parametrize("name, classes, size", [("shapes", 4, (64, 64, 3)), ("digits", 10, (28, 28, 1))])
def test_the_shipped_default_models_answer_on_test_images_they_never_saw(name, classes, size):
    import cnnviz
    from cnnviz import runs

    path = ASSETS / f"{name}.keras"
    assert path.stat().st_size <= 2 * 1024 * 1024
    model = cnnviz.load_model(path)
    assert len(cnnviz.class_names_of(model)) == classes
    assert tuple(model.input_shape[1:]) == size
    # Scored on the test split of the split it was trained with (seed 0), never on images it learnt from.
    trained_on = {image.tobytes() for image in cnnviz.load_dataset(name, seed=0).train.images}
    test = runs.evaluation_data(model, name).test
    assert not any(image.tobytes() in trained_on for image in test.images)
    if name == "digits":  # the check has teeth: the old test's reshuffle (seed 99) was mostly training images
        reshuffled = cnnviz.load_dataset(name, seed=99).test
        assert np.mean([image.tobytes() in trained_on for image in reshuffled.images]) > 0.5
    assert runs.evaluate_saved(model, name).accuracy >= 0.9


def test_evaluate_reuses_the_training_seed_for_an_unseen_test_split(capsys, tmp_path, monkeypatch):
    import cnnviz
    from cnnviz.cli import commands

    model_path = tmp_path / "digits.keras"
    status, _, err = _run(
        capsys, "train", "--data", "digits", "--epochs", "1", "--seed", "7", "--out", str(model_path)
    )
    assert status == 0, err
    from cnnviz.saving import get_metadata

    training = get_metadata(cnnviz.load_model(model_path))["training"]
    assert training["seed"] == 7
    # 1,797 digits are few: no shifts, batch 32, one convolution per block, and no note about it.
    assert (training["train_config"]["translate"], training["train_config"]["batch_size"]) == (0.0, 32)
    assert training["model_config"]["convs_per_block"] == 1 and "training images under" not in err
    seeds = []
    real_load = commands._load_data

    def spy(source, **kwargs):
        seeds.append(kwargs.get("seed"))
        return real_load(source, **kwargs)

    monkeypatch.setattr(commands, "_load_data", spy)
    assert _run(capsys, "evaluate", str(model_path), "--data", "digits")[0] == 0
    assert _run(capsys, "evaluate", str(model_path), "--data", "digits", "--seed", "3")[0] == 0
    assert seeds == [7, 3]


def test_train_on_many_small_images_shifts_them_in_batches_of_64_unless_told_otherwise(
    capsys, tmp_path, monkeypatch
):
    import cnnviz
    from cnnviz.cli import commands
    from cnnviz.data import Split
    from cnnviz.saving import get_metadata

    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 255, (4100, 8, 8, 1), dtype=np.uint8), np.arange(4100) % 2
    many = cnnviz.Dataset(
        "tiny",
        ("a", "b"),
        Split(images[:4000], labels[:4000]),
        Split(images[:0], labels[:0]),
        Split(images[4000:], labels[4000:]),
    )
    monkeypatch.setattr(commands, "_load_data", lambda source, **options: many)
    for flags, translate, batch in (((), 0.06, 64), (("--no-augment", "--batch-size", "16"), 0.0, 16)):
        path = tmp_path / f"tiny{len(flags)}.keras"
        argv = [
            "train",
            "--data",
            "tiny",
            "--epochs",
            "1",
            "--set",
            "conv_blocks=2",
            *flags,
            "--out",
            str(path),
        ]
        status, _, err = _run(capsys, *argv)
        assert status == 0, err
        assert "4,000 training images whose shorter side is under 48 px" in err  # the CLI says why
        training = get_metadata(cnnviz.load_model(path))["training"]
        assert (training["train_config"]["translate"], training["train_config"]["batch_size"]) == (
            translate,
            batch,
        )
        assert training["model_config"]["convs_per_block"] == 2


def test_ctrl_c_during_training_saves_the_model_so_far(tmp_path):
    import signal
    import time

    model_path = tmp_path / "interrupted.keras"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cnnviz",
            "train",
            "--data",
            "digits",
            "--epochs",
            "100000",
            "--out",
            str(model_path),
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while not model_path.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)  # until the first epoch's checkpoint
        assert model_path.exists() and process.poll() is None, "training ended or never saved an epoch"
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["stop_reason"] == "stopped"
    assert "Traceback" not in err
    import cnnviz
    from cnnviz.saving import get_metadata

    model = cnnviz.load_model(model_path)
    assert cnnviz.class_names_of(model)[0] == "0"
    # The file is the stopped run's final save, not only the last epoch's checkpoint.
    assert get_metadata(model)["training"]["outcome"]["stop_reason"] == "stopped"


def test_explain_writes_overlays_and_json_and_reports_bad_files(capsys, tmp_path):
    from PIL import Image

    from cnnviz.images import resize_image
    from cnnviz.shapes import generate_shapes

    images, labels, _ = generate_shapes(2, seed=77)
    images = [images[0], resize_image(images[1], (90, 70))]  # files of different sizes, one overlay each
    files = [write_image(tmp_path / "in" / f"shape{i}.png", image) for i, image in enumerate(images)]
    broken = tmp_path / "in" / "broken.png"
    broken.write_bytes(b"not an image")
    out_dir = tmp_path / "out"
    status, out, err = _run(
        capsys,
        "explain",
        str(ASSETS / "shapes.keras"),
        *map(str, files),
        str(broken),
        "--method",
        "gradcam",
        "--out",
        str(out_dir),
        "--json",
    )
    assert status == 2  # one file was bad, the others were still explained
    payload = _last_json(out)
    assert [item["file"] for item in payload["results"]] == [str(f) for f in files]
    assert payload["errors"][0]["file"] == str(broken) and "broken.png" in err
    for item, image in zip(payload["results"], images):
        assert item["class"] in ("circle", "square", "triangle", "star") and 0 < item["probability"] <= 1
        overlay = np.asarray(Image.open(item["heatmap_png"]))
        assert overlay.shape == image.shape
        assert not np.array_equal(overlay, image)  # the heatmap is drawn on it

    status, out, err = _run(
        capsys,
        "explain",
        str(ASSETS / "shapes.keras"),
        str(files[0]),
        "--class",
        "star",
        "--method",
        "occlusion",
        "--out",
        str(out_dir),
        "--json",
    )
    assert status == 0, err
    assert _last_json(out)["results"][0]["class"] == "star"
    status, _, err = _run(
        capsys,
        "explain",
        str(ASSETS / "shapes.keras"),
        str(files[0]),
        "--class",
        "cat",
        "--out",
        str(out_dir),
    )
    assert status == 2 and "the model's classes are circle" in err


def test_train_set_changes_the_model_design(capsys, tmp_path, image_folder):
    model_path = tmp_path / "m.keras"
    status, out, err = _run(
        capsys,
        "train",
        "--data",
        str(image_folder),
        "--epochs",
        "1",
        "--image-size",
        "16",
        "--set",
        "conv_blocks=1",
        "--set",
        "filters=8",
        "--out",
        str(model_path),
        "--json",
    )
    assert status == 0, err
    import cnnviz

    model = cnnviz.load_model(model_path)
    assert model.get_layer("conv1").filters == 8
    assert "conv2" not in [layer.name for layer in model.layers]


def test_version_says_the_packages_version(capsys):
    from importlib import metadata

    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"cnnviz {metadata.version('cnnviz')}"


def test_every_train_config_field_is_a_flag_of_train_and_compare(capsys):
    import dataclasses

    from cnnviz.cli import build_parser
    from cnnviz.cli.arguments import given_fields
    from cnnviz.cli.commands import _train_config
    from cnnviz.training import TrainConfig

    parser = build_parser()
    for command in ("train", "compare"):
        action = next(a for a in parser._actions if a.dest == "command")
        flags = {option for a in action.choices[command]._actions for option in a.option_strings}
        for field in dataclasses.fields(TrainConfig):
            assert "--" + field.name.replace("_", "-") in flags, (command, field.name)
    args = parser.parse_args(
        [
            "train",
            "--data",
            "digits",
            "--out",
            "m.keras",
            "--schedule",
            "constant",
            "--flip",
            "horizontal",
            "--augment",
        ]
    )
    assert given_fields(args, TrainConfig) == {"schedule": "constant", "flip": "horizontal"}
    config = _train_config(args, args.augment)
    assert (config.schedule, config.flip, config.translate, config.epochs) == (
        "constant",
        "horizontal",
        0.06,
        10,
    )
    budget_only = _train_config(
        parser.parse_args(["train", "--data", "d", "--out", "m.keras", "--time-budget", "5"]), False
    )
    assert (budget_only.epochs, budget_only.time_budget) == (None, 5.0)  # until the budget is spent
    assert main(["train", "--data", "digits", "--out", "m.keras", "--flip", "sideways"]) == 2
    assert "invalid choice: 'sideways'" in capsys.readouterr().err


def test_each_train_flag_states_its_default_once(capsys):
    from cnnviz.cli import build_parser

    action = next(a for a in build_parser()._actions if a.dest == "command")
    helps = {a.dest: a.help for a in action.choices["train"]._actions if a.help}
    assert helps["epochs"].count("default 10") == 1  # its own help says it; none added twice
    assert helps["early_stopping"].endswith("(default 0)")  # added where the help does not say it
    assert helps["batch_size"].endswith(
        "(default: 64 for 4,000 or more training images whose shorter side is under 48 px, else 32)"
    )
    assert all(text.count("(default") <= 1 for text in helps.values())


def test_evaluate_draws_the_training_sources_split_again_with_its_options(capsys, tmp_path, image_folder):
    import cnnviz

    model_path = tmp_path / "small-shapes.keras"
    argv = ["train", "--data", "shapes", "--num-samples", "400", "--epochs", "1", "--image-size", "32"]
    assert _run(capsys, *argv, "--out", str(model_path))[0] == 0
    status, out, err = _run(capsys, "evaluate", str(model_path), "--data", "shapes", "--json")
    assert status == 0, err
    assert _last_json(out)["n"] == 80  # the test split of the same 400 images, not of 6,000 regenerated ones
    # Streamed from a folder with nothing held out for testing: said, not scored on training images.
    streamed = tmp_path / "streamed.keras"
    assert (
        _run(
            capsys, "train", "--data", str(image_folder), "--stream", "--epochs", "1", "--out", str(streamed)
        )[0]
        == 0
    )
    status, _, err = _run(capsys, "evaluate", str(streamed), "--data", str(image_folder))
    assert status == 2 and "none of it was held out for testing" in err
    assert cnnviz.load_model(streamed).input_shape[1:] == (20, 20, 3)


def test_compare_with_epochs_and_no_budget_runs_the_epochs(capsys):
    argv = [
        "compare",
        "--data",
        "digits",
        "--num-samples",
        "300",
        "--variants",
        "baseline",
        "--epochs",
        "2",
        "--json",
    ]
    assert main(argv) == 0
    row = _last_json(capsys.readouterr().out)["results"][0]
    assert row["epochs"] == 2 and row["stop_reason"] == "completed"


def test_a_negative_seed_is_a_one_line_error(capsys):
    status, _, err = _run(capsys, "train", "--data", "digits", "--seed", "-1", "--out", "m.keras")
    assert status == 2 and "seed must be" in err and len(err.strip().splitlines()) == 1


def test_score_ranks_methods_in_json_and_refuses_an_unknown_layer(capsys):
    status, out, err = _run(
        capsys,
        "score",
        str(ASSETS / "shapes.keras"),
        "--data",
        "shapes",
        "--methods",
        "gradcam",
        "saliency",
        "--layers",
        "act3",
        "act4",
        "--images",
        "12",
        "--json",
    )
    assert status == 0, err
    payload = _last_json(out)
    assert payload["n"] == 12
    assert [(row["method"], row["layer"]) for row in payload["methods"]] == [
        ("gradcam", "act3"),
        ("gradcam", "act4"),
        ("saliency", None),
        ("random", None),
    ]
    chosen = payload["recommended"]
    assert (chosen["method"], chosen["layer"]) in {
        (row["method"], row["layer"]) for row in payload["methods"][:3]
    }
    assert chosen["reason"]
    status, _, err = _run(
        capsys, "score", str(ASSETS / "shapes.keras"), "--data", "shapes", "--layers", "conv9"
    )
    assert status == 2 and "no layer 'conv9'" in err and "Traceback" not in err


def test_explain_contrast_writes_the_why_not_map_and_refuses_the_explained_class(capsys, tmp_path):
    sample = ASSETS.parent / "samples" / "shape_star.png"
    status, out, err = _run(
        capsys,
        "explain",
        str(ASSETS / "shapes.keras"),
        str(sample),
        "--contrast",
        "square",
        "--out",
        str(tmp_path),
        "--json",
    )
    assert status == 0, err
    item = _last_json(out)["results"][0]
    assert (item["class"], item["contrast"]) == ("star", "square")
    assert item["heatmap_png"].endswith("shape_star.not-square.png") and Path(item["heatmap_png"]).is_file()
    assert item["map"] == "contrast"
    # An image the model already calls the contrast class is reported; the others are still drawn.
    square = ASSETS.parent / "samples" / "shape_square.png"
    status, out, err = _run(
        capsys,
        "explain",
        str(ASSETS / "shapes.keras"),
        str(sample),
        str(square),
        "--contrast",
        "star",
        "--out",
        str(tmp_path),
        "--json",
    )
    payload = _last_json(out)
    assert status == 2 and "predicts star itself" in err
    assert [entry["file"] for entry in payload["errors"]] == [str(sample)]
    assert [(entry["class"], entry["contrast"]) for entry in payload["results"]] == [("square", "star")]
    status, _, err = _run(
        capsys,
        "explain",
        str(ASSETS / "shapes.keras"),
        str(sample),
        "--class",
        "star",
        "--contrast",
        "star",
        "--out",
        str(tmp_path),
    )
    assert status == 2 and "--contrast star" in err
