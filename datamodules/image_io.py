"""Image files in and out, and the conversions between 8-bit arrays and tensors.

The one home for decoding, encoding, grey conversion and 8-bit quantisation, so the data
loaders, evaluation, the web app and the command-line tool read and write pixels the same way.
A leaf module: it imports nothing of the project's.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor

# ITU-R BT.601 luma weights, as TF's rgb_to_grayscale used by the release.
GREY_WEIGHTS = np.array([0.2989, 0.5870, 0.1140], dtype=np.float32)

# How [0, 1] floats become 8-bit levels: `round` (a PNG writer's usual choice, the default) or
# `truncate` (`(clip(x, 0, 1) * 255).astype(uint8)`, as the official release saved its outputs).
ROUNDINGS = ("round", "truncate")


class ImageReadError(OSError):
    """An image file could not be decoded."""


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


def quantize(image: Tensor, rounding: str = "round") -> Tensor:
    """Floats -> the [0, 1] values of the 256 levels an 8-bit image stores (same shape)."""
    _check_rounding(rounding)
    levels = image.float().clamp(0.0, 1.0) * 255.0
    return (levels.round_() if rounding == "round" else levels.floor_()) / 255.0


def to_uint8(image: Tensor, rounding: str = "round") -> np.ndarray:
    """`(C, H, W)` or `(1, C, H, W)` float in [0, 1] -> `(H, W, C)` uint8."""
    _check_rounding(rounding)
    if image.dim() == 4:
        if image.shape[0] != 1:
            raise ValueError(f"to_uint8 takes one image, got a batch of {image.shape[0]}")
        image = image[0]
    # clamp copies; the in-place steps after it keep a 12 MP photo to one float copy.
    levels = image.float().clamp(0.0, 1.0).mul_(255.0)
    levels = levels.round_() if rounding == "round" else levels.floor_()
    return levels.byte().permute(1, 2, 0).cpu().numpy()
