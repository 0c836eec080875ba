import gzip
import pickle
import tarfile
import zipfile

import numpy as np
import pytest

import cnnviz
from cnnviz.errors import DatasetError
from cnnviz.shapes import SHAPE_CLASSES, generate_shapes

from .conftest import trust_planted_files, write_image


def test_shapes_deterministic_balanced_with_boxes():
    images, labels, boxes = generate_shapes(300, seed=3)
    again, labels_again, _ = generate_shapes(300, seed=3)
    other, _, _ = generate_shapes(300, seed=4)
    np.testing.assert_array_equal(images, again)
    np.testing.assert_array_equal(labels, labels_again)
    assert not np.array_equal(images, other)
    assert images.shape == (300, 64, 64, 3) and images.dtype == np.uint8
    assert set(np.bincount(labels)) == {75}
    x_min, y_min, x_max, y_max = boxes.T
    assert (x_min >= 0).all() and (y_min >= 0).all() and (x_max < 64).all() and (y_max < 64).all()
    assert ((x_max - x_min) >= 4).all() and ((y_max - y_min) >= 4).all()


def test_shapes_box_holds_the_shape():
    # Many pixels in the box share one flat colour: the filled shape.
    images, _, boxes = generate_shapes(64, seed=1)
    for image, (x0, y0, x1, y1) in zip(images, boxes):
        centre = image[(y0 + y1) // 2, (x0 + x1) // 2].astype(float)
        inside = image[y0 : y1 + 1, x0 : x1 + 1].reshape(-1, 3).astype(float)
        # many pixels in the box share the centre colour (the filled shape)
        close = np.abs(inside - centre).sum(axis=1) < 60
        assert close.mean() > 0.3


def test_load_dataset_shapes_splits():
    data = cnnviz.load_dataset("shapes", num_samples=400, validation_split=0.1, test_split=0.2)
    assert data.class_names == SHAPE_CLASSES
    assert (len(data.train), len(data.validation), len(data.test)) == (280, 40, 80)
    assert data.test.boxes.shape == (80, 4)
    assert data.image_shape == (64, 64, 3)


def test_digits_upscaled_to_28_grayscale():
    data = cnnviz.load_dataset("digits")
    assert data.image_shape == (28, 28, 1)
    assert data.num_classes == 10
    total = len(data.train) + len(data.validation) + len(data.test)
    assert total == 1797
    # framed like MNIST: the border is empty
    assert data.train.images[:, :3].max() == 0


@pytest.mark.parametrize("source", ["nope", "/definitely/not/here"])
def test_unknown_source(source):
    with pytest.raises(DatasetError, match="unknown data source"):
        cnnviz.load_dataset(source)


def test_bad_fractions():
    with pytest.raises(DatasetError, match="validation_split"):
        cnnviz.load_dataset("digits", validation_split=1.5)


# --- keras.datasets through the real loaders, with files planted in the cache


def test_mnist_from_planted_cache(keras_home, monkeypatch):
    tmp_path = keras_home
    trust_planted_files(monkeypatch)
    (tmp_path / "datasets").mkdir()
    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "datasets" / "mnist.npz",
        x_train=rng.integers(0, 255, (50, 28, 28), dtype=np.uint8),
        y_train=np.arange(50) % 10,
        x_test=rng.integers(0, 255, (20, 28, 28), dtype=np.uint8),
        y_test=np.arange(20) % 10,
    )
    data = cnnviz.load_dataset("mnist", validation_split=0.2)
    assert data.image_shape == (28, 28, 1)
    assert (len(data.train), len(data.validation), len(data.test)) == (40, 10, 20)
    assert data.class_names[3] == "3"


def test_fashion_mnist_from_planted_cache(keras_home, monkeypatch):
    tmp_path = keras_home
    folder = tmp_path / "datasets" / "fashion-mnist"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, count in (("train", 30), ("t10k", 10)):
        labels = (np.arange(count) % 10).astype(np.uint8)
        images = rng.integers(0, 255, (count, 28, 28), dtype=np.uint8)
        with gzip.open(folder / f"{prefix}-labels-idx1-ubyte.gz", "wb") as handle:
            handle.write(b"\0" * 8 + labels.tobytes())
        with gzip.open(folder / f"{prefix}-images-idx3-ubyte.gz", "wb") as handle:
            handle.write(b"\0" * 16 + images.tobytes())
    data = cnnviz.load_dataset("fashion_mnist", validation_split=0.0, image_size=32)
    assert data.image_shape == (32, 32, 1)
    assert (len(data.train), len(data.test)) == (30, 10)
    assert data.class_names[9] == "ankle_boot"


