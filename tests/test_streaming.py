"""Folders streamed from disk by tf.data: listing, decoding, training, caching."""

import json

import numpy as np
import pytest

import cnnviz
from cnnviz.errors import DatasetError

from .conftest import write_image


def _bright_dark_folder(root, per_class=24, size=(20, 20), gray=False, formats=("png", "jpg", "bmp", "gif")):
    """Two learnable classes (bright vs dark) in assorted formats."""
    rng = np.random.default_rng(0)
    for label, name in enumerate(("dark", "bright")):
        for number in range(per_class):
            shape = size if gray else (*size, 3)
            array = rng.integers(0, 90, shape, dtype=np.uint8) + 150 * label
            suffix = formats[number % len(formats)]
            options = {"quality": 95} if suffix == "jpg" else {}
            write_image(root / name / f"{number:03d}.{suffix}", array.astype(np.uint8), **options)
    return root


def test_listing_reads_no_pixels_and_reports_what_it_skips(tmp_path):
    root = _bright_dark_folder(tmp_path / "set")
    write_image(root / "dark" / "odd.webp", np.zeros((20, 20, 3), np.uint8))
    (root / "dark" / ".DS_Store").write_bytes(b"junk")
    stream = cnnviz.stream_image_folder(root, validation_split=0.25, test_split=0.25)
    assert stream.class_names == ("bright", "dark")
    assert stream.image_shape == (20, 20, 3)
    assert (len(stream.train), len(stream.validation), len(stream.test)) == (24, 12, 12)
    assert stream.report.skipped == [
        ("dark/odd.webp", "not PNG, JPEG, GIF or BMP (tf.data cannot stream it)")
    ]
    assert stream.report.ignored == 1
    assert "streamed from disk" in stream.summary()
    # Splits are disjoint and stratified.
    files = stream.train.files + stream.validation.files + stream.test.files
    assert len(set(files)) == 48
    assert np.bincount(stream.validation.labels).tolist() == [6, 6]


def test_batches_hold_the_same_pixels_as_the_in_memory_loader(tmp_path):
    root = _bright_dark_folder(tmp_path / "set", formats=("png",))
    stream = cnnviz.stream_image_folder(root, validation_split=0.0)
    images, labels = next(iter(stream.dataset("train", batch_size=48)))
    assert images.dtype.name == "uint8" and images.shape == (48, 20, 20, 3)
    from PIL import Image

    for image, path in zip(images.numpy(), stream.train.files):
        np.testing.assert_array_equal(image, np.asarray(Image.open(path).convert("RGB")))
    assert labels.numpy().tolist() == stream.train.labels.tolist()


def test_mixed_sizes_are_resized_gray_is_detected_and_broken_files_skipped(tmp_path):
    root = _bright_dark_folder(tmp_path / "set", gray=True, formats=("png",))
    write_image(root / "dark" / "big.png", np.zeros((60, 40), np.uint8))
    (root / "bright" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    stream = cnnviz.stream_image_folder(root, image_size=16, validation_split=0.0)
    assert stream.image_shape == (16, 16, 1)
    images, labels = stream.arrays("train")
    assert images.shape == (49, 16, 16, 1)  # 50 listed, the broken one skipped without a crash
    assert len(labels) == 49


def test_a_streamed_folder_trains_at_the_size_its_images_share(tmp_path):
    root = _bright_dark_folder(tmp_path / "set", size=(20, 24), gray=True, formats=("png",))
    stream = cnnviz.stream_image_folder(root, validation_split=0.0)
    assert stream.image_shape == (20, 24, 1)
    assert stream.report.size_reason == "all images are 20x24"
    images, _ = stream.arrays("train")
    assert images.shape[1:] == (20, 24, 1)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda root: root / "missing", "not a folder"),
        (lambda root: _bright_dark_folder(root / "one", per_class=3).joinpath("dark"), "class folder"),
    ],
)
def test_bad_folders_get_one_clear_line(tmp_path, make, message):
    with pytest.raises(DatasetError, match=message):
        cnnviz.stream_image_folder(make(tmp_path))


def test_a_single_wrapping_folder_is_looked_through(tmp_path):
    _bright_dark_folder(tmp_path / "outer" / "dataset", per_class=4)
    assert cnnviz.stream_image_folder(tmp_path / "outer").class_names == ("bright", "dark")


def test_training_on_a_stream_learns_and_a_second_run_reads_the_disk_cache(tmp_path):
    root = _bright_dark_folder(tmp_path / "set", per_class=40)
    cache = tmp_path / "cache"
    stream = cnnviz.stream_image_folder(root, validation_split=0.25, cache_dir=cache)
    config = cnnviz.TrainConfig(epochs=4, batch_size=16)
    result = cnnviz.train("fast", stream, config)
    assert result.val_accuracy >= 0.9
    assert result.samples_seen == 4 * 60
    assert cnnviz.class_names_of(result.model) == ("bright", "dark")
    cached = sorted(path.name for path in cache.iterdir())
    assert any(name.startswith("set-train-") for name in cached)
    # The same files and shape read the same cache; another size gets its own.
    other = cnnviz.stream_image_folder(root, image_size=16, validation_split=0.25, cache_dir=cache)
    assert other._cache_file("train") != stream._cache_file("train")
    import shutil

    shutil.rmtree(root)  # the images are gone: only the cache can feed the second run
    # Two epochs of 4 batches: after one, Muon's model validated at 80 % (85 % at learning rate 0.01).
    again = cnnviz.train("fast", stream, config.replace(epochs=2))
    assert again.samples_seen == 2 * 60 and again.val_accuracy >= 0.9


def test_cli_streams_a_folder(tmp_path, capsys):
    from cnnviz.cli import main

    root = _bright_dark_folder(tmp_path / "set", per_class=30)
    out = tmp_path / "model.keras"
    logs = tmp_path / "logs"
    argv = ["train", "--data", str(root), "--stream", "--epochs", "3", "--out", str(out)]
    assert main([*argv, "--log-dir", str(logs), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["val_accuracy"] >= 0.8 and summary["classes"] == ["bright", "dark"]
    assert cnnviz.load_model(out).input_shape[1:] == (20, 20, 3)
    # TensorBoard logs: event files for training and validation.
    assert list((logs / "train").glob("events.out.tfevents.*"))
    assert list((logs / "validation").glob("events.out.tfevents.*"))
    assert main(["train", "--data", "shapes", "--stream", "--out", str(out)]) == 2
    assert "streaming reads a folder of class subfolders; shapes is not a folder" in capsys.readouterr().err


def test_every_pipeline_from_memory_or_disk_runs_without_tf_data_autotuning(tmp_path, tiny_arrays):
    # Deleting an iterator waited for autotuning's model thread: fit returned up to half a minute late.
    from cnnviz.training.sources import as_source

    stream = cnnviz.stream_image_folder(_bright_dark_folder(tmp_path / "set"), validation_split=0.25)
    pipelines = {"stream, read directly (evaluate, timeline)": stream.dataset("validation", 8)}
    for source in (as_source(tiny_arrays).with_validation(0.25, seed=0), as_source(stream)):
        for split, shuffle in (("train", True), ("validation", False)):
            pipelines[f"{type(source).__name__}, {split}"] = source.dataset(split, 8, shuffle=shuffle, seed=0)
    for name, pipeline in pipelines.items():
        assert pipeline.options().autotune.enabled is False, name
        images, labels = next(iter(pipeline))
        assert len(images) == len(labels) == 8, name
