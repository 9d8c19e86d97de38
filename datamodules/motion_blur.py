"""Realistic synthetic motion blur: GOPRO-style averaging of frames along a camera path.

GOPRO's blurry frames are the average of 7-13 consecutive sharp frames of a 240 fps
camera, averaged in linear intensity. Here the "frames" are the sharp image warped along
a random, smooth camera trajectory (translation with a little in-plane rotation, so the
blur is not exactly uniform), averaged after undoing the sRGB gamma, re-encoded, given
mild sensor noise and quantised to 8 bits.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from datamodules.image_io import array_to_uint8

_GAMMA = 2.2


def to_linear(image: np.ndarray) -> np.ndarray:
    """uint8 sRGB-ish pixels -> float32 linear intensity (gamma 2.2), where light adds up."""
    return (image.astype(np.float32) / 255.0) ** _GAMMA


def from_linear(linear: np.ndarray) -> np.ndarray:
    """Linear intensity -> gamma-encoded values in [0, 1] (not yet quantised)."""
    return linear ** (1.0 / _GAMMA)


@dataclass(frozen=True)
class BlurParams:
    """Ranges the generator draws from, per image.

    min_length/max_length: extent of the camera path in pixels; max_rotation_deg: in-plane
    rotation over the exposure; curvature: how much the path bends (see
    `camera_trajectory`); noise_sigma: maximum std of the additive Gaussian noise (in
    [0, 1] units), drawn uniformly from [0, noise_sigma].
    """

    min_length: float = 5.0
    max_length: float = 15.0
    max_rotation_deg: float = 0.5
    curvature: float = 0.05
    noise_sigma: float = 0.01


def camera_trajectory(
    rng: np.random.Generator, length: float, curvature: float = 0.05, samples: int = 64
) -> np.ndarray:
    """A smooth random camera path with `length` pixels of extent, shape `(samples, 2)` (x, y).

    A random walk on the heading with inertia (after Boracchi and Foi's camera-shake model):
    `curvature` is the std of the heading's change per sample, in radians. The default gives
    gently curved strokes, as a hand-held camera makes in the ~50 ms of a GOPRO frame; values
    near 0.25 give the loopy paths of long-exposure shake, which are much harder to invert.
    """
    heading = rng.uniform(0.0, 2.0 * np.pi)
    turn = 0.0
    steps = np.zeros((samples, 2))
    for k in range(1, samples):
        turn = 0.7 * turn + rng.normal(0.0, curvature)
        if rng.random() < 0.02:  # an occasional jerk of the hand
            turn += rng.normal(0.0, 4 * curvature)
        heading += turn
        steps[k] = steps[k - 1] + (np.cos(heading), np.sin(heading))
    steps -= steps.mean(axis=0)
    extent = np.ptp(steps, axis=0).max()
    return steps * (length / max(extent, 1e-6))


def blur_image(sharp: np.ndarray, rng: np.random.Generator, params: BlurParams = BlurParams()) -> np.ndarray:
    """Blur one `(H, W, 3)` uint8 sRGB image; returns a uint8 image of the same size."""
    if sharp.dtype != np.uint8 or sharp.ndim != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {sharp.shape} {sharp.dtype}")
    h, w = sharp.shape[:2]
    length = rng.uniform(params.min_length, params.max_length)
    path = camera_trajectory(rng, length, params.curvature)
    # Enough frames that consecutive ones are under half a pixel apart: no ghosting.
    frames = int(np.clip(np.ceil(2 * length), 7, len(path)))
    idx = np.linspace(0, len(path) - 1, frames)
    points = np.stack([np.interp(idx, np.arange(len(path)), path[:, d]) for d in range(2)], axis=1)
    angles = np.linspace(-0.5, 0.5, frames) * rng.uniform(-1, 1) * params.max_rotation_deg

    linear = to_linear(sharp)
    acc = np.zeros_like(linear)
    center = (w / 2.0, h / 2.0)
    for (dx, dy), angle in zip(points, angles, strict=True):
        m = cv2.getRotationMatrix2D(center, float(angle), 1.0)
        m[:, 2] += (dx, dy)
        acc += cv2.warpAffine(linear, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
    blurry = from_linear(acc / frames)
    blurry = blurry + rng.normal(0.0, rng.uniform(0.0, params.noise_sigma), blurry.shape)
    return array_to_uint8(blurry)