def test_cifar10_from_planted_cache(keras_home, monkeypatch):
    tmp_path = keras_home
    trust_planted_files(monkeypatch)
    staging = tmp_path / "staging" / "cifar-10-batches-py"
    staging.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"data": np.zeros((10000, 3072), dtype=np.uint8),
            b"labels": [i % 10 for i in range(10000)],
        }
        batch[b"data"][:, :1024] = 200  # red channel
        with open(staging / name, "wb") as handle:
            pickle.dump(batch, handle)
    (tmp_path / "datasets").mkdir()
    with tarfile.open(tmp_path / "datasets" / "cifar-10-batches-py-target_archive", "w:gz") as archive:
        archive.add(staging, arcname="cifar-10-batches-py")
    data = cnnviz.load_dataset("cifar10", num_samples=200, validation_split=0.1)
    assert data.image_shape == (32, 32, 3)
    assert len(data.train) + len(data.validation) == 200
    assert len(data.test) == 10000
    assert data.train.images[0, 0, 0].tolist() == [200, 0, 0]


@pytest.mark.parametrize("source", ["mnist", "fashion_mnist", "cifar10"])
def test_offline_and_uncached_gives_one_clear_line(keras_home, source):
    with pytest.raises(DatasetError) as error:
        cnnviz.load_dataset(source)
    message = str(error.value)
    assert "\n" not in message
    assert "not in the Keras cache" in message and "could not be downloaded" in message


# --- folders and zips


def _make_class_folder(root, classes=("cats", "dogs"), per_class=6, size=(20, 30), gray=False):
    rng = np.random.default_rng(0)
    for name in classes:
        for number in range(per_class):
            shape = size if gray else (*size, 3)
            array = rng.integers(0, 255, shape, dtype=np.uint8)
            suffix = ("png", "jpg", "webp", "bmp", "gif", "tiff")[number % 6]
            write_image(root / name / f"{number}.{suffix}", array)
    return root


def test_folder_loads_every_format_and_skips_bad_files(tmp_path):
    root = _make_class_folder(tmp_path / "pets")
    (root / "cats" / "broken.png").write_bytes(b"not really a png")
    (root / "cats" / "notes.txt").write_text("hello")
    (root / ".DS_Store").write_bytes(b"\0junk")
    (root / "dogs" / "Thumbs.db").write_bytes(b"\0junk")
    data = cnnviz.load_dataset(root, image_size=16, validation_split=0.0, test_split=0.25)
    assert data.class_names == ("cats", "dogs")
    assert data.image_shape == (16, 16, 3)
    assert data.report.loaded == 12
    skipped = dict(data.report.skipped)
    assert "cats/broken.png" in skipped and "cats/notes.txt" in skipped
    assert data.report.ignored == 2
    assert len(data.train) + len(data.test) == 12


def test_folder_grayscale_stays_grayscale(tmp_path):
    root = _make_class_folder(tmp_path / "g", gray=True)
    data = cnnviz.load_dataset(root, image_size=(10, 12))
    assert data.image_shape == (10, 12, 1)


def test_a_folder_of_28x28_gray_images_loads_at_28x28_with_one_channel_and_says_why(tmp_path):
    root = _make_class_folder(tmp_path / "digits", size=(28, 28), gray=True)
    data = cnnviz.load_dataset(root)
    assert data.image_shape == (28, 28, 1)
    assert data.report.size_reason == "all images are 28x28"


def test_a_folder_of_mixed_sizes_loads_at_the_median_height_and_width(tmp_path):
    root = tmp_path / "mixed"
    rng = np.random.default_rng(0)
    # heights 20, 30, 40 (median 30); widths 50, 60, 70 (median 60)
    for index, size in enumerate([(20, 50), (30, 60), (40, 70)] * 2):
        write_image(root / ("a", "b")[index % 2] / f"{index}.png", rng.integers(0, 255, (*size, 3), np.uint8))
    data = cnnviz.load_dataset(root, validation_split=0.0, test_split=0.34)
    assert data.image_shape == (30, 60, 3)
    assert "median" in data.report.size_reason and "30x60" in data.report.size_reason


