"""Out-of-focus regions in the sharp targets of synthetic training pairs.

Real photos (GOPRO's frames, the test photos) have depth of field: a soft background is soft
in the sharp frame too. Scikit-image's samples are mostly in focus everywhere, so a network
trained on them learns that every soft region is motion blur and "deblurs" a defocused
background into ringing. Putting defocused regions into some training targets (the motion
blur is applied on top, as a camera would) teaches it to remove only the motion.
"""

from __future__ import annotations

import cv2
import numpy as np

from datamodules.image_io import array_to_uint8
from datamodules.motion_blur import from_linear, to_linear


def disk_kernel(radius: float) -> np.ndarray:
    """A normalised disk (a lens's out-of-focus point spread), anti-aliased at the rim."""
    half = int(np.ceil(radius))
    y, x = np.mgrid[-half : half + 1, -half : half + 1]
    # Coverage of each pixel by the disk, approximated by a 1-pixel-wide linear ramp at the rim.
    kernel = np.clip(radius + 0.5 - np.hypot(x, y), 0.0, 1.0).astype(np.float32)
    return kernel / kernel.sum()


def focus_mask(rng: np.random.Generator, height: int, width: int, grid: int = 4) -> np.ndarray:
    """A smooth `(H, W)` map in [0, 1]: 1 where the photo is out of focus.

    A coarse random field (grid x grid) is upsampled and pushed through a steep sigmoid, so
    the image splits into a few large in-focus and out-of-focus regions with soft borders,
    like a subject in front of a background.
    """
    field = rng.uniform(-1.0, 1.0, (grid, grid)).astype(np.float32)
    field = cv2.resize(field, (width, height), interpolation=cv2.INTER_CUBIC)
    threshold = rng.uniform(-0.3, 0.3)
    return 1.0 / (1.0 + np.exp(-8.0 * (field - threshold)))


def defocus_regions(
    image: np.ndarray, rng: np.random.Generator, min_radius: float = 1.0, max_radius: float = 4.0
) -> np.ndarray:
    """`(H, W, 3)` uint8 image with random regions defocused by a disk of random radius.

    The defocus is applied in linear intensity (as light spreads), then re-encoded.
    """
    h, w = image.shape[:2]
    radius = rng.uniform(min_radius, max_radius)
    linear = to_linear(image)
    soft = cv2.filter2D(linear, -1, disk_kernel(radius), borderType=cv2.BORDER_REFLECT101)
    mask = focus_mask(rng, h, w)[..., None]  # (H, W, 1)
    return array_to_uint8(from_linear(mask * soft + (1.0 - mask) * linear))
