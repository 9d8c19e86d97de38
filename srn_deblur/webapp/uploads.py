"""Uploaded photos in, PNG bytes out: every check an untrusted upload must pass.

Uploads are decoded from memory only; the client's file name is used for messages and the
download name, never as a path.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import PurePath

import numpy as np
from PIL import Image
from werkzeug.utils import secure_filename

from datamodules.image_io import ImageDecodeError, decode_image

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
    """Decode an uploaded PNG/JPEG/WebP into an upright RGB photo (`datamodules.image_io`).

    Raises `UploadError` with a 4xx status: 400 for an empty, truncated or corrupt file, 413
    over `max_bytes` or `max_pixels` (checked from the header, before decoding), 415 for
    something that is not an accepted image.
    """
    if len(data) > max_bytes:
        raise UploadError(too_large_message(name, max_bytes), 413)
    try:
        image = decode_image(data, name, max_pixels, tuple(ACCEPTED_FORMATS))
    except ImageDecodeError as exc:
        raise UploadError(_upload_message(exc), _STATUS[exc.reason]) from exc
    return Photo(image.pixels, download_name(name), image.icc_profile)


# What each refusal of `decode_image` answers, and what the user should do about it.
_STATUS = {"empty": 400, "corrupt": 400, "too_many_pixels": 413, "not_image": 415, "format": 415}
_ADVICE = {
    "empty": f": choose a {_ACCEPTED_TEXT} photo and upload it again",
    "corrupt": ": upload the complete file again",
    "too_many_pixels": ": downscale it, or start the app with a higher limits.max_pixels",
    "not_image": f": it is not a {_ACCEPTED_TEXT} file, or it is cut off too early to tell. Upload a"
    f" {_ACCEPTED_TEXT} photo.",
    "format": f"; this app accepts {_ACCEPTED_TEXT}: convert it first",
}


def _upload_message(exc: ImageDecodeError) -> str:
    message = str(exc).replace("over the limit of", "over this server's limit of")
    return message + _ADVICE[exc.reason]


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