def test_large_images_are_scaled_down_to_fit_128_keeping_their_aspect_ratio(tmp_path):
    root = _make_class_folder(tmp_path / "photos", per_class=2, size=(200, 300))
    data = cnnviz.load_dataset(root, test_split=0.5, validation_split=0.0)
    assert data.image_shape == (85, 128, 3)  # 200 * 128 / 300 = 85.3
    assert "scaled down to 85x128" in data.report.size_reason


def test_image_size_overrides_the_native_size(tmp_path):
    root = _make_class_folder(tmp_path / "digits", size=(28, 28), gray=True)
    data = cnnviz.load_dataset(root, image_size=40)
    assert data.image_shape == (40, 40, 1)
    assert data.report.size_reason == "resized to the 40x40 asked for"


def test_native_size_rounds_halves_up_for_the_median_and_the_scaling():
    from cnnviz.data import native_size

    assert native_size([(20, 40), (31, 40)])[0] == (26, 40)  # median 25.5
    assert native_size([(165, 256)] * 2)[0] == (83, 128)  # 165 * 128 / 256 = 82.5


def test_native_size_of_tiny_images_is_scaled_up_to_the_smallest_side():
    from cnnviz.data import MIN_NATIVE_SIDE, native_size

    size, reason = native_size([(4, 6)] * 3)
    assert size == (MIN_NATIVE_SIDE, 12) and "scaled up" in reason


def test_zip_with_single_top_folder_and_macos_junk(tmp_path):
    root = _make_class_folder(tmp_path / "src" / "photos")
    archive_path = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive_path, "w") as archive:
        for file in sorted(root.rglob("*")):
            if file.is_file():
                archive.write(file, "photos/" + file.relative_to(root).as_posix())
        archive.writestr("__MACOSX/photos/cats/._0.png", b"junk")
        archive.writestr("../../evil.png", b"x")
    data = cnnviz.load_dataset(archive_path, image_size=16)
    assert data.class_names == ("cats", "dogs")
    assert data.report.loaded == 12
    assert data.report.ignored == 1
    assert any("unsafe path" in reason for _, reason in data.report.skipped)


def test_zip_declared_size_over_limit_refused(tmp_path, monkeypatch):
    archive_path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("a/zeros.png", b"\0" * 2_000_000)
        archive.writestr("b/zeros.png", b"\0" * 2_000_000)
    monkeypatch.setenv("CNNVIZ_MAX_ZIP_BYTES", "1000000")
    with pytest.raises(DatasetError, match="over the limit"):
        cnnviz.load_dataset(archive_path)


@pytest.mark.parametrize(
    "layout, message",
    [
        ({"only/1.png": True, "only/2.png": True}, "only one class"),
        ({"a/readme.txt": False, "b/x.txt": False}, "no readable images"),
        ({}, "no class folders"),
    ],
)
def test_unusable_folders(tmp_path, layout, message):
    root = tmp_path / "data"
    root.mkdir()
    for name, is_image in layout.items():
        path = root / name
        if is_image:
            write_image(path, np.zeros((4, 4, 3), np.uint8))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("x")
    with pytest.raises(DatasetError, match=message):
        cnnviz.load_dataset(root)


def test_not_a_zip_file(tmp_path):
    path = tmp_path / "data.zip"
    path.write_text("plain text")
    with pytest.raises(DatasetError, match="not a zip"):
        cnnviz.load_dataset(path)


def test_train_test_subfolders_are_used_as_splits(tmp_path):
    _make_class_folder(tmp_path / "d" / "train", per_class=5)
    _make_class_folder(tmp_path / "d" / "test", per_class=2)
    data = cnnviz.load_dataset(tmp_path / "d", image_size=8, validation_split=0.2)
    assert len(data.test) == 4
    assert len(data.train) + len(data.validation) == 10
    assert data.class_names == ("cats", "dogs")
