"""Image files in and out, and the conversions between 8-bit arrays and tensors.

The one home for decoding, encoding, grey conversion and 8-bit quantisation, so the data
loaders, evaluation, the web app and the command-line tool read and write pixels the same way.
A leaf module: it imports nothing of the project's.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

# ITU-R BT.601 luma weights, as TF's rgb_to_grayscale used by the release.
GREY_WEIGHTS = np.array([0.2989, 0.5870, 0.1140], dtype=np.float32)

# How [0, 1] floats become 8-bit levels: `round` (a PNG writer's usual choice, the default) or
# `truncate` (`(clip(x, 0, 1) * 255).astype(uint8)`, as the official release saved its outputs).
ROUNDINGS = ("round", "truncate")


class ImageReadError(OSError):
    """An image file could not be decoded."""


class ImageDecodeError(ImageReadError):
    """Photo bytes that `decode_image` refuses; `reason` says which check failed, so a caller
    maps it to its own answer (the web app to an HTTP status, `deblur.py` to a skip).

    Reasons: `empty`, `not_image`, `format` (an image, but not an accepted format),
    `too_many_pixels`, `corrupt` (truncated or damaged).
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class DecodedImage:
    """A decoded photo, upright (EXIF orientation applied): `pixels` is `(H, W, 3)` uint8 RGB;
    `icc_profile` the input's colour profile (copy it to the output so colours look the same)."""

    pixels: np.ndarray
    format: str
    icc_profile: bytes | None = None


def quoted_name(name: str) -> str:
    """How messages name a file: quoted, or "the upload" when it came without a name."""
    return f"'{name}'" if name else "the upload"


def _to_rgb8(image: Image.Image) -> np.ndarray:
    """Any Pillow mode -> `(H, W, 3)` uint8 RGB: 16-bit grey scaled (not clipped) to 8 bits,
    alpha dropped (the colour under it kept), palettes and grey expanded."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        levels = np.asarray(image).astype(np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or levels.max() > 255 else 255.0
        grey = np.clip(np.rint(levels * (255.0 / top)), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    return np.asarray(image.convert("RGB"))


def decode_image(
    data: bytes, name: str = "", max_pixels: int | None = None, formats: tuple[str, ...] | None = None
) -> DecodedImage:
    """Decode photo bytes (any format Pillow reads, or only `formats`) into upright 8-bit RGB.

    Grey, palette, RGBA and 16-bit images become RGB. The pixel limit is checked from the
    header, before any pixel is decoded, so an oversized or decompression-bomb image costs no
    memory. Raises `ImageDecodeError` naming `name` and what to do.
    """
    label = quoted_name(name)
    if not data:
        raise ImageDecodeError(f"{label} is empty (0 bytes)", "empty")
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        limit = f" below {max_pixels / 1e6:.3g} MP" if max_pixels else ""
        message = f"{label} has far too many pixels ({exc}); downscale it{limit}"
        raise ImageDecodeError(message, "too_many_pixels") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError(f"{label} cannot be read as an image", "not_image") from exc
    if formats is not None and image.format not in formats:
        raise ImageDecodeError(f"{label} is a {image.format} image", "format")
    width, height = image.size
    if max_pixels is not None and width * height > max_pixels:
        raise ImageDecodeError(
            f"{label} is {width}x{height} ({width * height / 1e6:.3g} MP), over the limit of"
            f" {max_pixels / 1e6:.3g} MP",
            "too_many_pixels",
        )
    try:
        image.load()  # decodes now, so a truncated file fails here and not later
        pixels = _to_rgb8(ImageOps.exif_transpose(image))
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        reason = str(exc) or type(exc).__name__
        raise ImageDecodeError(f"{label} is truncated or corrupt ({reason})", "corrupt") from exc
    return DecodedImage(pixels, str(image.format), image.info.get("icc_profile"))


def read_photo(path: str | Path, max_pixels: int | None = None) -> DecodedImage:
    """Read a photo file as the web app decodes an upload (`decode_image`); errors name the path."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageDecodeError(f"cannot read {path}: {exc.strerror or exc}", "not_image") from exc
    return decode_image(data, str(path), max_pixels)


def read_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as `(H, W, 3)` uint8 RGB; grey files are replicated to 3 channels."""
    data = np.fromfile(str(path), dtype=np.uint8) if Path(path).is_file() else None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data is not None and data.size else None
    if image is None:
        raise ImageReadError(
            f"cannot read image {path}: the file is missing, empty, truncated or not an image."
            " Replace it or remove it (and its twin) from the dataset."
        )
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def write_rgb(path: str | Path, image: np.ndarray) -> None:
    """Write an `(H, W, 3)` uint8 RGB image; the format follows the suffix (PNG is lossless)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write image {path}; is the folder writable and the suffix an image format?")


def to_tensor(image: np.ndarray, grey: bool = False) -> Tensor:
    """`(H, W, 3)` uint8 -> `(C, H, W)` float32 in [0, 1]; C = 1 if `grey` else 3."""
    x = image.astype(np.float32) / 255.0
    if grey:
        x = (x @ GREY_WEIGHTS)[..., None]  # (H, W, 1)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


def _check_rounding(rounding: str) -> None:
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be one of {ROUNDINGS}, got {rounding!r}")


def _levels(image: Tensor, rounding: str) -> Tensor:
    """Floats in [0, 1] -> the 8-bit levels 0..255 as floats (a new tensor, `image` untouched)."""
    _check_rounding(rounding)
    # clamp copies; the in-place steps after it keep a 12 MP photo to one float copy.
    levels = image.float().clamp(0.0, 1.0).mul_(255.0)
    return levels.round_() if rounding == "round" else levels.floor_()


def quantize(image: Tensor, rounding: str = "round") -> Tensor:
    """Floats -> the [0, 1] values of the 256 levels an 8-bit image stores (same shape)."""
    return _levels(image, rounding).div_(255.0)


def array_to_uint8(values: np.ndarray) -> np.ndarray:
    """Float values in [0, 1] (any shape) -> uint8, rounded and clipped: the numpy twin of
    `to_uint8`, for images made in numpy (the synthetic blurs)."""
    return np.clip(np.round(values * 255.0), 0, 255).astype(np.uint8)


def to_uint8(image: Tensor, rounding: str = "round") -> np.ndarray:
    """`(C, H, W)` or `(1, C, H, W)` float in [0, 1] -> `(H, W, C)` uint8."""
    if image.dim() == 4:
        if image.shape[0] != 1:
            raise ValueError(f"to_uint8 takes one image, got a batch of {image.shape[0]}")
        image = image[0]
    return _levels(image, rounding).byte().permute(1, 2, 0).cpu().numpy()


__all__ = [
    "GREY_WEIGHTS",
    "ROUNDINGS",
    "DecodedImage",
    "ImageDecodeError",
    "ImageReadError",
    "decode_image",
    "quantize",
    "quoted_name",
    "array_to_uint8",
    "read_photo",
    "read_rgb",
    "to_tensor",
    "to_uint8",
    "write_rgb",
]
