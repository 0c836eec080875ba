"""A corpus of hostile and unusual inputs, generated (never committed as binaries).

Used by tests/test_reliability.py and tests/e2e; `python tests/hostile.py`
runs the whole corpus through the loader and the CLI and prints the counts
recorded in docs/RELIABILITY.md.

Each entry is `(name, content, expectation)`: for files that must be refused,
the expectation is a fragment of the one-line message; for valid-but-unusual
files that must work, a check on the loaded array.
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def _encode(image: Image.Image, format: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def _noise(height: int, width: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8))


def _png_bomb() -> bytes:
    """A tiny PNG whose header claims 30000x30000 pixels (900 million)."""
    data = bytearray(_encode(Image.new("L", (1, 1))))
    start = data.index(b"IHDR")
    data[start + 4 : start + 12] = struct.pack(">II", 30000, 30000)
    data[start + 17 : start + 21] = struct.pack(">I", zlib.crc32(bytes(data[start : start + 17])))
    return bytes(data)


def bad_images() -> list[tuple[str, bytes, str]]:
    """Files that must be refused with a clear one-line message."""
    png = _encode(_noise(64, 64))
    jpeg = _encode(_noise(64, 64, 1), "JPEG", quality=90)
    return [
        ("empty.png", b"", "empty"),
        ("text.png", b"just some text, renamed to .png\n", "not an image"),
        ("page.png", b"<!doctype html><html><body>hello</body></html>", "not an image"),
        ("truncated.png", png[: len(png) // 2], "truncated or corrupt"),
        ("truncated.jpg", jpeg[: len(jpeg) // 3], "truncated or corrupt"),
        (
            "random.png",
            np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
            "not an image",
        ),
        (
            "drawing.svg",
            b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>',
            "not an image",
        ),
        ("bomb.png", _png_bomb(), "over the limit"),
    ]


def _exif_rotated() -> bytes:
    image = Image.new("RGB", (40, 20), (255, 0, 0))  # wide, red
    image.paste((0, 0, 255), (0, 0, 20, 20))  # left half blue
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    return _encode(image, "JPEG", quality=95, exif=exif.tobytes())


def _animated_gif() -> bytes:
    frames = [Image.new("RGB", (8, 8), (255, 0, 0)), Image.new("RGB", (8, 8), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    return buffer.getvalue()


def _palette_with_transparency() -> bytes:
    image = Image.new("P", (6, 6), 1)
    image.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    return _encode(image, transparency=0)


def good_images() -> list[tuple[str, bytes, tuple[int, int, int]]]:
    """Valid but unusual files that must load, with the shape they must load as."""
    sixteen = Image.fromarray(np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16)
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 128
    return [
        ("one_pixel.png", _encode(Image.new("RGB", (1, 1), (9, 9, 9))), (1, 1, 3)),
        ("gray16.png", _encode(sixteen), (64, 64, 1)),
        ("cmyk.jpg", _encode(Image.new("CMYK", (12, 10), (0, 255, 255, 0)), "JPEG"), (10, 12, 3)),
        ("palette_transparent.png", _palette_with_transparency(), (6, 6, 3)),
        ("rgba.png", _encode(Image.fromarray(rgba, "RGBA")), (8, 8, 3)),
        ("animated.gif", _animated_gif(), (8, 8, 3)),
        ("photo.webp", _encode(_noise(16, 24), "WEBP"), (16, 24, 3)),
        ("bitmap.bmp", _encode(_noise(9, 7), "BMP"), (9, 7, 3)),
        ("scan.tiff", _encode(_noise(11, 13), "TIFF"), (11, 13, 3)),
        ("strip.png", _encode(_noise(40, 3000)), (40, 3000, 3)),
        ("large.jpg", _encode(_noise(2000, 3000), "JPEG", quality=80), (2000, 3000, 3)),
        ("rotated.jpg", _exif_rotated(), (40, 20, 3)),
    ]


# --- dataset zips -------------------------------------------------------------


def _zip(path: Path, entries: dict[str, bytes], symlinks: tuple[str, ...] = ()) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        for name in symlinks:
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o120777 << 16) | 0x20  # a symbolic link entry
            archive.writestr(info, "../../etc/passwd")
    return path


def _class_images(prefix: str = "", per_class: int = 4, classes=("cats", "dogs")) -> dict[str, bytes]:
    return {
        f"{prefix}{name}/{number}.png": _encode(_noise(12, 12, seed=number + 10 * index))
        for index, name in enumerate(classes)
        for number in range(per_class)
    }


def zip_bomb(path: Path) -> Path:
    """300 MB of zeros in a file of a few hundred KB, beside 8 real images.

    Over `CNNVIZ_MAX_ZIP_BYTES` the whole zip is refused by its declared size
    before anything is unpacked; under it, the entry is refused by its size
    (reading stops at `CNNVIZ_MAX_IMAGE_BYTES`) and the real images load."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("cats/zeros.png", "w", force_zip64=True) as entry:
            block = b"\0" * (1 << 20)
            for _ in range(300):
                entry.write(block)
        for name, data in _class_images().items():
            archive.writestr(name, data)
    return path


