"""The one image loader: every image that enters cnnviz goes through here.

Files come from the CLI, dataset folders and zips, and the app's uploads. They
all pass through `load_image`, which applies EXIF orientation, flattens
transparency onto white, converts palette / CMYK / 16-bit / float images to
8-bit, keeps grayscale as one channel, and refuses decompression bombs before
decoding a single pixel.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps, UnidentifiedImageError

from cnnviz import limits
from cnnviz.errors import ImageError

ImageSource = Union[str, os.PathLike, bytes, bytearray, BinaryIO]

#: File name suffixes the dataset loaders pick up.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")

_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


def _describe(source: ImageSource) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.path.basename(os.fspath(source)) or os.fspath(source)
    return getattr(source, "name", None) or "the image"


def _read_bytes(source: ImageSource) -> bytes:
    max_bytes = limits.max_image_bytes()
    if isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise ImageError(f"{path}: no such file; check the path.")
        if path.is_dir():
            raise ImageError(f"{path}: is a folder, not an image file.")
        size = path.stat().st_size
        if size > max_bytes:
            raise ImageError(
                f"{path.name}: file is {size / 2**20:.1f} MB, over the {max_bytes / 2**20:.0f} MB "
                "limit (CNNVIZ_MAX_IMAGE_BYTES); use a smaller image."
            )
        data = path.read_bytes()
    else:
        data = source.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ImageError(
            f"{_describe(source)}: file is over the {max_bytes / 2**20:.0f} MB limit "
            "(CNNVIZ_MAX_IMAGE_BYTES); use a smaller image."
        )
    if not data:
        raise ImageError(f"{_describe(source)}: file is empty; choose an image file.")
    return data


def _to_8bit_gray(image: Image.Image) -> Image.Image:
    """Converts 16-bit, 32-bit and float single-channel images to 8-bit."""
    array = np.asarray(image)
    if image.mode == "F":
        array = np.nan_to_num(array.astype(np.float64))
        low, high = float(array.min()), float(array.max())
        if high <= 1.0 and low >= 0.0:
            scaled = array * 255.0
        else:
            scaled = (array - low) / max(high - low, 1e-12) * 255.0
    elif array.dtype.itemsize > 1 or image.mode.startswith("I"):
        array = array.astype(np.int64)
        # 16-bit files use the full 0..65535 range; 32-bit "I" files from
        # some tools hold 16-bit data too, so scale by what the file can hold.
        top = 65535 if array.max(initial=0) <= 65535 else int(array.max())
        scaled = np.clip(array, 0, top) * (255.0 / top)
    else:
        return image.convert("L")
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")


def _flatten_alpha(image: Image.Image) -> Image.Image:
    """Composites an image with transparency onto white."""
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def load_image(source: ImageSource) -> NDArray[np.uint8]:
    """Reads one image file into a uint8 array, the way every cnnviz input is read.

    Args:
        source: a path, the file's bytes, or a binary file object (an upload).

    Returns:
        uint8 array of shape `(height, width, channels)`: channels is 1 for
        grayscale images and 3 for everything else (palette, RGBA, CMYK, ...).
        EXIF orientation is applied; transparency is flattened onto white; an
        animated image gives its first frame.

    Raises:
        ImageError: the file is empty, not an image, truncated, or larger than
            the limits in `cnnviz.limits` (decompression bombs are refused
            before decoding).

    Example:

    >>> image = cnnviz.load_image("cat.jpg")
    >>> image.shape, image.dtype
    ((480, 640, 3), dtype('uint8'))
    """
    name = _describe(source)
    image = _decoded(name, _read_bytes(source))
    array = np.asarray(_to_gray_or_rgb(image), dtype=np.uint8)
    if array.ndim == 2:
        array = array[..., None]
    return np.ascontiguousarray(array)


def _decoded(name: str, data: bytes) -> Image.Image:
    """The decoded, upright first frame; a pixel count over the limit is refused before decoding."""
    max_pixels = limits.max_image_pixels()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width <= 0 or height <= 0:
                raise ImageError(f"{name}: image has no pixels ({width}x{height}).")
            if width * height > max_pixels:
                raise ImageError(
                    f"{name}: image is {width}x{height} pixels, over the limit of "
                    f"{max_pixels:,} (CNNVIZ_MAX_IMAGE_PIXELS); resize it first."
                )
            image.seek(0)
            image.load()
            return ImageOps.exif_transpose(image)
    except ImageError:
        raise
    except Image.DecompressionBombError as error:
        # Pillow refuses far-too-large headers inside open(), before our check.
        declared = re.search(r"\((\d+) pixels\)", str(error))
        size = f"{int(declared.group(1)):,} pixels" if declared else "too many pixels"
        raise ImageError(
            f"{name}: image declares {size}, over the limit of {max_pixels:,} "
            "(CNNVIZ_MAX_IMAGE_PIXELS); refused as a possible decompression bomb."
        )
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image file cnnviz can read; use PNG, JPEG, WebP, BMP, GIF or TIFF.")
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as error:
        raise ImageError(f"{name}: the image file is truncated or corrupt ({error}).")


def _to_gray_or_rgb(image: Image.Image) -> Image.Image:
    """8-bit gray for gray images (palettes of grays too), RGB for the rest; transparency onto white."""
    mode = image.mode
    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in image.info)
    if mode in _GRAY_MODES and not has_alpha:
        return _to_8bit_gray(image)
    if mode in ("LA", "La"):
        return _flatten_alpha(image).convert("L")
    if mode == "P" and not has_alpha:
        palette_image = image.convert("RGB")
        array = np.asarray(palette_image)
        gray = np.array_equal(array[..., 0], array[..., 1]) and np.array_equal(array[..., 1], array[..., 2])
        return palette_image.convert("L") if gray else palette_image
    if has_alpha:
        return _flatten_alpha(image)
    return image.convert("RGB")


def resize_image(
    image: NDArray[np.uint8], size: tuple[int, int], channels: int | None = None
) -> NDArray[np.uint8]:
    """Resizes one uint8 image to `size` and optionally to a channel count.

    Args:
        image: uint8 array `(H, W)` or `(H, W, C)` with C in {1, 3, 4}.
        size: `(height, width)` of the result.
        channels: 1 or 3 to convert gray <-> RGB; `None` keeps the image's own.

    Returns:
        uint8 array `(height, width, channels)`.
    """
    array = np.asarray(image)
    if array.dtype != np.uint8:
        array = np.clip(array, 0, 255).astype(np.uint8)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
        raise ImageError(f"expected an image of shape (H, W, C) with C 1, 3 or 4, got {array.shape}.")
    if array.shape[-1] == 4:
        array = np.asarray(_flatten_alpha(Image.fromarray(array, mode="RGBA")))
    target_channels = array.shape[-1] if channels is None else channels
    height, width = int(size[0]), int(size[1])
    pil = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)
    if target_channels == 1 and pil.mode != "L":
        pil = pil.convert("L")
    elif target_channels == 3 and pil.mode != "RGB":
        pil = pil.convert("RGB")
    if pil.size != (width, height):
        pil = pil.resize((width, height), Image.Resampling.BILINEAR, reducing_gap=3.0)
    result = np.asarray(pil, dtype=np.uint8)
    if result.ndim == 2:
        result = result[..., None]
    return result


#: The shortest side at which a model that takes any size reads an image (smaller ones are scaled up):
#: below it, a few poolings leave nothing to classify.
MIN_INPUT_SIDE = 32


def reading_size(input_shape: tuple, image_size: tuple[int, int]) -> tuple[int, int]:
    """The `(height, width)` at which a model reads an image of `image_size`.

    A model's fixed sides are used as they are. A side the model leaves open
    (`None`, as in a fully convolutional model) follows the image, scaled
    (keeping the aspect ratio) so the longest side is at most
    `CNNVIZ_MAX_INPUT_SIDE`; each side is then at least `MIN_INPUT_SIDE`
    (only a strip thinner than that changes its aspect ratio).

    Args:
        input_shape: the model's `(height, width, channels)`; sides may be None.
        image_size: the image's `(height, width)`.
    """
    height, width = input_shape[:2]
    if height is not None and width is not None:
        return int(height), int(width)
    longest = limits.max_input_side()
    image_size = tuple(max(1, int(side)) for side in image_size)
    if height is not None:  # one side fixed: the open one keeps the image's aspect ratio
        scale = int(height) / image_size[0]
    elif width is not None:
        scale = int(width) / image_size[1]
    else:
        scale = min(1.0, longest / max(image_size))
    # Each side clamped to MIN_INPUT_SIDE..longest: only an extreme strip's aspect ratio changes.
    scaled = tuple(min(longest, max(MIN_INPUT_SIDE, round(side * scale))) for side in image_size)
    return (
        int(height) if height is not None else scaled[0],
        int(width) if width is not None else scaled[1],
    )


def takes_any_size(input_shape: tuple) -> bool:
    """Whether a model with this `(height, width, channels)` input leaves a side open."""
    return input_shape[0] is None or input_shape[1] is None


def any_size_note() -> str:
    """The sentence the CLI and the studio show for a model that takes any size."""
    return (
        f"This model takes any input size: each image is read at its own size, scaled to at most "
        f"{limits.max_input_side()} px on its longest side (CNNVIZ_MAX_INPUT_SIDE) and at least "
        f"{MIN_INPUT_SIDE} px on each."
    )


def image_sizes(images) -> list[tuple[int, int]]:
    """The `(height, width)` of each image in one image, a list or an `(N, H, W, C)` batch."""
    if isinstance(images, np.ndarray):
        if images.ndim == 4:
            return [tuple(images.shape[1:3])] * len(images)
        return [tuple(images.shape[:2])]
    return [tuple(np.asarray(image).shape[:2]) for image in images]


def by_reading_size(input_shape: tuple, images) -> dict[tuple[int, int], list[int]]:
    """The images' indices grouped by the size the model reads them at (one group for a fixed-size model)."""
    groups: dict[tuple[int, int], list[int]] = {}
    for index, size in enumerate(image_sizes(images)):
        groups.setdefault(reading_size(input_shape, size), []).append(index)
    return groups


def prepare_batch(images: NDArray | list[NDArray], input_shape: tuple[int, int, int]) -> NDArray[np.uint8]:
    """Turns one image, a list of images or a batch into a model-ready uint8 batch.

    Args:
        images: one `(H, W)` / `(H, W, C)` image, a list of such images of any
            sizes, or an `(N, H, W, C)` batch.
        input_shape: the `(height, width, channels)` to read them at (a model's
            own, or one of `by_reading_size`'s for a model that takes any size).

    Returns:
        uint8 array `(N, height, width, channels)`.
    """
    height, width, channels = input_shape
    if height is None or width is None:
        raise ValueError(f"prepare_batch needs a fixed size, got {input_shape}; see by_reading_size.")
    if isinstance(images, np.ndarray) and images.ndim == 4:
        if images.shape[1:] == (height, width, channels) and images.dtype == np.uint8:
            return images
        batch = list(images)
    elif isinstance(images, np.ndarray) and images.ndim in (2, 3):
        batch = [images]
    else:
        batch = list(images)
    return np.stack([resize_image(image, (height, width), channels) for image in batch])
