import io

import numpy as np
import pytest
from PIL import Image

from cnnviz.errors import ImageError
from cnnviz.images import load_image, prepare_batch, resize_image


def _png_bytes(image: Image.Image, format="PNG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **kwargs)
    return buffer.getvalue()


def test_rgb_png_roundtrip():
    array = np.random.default_rng(0).integers(0, 255, (5, 7, 3), dtype=np.uint8)
    loaded = load_image(_png_bytes(Image.fromarray(array)))
    assert loaded.dtype == np.uint8
    np.testing.assert_array_equal(loaded, array)


def test_grayscale_stays_one_channel():
    array = np.arange(64, dtype=np.uint8).reshape(8, 8)
    loaded = load_image(_png_bytes(Image.fromarray(array, mode="L")))
    assert loaded.shape == (8, 8, 1)
    np.testing.assert_array_equal(loaded[..., 0], array)


def test_sixteen_bit_grayscale_scaled_to_eight_bit():
    array = np.array([[0, 65535], [32768, 257]], dtype=np.uint16)
    loaded = load_image(_png_bytes(Image.fromarray(array)))
    assert loaded.shape == (2, 2, 1)
    np.testing.assert_array_equal(loaded[..., 0], [[0, 255], [128, 1]])


def test_rgba_flattened_onto_white():
    array = np.zeros((2, 2, 4), dtype=np.uint8)
    array[0, 0] = (255, 0, 0, 255)  # opaque red
    loaded = load_image(_png_bytes(Image.fromarray(array, mode="RGBA")))
    assert loaded.shape == (2, 2, 3)
    assert tuple(loaded[0, 0]) == (255, 0, 0)
    assert tuple(loaded[1, 1]) == (255, 255, 255)  # fully transparent -> white


def test_palette_with_transparency_and_cmyk():
    palette = Image.new("P", (4, 4), 1)
    palette.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    loaded = load_image(_png_bytes(palette, transparency=0))
    assert loaded.shape == (4, 4, 3) and tuple(loaded[0, 0]) == (0, 255, 0)
    cmyk = Image.new("CMYK", (3, 3), (0, 255, 255, 0))  # red in CMYK
    loaded = load_image(_png_bytes(cmyk, format="JPEG"))
    assert loaded.shape == (3, 3, 3)
    assert loaded[1, 1, 0] > 200 and loaded[1, 1, 1] < 60


def test_exif_orientation_applied():
    array = np.zeros((10, 20, 3), dtype=np.uint8)  # wide image
    image = Image.fromarray(array)
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    loaded = load_image(_png_bytes(image, format="JPEG", exif=exif.tobytes()))
    assert loaded.shape == (20, 10, 3)


def test_animated_gif_gives_first_frame():
    frames = [Image.new("RGB", (4, 4), (255, 0, 0)), Image.new("RGB", (4, 4), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    loaded = load_image(buffer.getvalue())
    assert loaded[0, 0, 0] > 200 and loaded[0, 0, 2] < 50


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty"),
        (b"<html>not an image</html>", "not an image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, "not an image"),
    ],
)
def test_bad_bytes_give_clear_errors(data, message):
    with pytest.raises(ImageError, match=message):
        load_image(data)


def test_truncated_png_is_refused():
    data = _png_bytes(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)))
    with pytest.raises(ImageError, match="truncated or corrupt"):
        load_image(data[: len(data) // 2])


def test_decompression_bomb_refused_before_decoding(monkeypatch):
    monkeypatch.setenv("CNNVIZ_MAX_IMAGE_PIXELS", "1000")
    data = _png_bytes(Image.new("L", (100, 100)))
    with pytest.raises(ImageError, match="over the limit"):
        load_image(data)


def test_missing_path_and_folder(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ImageError, match="is a folder"):
        load_image(tmp_path)


def test_resize_and_prepare_batch_adapt_size_and_channels():
    gray = np.full((10, 12, 1), 200, dtype=np.uint8)
    color = np.zeros((30, 30, 3), dtype=np.uint8)
    batch = prepare_batch([gray, color], (8, 8, 3))
    assert batch.shape == (2, 8, 8, 3) and batch.dtype == np.uint8
    assert batch[0].min() == 200
    assert resize_image(color, (4, 5), channels=1).shape == (4, 5, 1)


def test_png_declaring_30000_by_30000_pixels_is_refused():
    import struct
    import zlib

    data = bytearray(_png_bytes(Image.new("L", (1, 1))))
    # Rewrite the IHDR chunk's width and height (and its CRC): a tiny file that
    # claims 900 million pixels, the classic decompression bomb.
    ihdr_start = data.index(b"IHDR")
    data[ihdr_start + 4 : ihdr_start + 12] = struct.pack(">II", 30000, 30000)
    crc = zlib.crc32(bytes(data[ihdr_start : ihdr_start + 17]))
    data[ihdr_start + 17 : ihdr_start + 21] = struct.pack(">I", crc)
    with pytest.raises(ImageError, match="900,000,000 pixels, over the limit"):
        load_image(bytes(data))