def bad_zips(folder: Path) -> list[tuple[str, Path, str]]:
    """Dataset zips that must be refused (or whose bad entries must be skipped and never written)."""
    folder.mkdir(parents=True, exist_ok=True)
    images = _class_images()
    many = {f"class{number}/0.png": images["cats/0.png"] for number in range(1200)}
    return [
        ("not_a_zip.zip", _write(folder / "not_a_zip.zip", b"plain text, not a zip"), "not a zip"),
        ("one_class.zip", _zip(folder / "one_class.zip", _class_images(classes=("cats",))), "only one class"),
        ("empty_classes.zip", _zip(folder / "empty_classes.zip", {"cats/": b"", "dogs/": b""}), "no "),
        ("no_images.zip", _zip(folder / "no_images.zip", {"cats/a.txt": b"x", "dogs/b.txt": b"y"}), "no "),
        ("too_many_classes.zip", _zip(folder / "too_many_classes.zip", many), "classes"),
    ]


def skipped_entry_zips(folder: Path) -> list[tuple[str, Path, int]]:
    """Zips whose hostile entries must be skipped (never read or written), leaving the good ones."""
    folder.mkdir(parents=True, exist_ok=True)
    images = _class_images()
    evil = images["cats/0.png"]
    return [
        (
            "traversal.zip",
            _zip(folder / "traversal.zip", {**images, "../../x.png": evil, "cats/../../y.png": evil}),
            8,
        ),
        ("absolute.zip", _zip(folder / "absolute.zip", {**images, "/tmp/cnnviz-absolute.png": evil}), 8),
        ("symlink.zip", _zip(folder / "symlink.zip", images, symlinks=("cats/link.png",)), 8),
    ]


def good_zips(folder: Path) -> list[tuple[str, Path, int]]:
    """Zips that must load, with how many images they hold."""
    folder.mkdir(parents=True, exist_ok=True)
    junk = {"__MACOSX/cats/._0.png": b"\0\5\26\7junk", "cats/.DS_Store": b"junk", "Thumbs.db": b"junk"}
    mixed = dict(_class_images())
    mixed["cats/gray.png"] = _encode(Image.new("L", (30, 20), 100))
    mixed["dogs/wide.jpg"] = _encode(_noise(10, 50), "JPEG")
    mixed["dogs/rgba.png"] = _encode(Image.new("RGBA", (7, 7), (1, 2, 3, 100)))
    return [
        ("macos_junk.zip", _zip(folder / "macos_junk.zip", {**_class_images(), **junk}), 8),
        ("single_top_folder.zip", _zip(folder / "single_top_folder.zip", _class_images("pets/")), 8),
        ("mixed_sizes_and_modes.zip", _zip(folder / "mixed_sizes_and_modes.zip", mixed), 11),
    ]


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# --- model files --------------------------------------------------------------


SHAPES_MODEL = Path(__file__).resolve().parent.parent / "assets" / "models" / "shapes.keras"


