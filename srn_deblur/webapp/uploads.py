"""Uploaded photos in, PNG bytes out: every check an untrusted upload must pass.

Uploads are decoded from memory only; the client's file name is used for messages and the
download name, never as a path.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import PurePath

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from werkzeug.utils import secure_filename

# Pillow format name -> MIME type of the uploads the page and the API accept.
ACCEPTED_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
_ACCEPTED_TEXT = "PNG, JPEG or WebP"


class UploadError(ValueError):
    """An upload the app refuses; `status` is the HTTP status code to answer with (4xx)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Photo:
    """A decoded upload, upright (EXIF orientation applied).

    `pixels` is `(H, W, 3)` uint8 RGB; `icc_profile` is the input's colour profile, copied to
    the output so colours look the same; `download_name` is a safe name for the result.
    """

    pixels: np.ndarray
    download_name: str
    icc_profile: bytes | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return self.pixels.shape[1], self.pixels.shape[0]


def megabytes(n: int) -> str:
    return f"{n / 1e6:.3g} MB"


def megapixels(n: int) -> str:
    return f"{n / 1e6:.3g} MP"


def _label(name: str) -> str:
    return f"'{name}'" if name else "the upload"


def too_large_message(name: str, max_bytes: int) -> str:
    """The 413 message for an upload over the byte limit (checked by the app and by Flask)."""
    return (
        f"{_label(name)} is larger than this server's limit of {megabytes(max_bytes)}: upload a smaller"
        " or more compressed photo, or start the app with a higher limits.max_upload_bytes"
    )


def download_name(name: str) -> str:
    """`<stem>_deblurred.png` with the stem reduced to safe ASCII (`photo` if nothing is left)."""
    stem = secure_filename(PurePath(name).stem) if name else ""
    return f"{stem or 'photo'}_deblurred.png"


def decode_upload(data: bytes, name: str, max_bytes: int, max_pixels: int) -> Photo:
    """Decode an uploaded PNG/JPEG/WebP into an upright RGB photo.

    The pixel limit is checked from the header, before any pixel is decoded, so an oversized
    or decompression-bomb image costs no memory. Raises `UploadError` with a 4xx status:
    400 for an empty, truncated or corrupt file, 413 over `max_bytes` or `max_pixels`,
    415 for something that is not an accepted image.
    """
    label = _label(name)
    if not data:
        raise UploadError(f"{label} is empty (0 bytes): choose a {_ACCEPTED_TEXT} photo and upload it again")
    if len(data) > max_bytes:
        raise UploadError(too_large_message(name, max_bytes), 413)
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise UploadError(
            f"{label} has far too many pixels ({exc}); downscale it below {megapixels(max_pixels)}", 413
        ) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise UploadError(
            f"{label} cannot be read as an image: it is not a {_ACCEPTED_TEXT} file, or it is cut off"
            f" too early to tell. Upload a {_ACCEPTED_TEXT} photo.",
            415,
        ) from exc
    if image.format not in ACCEPTED_FORMATS:
        raise UploadError(
            f"{label} is a {image.format} image; this app accepts {_ACCEPTED_TEXT}: convert it first", 415
        )
    width, height = image.size
    if width * height > max_pixels:
        raise UploadError(
            f"{label} is {width}x{height} ({megapixels(width * height)}), over this server's limit of"
            f" {megapixels(max_pixels)}: downscale it, or start the app with a higher limits.max_pixels",
            413,
        )
    try:
        image.load()  # decodes now, so a truncated file fails here and not in the worker
        upright = ImageOps.exif_transpose(image)
        rgb = upright.convert("RGB")
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        reason = str(exc) or type(exc).__name__
        raise UploadError(
            f"{label} is truncated or corrupt ({reason}): upload the complete file again"
        ) from exc
    return Photo(np.asarray(rgb), download_name(name), image.info.get("icc_profile"))


def encode_png(pixels: np.ndarray, icc_profile: bytes | None = None) -> bytes:
    """`(H, W, 3)` uint8 RGB -> PNG bytes (fast compression: big photos encode in a second)."""
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format="PNG", compress_level=3, icc_profile=icc_profile)
    return buffer.getvalue()


__all__ = [
    "ACCEPTED_FORMATS",
    "Photo",
    "UploadError",
    "decode_upload",
    "download_name",
    "megabytes",
    "megapixels",
    "too_large_message",
    "encode_png",
]
