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

from datamodules.image_io import ImageDecodeError, decode_image, quoted_name
from srn_deblur.video import VIDEO_SUFFIXES, SharpestFrames, VideoError, frames, open_video, time_stamp

# Pillow format name -> MIME type of the uploads the page and the API accept.
ACCEPTED_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
_ACCEPTED_TEXT = "PNG, JPEG or WebP"
_VIDEO_TEXT = "MP4, MOV, MKV, WebM or AVI"


class UploadError(ValueError):
    """An upload the app refuses; `status` is the HTTP status code to answer with (4xx)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Photo:
    """A decoded upload, upright (EXIF orientation applied).

    `pixels` is `(H, W, 3)` uint8 RGB (a photo, or the sharpest frame of a video);
    `icc_profile` is the input's colour profile, copied to the output so colours look the
    same; `download_name` is a safe name for the result.
    """

    pixels: np.ndarray
    download_name: str
    icc_profile: bytes | None = None
    # For a frame taken from a video upload: its time stamp in seconds.
    seconds: float | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return self.pixels.shape[1], self.pixels.shape[0]


def megabytes(n: int) -> str:
    return f"{n / 1e6:.3g} MB"


def megapixels(n: int) -> str:
    return f"{n / 1e6:.3g} MP"


def too_large_message(name: str, max_bytes: int) -> str:
    """The 413 message for an upload over the byte limit (checked by the app and by Flask)."""
    return (
        f"{quoted_name(name)} is larger than this server's limit of {megabytes(max_bytes)}: upload a smaller"
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


def _video_signature(data: bytes) -> bool:
    """MP4/MOV (`ftyp` box), Matroska/WebM (EBML header) or AVI (RIFF AVI) by the first bytes."""
    return (
        data[4:8] == b"ftyp"
        or data[:4] == b"\x1a\x45\xdf\xa3"
        or (data[:4] == b"RIFF" and data[8:12] == b"AVI ")
    )


def looks_like_video(data: bytes, name: str) -> bool:
    """A video by its name's suffix or its first bytes."""
    return PurePath(name).suffix.lower() in VIDEO_SUFFIXES or _video_signature(data)


# What each refusal of a video upload answers.
_VIDEO_STATUS = {"not_video": 415, "no_video_stream": 415, "too_long": 413, "corrupt": 400}
_VIDEO_ADVICE = {
    "not_video": f": upload an {_VIDEO_TEXT} clip, or a {_ACCEPTED_TEXT} photo",
    "no_video_stream": ": upload a clip with pictures in it",
    "too_long": ": cut it shorter, or start the app with a higher limits.max_video_seconds",
    "corrupt": ": upload the complete file again",
}


def decode_video_upload(data: bytes, name: str, max_bytes: int, max_seconds: float, max_pixels: int) -> Photo:
    """The sharpest frame of an uploaded clip (variance of the Laplacian), with its time stamp.

    Frames are decoded one at a time and only the best so far is kept. Raises `UploadError`:
    413 over `max_bytes`, `max_seconds` or `max_pixels`, 415 for what is not a video or has no
    video stream, 400 for an empty or corrupt clip.
    """
    label = quoted_name(name)
    if not data:
        raise UploadError(f"{label} is empty (0 bytes): choose a clip and upload it again")
    if len(data) > max_bytes:
        raise UploadError(
            f"{label} is larger than this server's limit of {megabytes(max_bytes)} for videos: upload a"
            " shorter clip, or start the app with a higher limits.max_video_bytes",
            413,
        )
    try:
        container = open_video(io.BytesIO(data), name or "the upload", max_seconds)
        try:
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            if width * height > max_pixels:
                raise UploadError(
                    f"{label} is {width}x{height} ({megapixels(width * height)}), over this server's"
                    f" limit of {megapixels(max_pixels)}: downscale it",
                    413,
                )
            best = SharpestFrames(1)
            for frame in frames(container):
                best.offer(frame)
        finally:
            container.close()
    except VideoError as exc:
        if exc.reason == "not_video" and _video_signature(data):  # a video's header, cut or damaged
            raise UploadError(f"{label} is truncated or corrupt ({exc}){_VIDEO_ADVICE['corrupt']}") from exc
        raise UploadError(
            str(exc).replace("the limit", "this server's limit") + _VIDEO_ADVICE[exc.reason],
            _VIDEO_STATUS[exc.reason],
        ) from exc
    chosen = best.chosen()
    if not chosen:
        raise UploadError(f"{label} has no frame that decodes: it is corrupt. Upload the complete file again")
    frame, _ = chosen[0]
    stem = f"{PurePath(name).stem or 'video'}_{time_stamp(frame.seconds)}"
    return Photo(frame.pixels, download_name(f"{stem}.png"), None, frame.seconds)


def encode_png(pixels: np.ndarray, icc_profile: bytes | None = None) -> bytes:
    """`(H, W, 3)` uint8 RGB -> PNG bytes, at zlib level 1: the app waits on the encoder, and
    the files are only a few percent larger (figures in benchmarks/RESULTS.md)."""
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format="PNG", compress_level=1, icc_profile=icc_profile)
    return buffer.getvalue()


__all__ = [
    "ACCEPTED_FORMATS",
    "Photo",
    "UploadError",
    "decode_upload",
    "decode_video_upload",
    "looks_like_video",
    "download_name",
    "megabytes",
    "megapixels",
    "too_large_message",
    "encode_png",
]