def _entries(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _rezip(path: Path, entries: dict[str, bytes], padding: tuple[str, int] | None = None) -> Path:
    """Writes `entries` as a .keras zip; `padding` (entry, n) appends n zero bytes to that entry, streamed."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            if padding and padding[0] == name:
                with archive.open(name, "w", force_zip64=padding[1] >= 1 << 31) as entry:
                    entry.write(data)
                    block = b"\0" * (1 << 20)
                    for _ in range(padding[1] >> 20):
                        entry.write(block)
            else:
                archive.writestr(name, data)
    return path


def _patch_declared_size(path: Path, name: str, size: int) -> Path:
    """Makes the zip declare `size` bytes for `name` (local and central headers) without changing its data."""
    data = bytearray(path.read_bytes())
    encoded = name.encode()
    # (signature, offset of the uncompressed size, of the name's length, of the name) in local and central headers
    for signature, size_at, length_at, name_at in ((b"PK\x03\x04", 22, 26, 30), (b"PK\x01\x02", 24, 28, 46)):
        start = 0
        while (start := data.find(signature, start)) != -1:
            (length,) = struct.unpack_from("<H", data, start + length_at)
            if data[start + name_at : start + name_at + length] == encoded:
                struct.pack_into("<I", data, start + size_at, size)
            start += 4
    path.write_bytes(bytes(data))
    return path


def weights_bomb(path: Path, inflated_bytes: int) -> Path:
    """The shapes model whose weights entry inflates to `inflated_bytes` (zeros after the real weights)."""
    return _rezip(path, _entries(SHAPES_MODEL), padding=("model.weights.h5", inflated_bytes))


def many_parameters(path: Path, filters: int = 2_000_000_000) -> Path:
    """The shapes model whose config asks for `filters` filters in its first convolution (weights unchanged)."""
    entries = _entries(SHAPES_MODEL)
    config = json.loads(entries["config.json"])

    def first_conv(node):
        if isinstance(node, dict):
            if node.get("class_name") == "Conv2D":
                return node
            node = list(node.values())
        if isinstance(node, list):
            for child in node:
                if found := first_conv(child):
                    return found
        return None

    first_conv(config)["config"]["filters"] = filters
    entries["config.json"] = json.dumps(config).encode()
    return _rezip(path, entries)


def sparse_weights(path: Path, declared_values: int = 2_000_000_000) -> Path:
    """The shapes model with a weights array that declares `declared_values` floats but stores none."""
    import h5py

    entries = _entries(SHAPES_MODEL)
    buffer = io.BytesIO(entries["model.weights.h5"])
    with h5py.File(buffer, "a") as weights:
        weights.create_dataset("layers/huge/vars/0", shape=(declared_values,), dtype="float32")
    entries["model.weights.h5"] = buffer.getvalue()
    return _rezip(path, entries)


def _with_config(path: Path, change) -> Path:
    """The shapes model with `change(config)` applied to its config (weights unchanged)."""
    entries = _entries(SHAPES_MODEL)
    config = json.loads(entries["config.json"])
    change(config)
    entries["config.json"] = json.dumps(config).encode()
    return _rezip(path, entries)


def _set_input(config: dict, batch_shape: list) -> None:
    for layer in config["config"]["layers"]:
        if layer["class_name"] == "InputLayer":
            layer["config"]["batch_shape"] = batch_shape


def upsampling_model(path: Path) -> Path:
    """A 3 KB model that takes any size and blows each image up 100 times before a convolution."""
    import keras

    from cnnviz.saving import save_model

    inputs = keras.Input((None, None, 3))
    x = keras.layers.UpSampling2D(100)(inputs)
    x = keras.layers.Conv2D(4, 3)(x)
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    return save_model(keras.Model(inputs, outputs), path, ("a", "b"))


def without_weights(path: Path) -> Path:
    """The shapes model whose weights file holds no arrays (Keras would build it, then fail)."""
    import h5py

    entries = _entries(SHAPES_MODEL)
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as weights:
        weights.create_group("layers")
    entries["model.weights.h5"] = buffer.getvalue()
    return _rezip(path, entries)


def many_entries(path: Path) -> Path:
    """A zip whose end record declares 65,535 entries (zipfile would read an index of that many)."""
    _rezip(path, _entries(SHAPES_MODEL))
    data = bytearray(path.read_bytes())
    end = data.rfind(b"PK\x05\x06")
    struct.pack_into("<HH", data, end + 8, 0xFFFF, 0xFFFF)
    path.write_bytes(bytes(data))
    return path


def legacy_h5(path: Path) -> Path:
    """A real HDF5 file, as Keras 2 saved models (`model.save('m.h5')`)."""
    import h5py

    with h5py.File(path, "w") as file:
        file.attrs["keras_version"] = "2.15.0"
        file.attrs["model_config"] = json.dumps({"class_name": "Sequential", "config": {"layers": []}})
    return path


def bad_models(folder: Path) -> list[tuple[str, Path, str]]:
    """Model files that must be refused with a clear message (no code from them runs, memory stays bounded).

    The size cases are scaled to run in the suite: they assume `CNNVIZ_MAX_MODEL_BYTES` of 8 MB
    (`MODEL_BYTES_FOR_TESTS`); bench/model_files.py runs them at full size against the defaults.
    """
    import pickle

    import keras

    folder.mkdir(parents=True, exist_ok=True)
    inputs = keras.Input((8, 8, 3))
    # Code that leaves a trace when it runs: building the model here runs it once; loading must not.
    sentinel = str(folder / LAMBDA_RAN)
    lambda_model = keras.Model(
        inputs, keras.layers.Lambda(lambda x, trace=sentinel: (open(trace, "w").close(), x * 2)[1])(inputs)
    )
    lambda_path = folder / "lambda.keras"
    lambda_model.save(lambda_path)
    os.remove(sentinel)
    shapes = _entries(SHAPES_MODEL)
    return [
        ("lambda.keras", lambda_path, "safe"),
        ("pickle.keras", _write(folder / "pickle.keras", pickle.dumps({"evil": "payload"})), "not a Keras 3"),
        ("text.keras", _write(folder / "text.keras", b"hello, I am text"), "not a Keras 3"),
        ("random.h5", _write(folder / "random.h5", np.random.default_rng(3).bytes(2048)), ".keras"),
        ("legacy.h5", legacy_h5(folder / "legacy.h5"), "Re-save it as .keras"),
        ("weights_bomb.keras", weights_bomb(folder / "weights_bomb.keras", 64 << 20), "unpacks to"),
        (
            "declares_too_little.keras",
            _patch_declared_size(
                weights_bomb(folder / "declares_too_little.keras", 64 << 20), "model.weights.h5", 1000
            ),
            "damaged",
        ),
        (
            "declares_huge_config.keras",
            _patch_declared_size(_rezip(folder / "huge_config.keras", shapes), "config.json", 4_000_000_000),
            "unpacks to",
        ),
        (
            "two_billion_filters.keras",
            many_parameters(folder / "filters.keras"),
            "parameters, over the limit",
        ),
        ("sparse_weights.keras", sparse_weights(folder / "sparse.keras"), "weights declare"),
        (
            "huge_input.keras",
            _with_config(
                folder / "huge_input.keras", lambda config: _set_input(config, [None, 30000, 30000, 3])
            ),
            "over the largest side",
        ),
        (
            "fixed_batch.keras",
            _with_config(folder / "fixed_batch.keras", lambda config: _set_input(config, [32, 64, 64, 3])),
            "batches of exactly 32",
        ),
        ("upsampling.keras", upsampling_model(folder / "upsampling.keras"), "activations, over the limit"),
        (
            "no_weights.keras",
            without_weights(folder / "no_weights.keras"),
            "holds 0 values for 98,676 parameters",
        ),
        ("many_entries.keras", many_entries(folder / "many_entries.keras"), "65,535 entries"),
    ]


MODEL_BYTES_FOR_TESTS = str(8 << 20)
#: The file the Lambda model's code writes if it ever runs (in the folder given to `bad_models`).
LAMBDA_RAN = "lambda-code-ran"


# --- the counts for docs/RELIABILITY.md ------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "cnnviz", *args], capture_output=True, text=True, env=env)


def _clear(run: subprocess.CompletedProcess) -> bool:
    lines = [line for line in run.stderr.strip().splitlines() if line.startswith("cnnviz:")]
    return run.returncode == 2 and bool(lines) and "Traceback" not in run.stderr


def main() -> None:
    import tempfile

    from cnnviz.errors import CnnvizError
    from cnnviz.images import load_image

    root = Path(tempfile.mkdtemp(prefix="cnnviz-hostile-"))
    model = Path(__file__).resolve().parent.parent / "assets" / "models" / "shapes.keras"
    rows = []

    def count(kind, cases, check):
        passed = sum(1 for case in cases if check(case))
        rows.append((kind, len(cases), passed))
        print(f"{kind}: {passed} of {len(cases)} as expected", flush=True)

    def loader_refuses(case):
        try:
            load_image(case[1])
        except CnnvizError as error:
            return case[2] in str(error) and "\n" not in str(error)
        return False

    def loader_loads(case):
        return load_image(case[1]).shape == case[2]

    def cli_predict(case, expect_clear):
        path = root / case[0]
        path.write_bytes(case[1])
        run = _cli("predict", str(model), str(path), "--json")
        return _clear(run) if expect_clear else run.returncode == 0

    count("bad images, loader", bad_images(), loader_refuses)
    count("bad images, cnnviz predict", bad_images(), lambda case: cli_predict(case, True))
    count("unusual images, loader", good_images(), loader_loads)
    count("unusual images, cnnviz predict", good_images(), lambda case: cli_predict(case, False))
    zips = root / "zips"
    count("bad zips, cnnviz train --data", bad_zips(zips), lambda case: _clear(_train(case[1], root)))
    count(
        "hostile entries in zips (skipped, never written), cnnviz train --data",
        skipped_entry_zips(zips),
        lambda case: _train(case[1], root).returncode == 0 and not Path("/tmp/cnnviz-absolute.png").exists(),
    )
    count(
        "good zips, cnnviz train --data", good_zips(zips), lambda case: _train(case[1], root).returncode == 0
    )
    os.environ["CNNVIZ_MAX_MODEL_BYTES"] = (
        MODEL_BYTES_FOR_TESTS  # the scaled size cases (bench/model_files.py: full)
    )
    count(
        "bad models, cnnviz predict",
        bad_models(root / "models"),
        lambda case: _clear(
            _cli("predict", str(case[1]), str(Path(model).parent.parent / "samples" / "shape_circle.png"))
        ),
    )
    print(json.dumps(rows))


def _train(path: Path, root: Path) -> subprocess.CompletedProcess:
    return _cli("train", "--data", str(path), "--epochs", "1", "--out", str(root / "trained.keras"))


if __name__ == "__main__":
    main()
