"""Aligning an estimate to its ground truth before scoring, as RealBlur's official evaluation does.

RealBlur's sharp and blurry shots come from two cameras behind a beam splitter: a correct
deblurred image can still sit a fraction of a pixel off its ground truth or differ in
brightness, and unaligned PSNR would mostly measure that. The dataset's evaluation therefore
matches intensities, fits a homography with OpenCV's ECC, warps the estimate onto the ground
truth and keeps a mask of the pixels the warp could fill.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Alignment:
    """An aligned pair, `(H, W, C)` float32, both zero outside `mask` (1 = valid pixel)."""

    estimate: np.ndarray
    reference: np.ndarray
    mask: np.ndarray
    homography: np.ndarray  # (3, 3): maps reference pixels to estimate pixels
    converged: bool


def _grey(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.shape[-1] == 3 else image[..., 0]


def align_to_reference(
    estimate: np.ndarray, reference: np.ndarray, iterations: int = 100, filter_size: int = 5
) -> Alignment:
    """Intensity-match `estimate` to `reference`, then warp it onto `reference` by an ECC homography.

    Args:
        estimate, reference: `(H, W, C)` float32 images in [0, 1] (C = 1 or 3).
        iterations: ECC's iteration count (100 in RealBlur's code; no epsilon stop).
        filter_size: the Gaussian blur ECC applies to both grey images first (5 there).

    When ECC does not converge (flat or unrelated images) the identity is kept and logged.
    """
    estimate, reference = np.float32(estimate), np.float32(reference)
    if estimate.shape != reference.shape or estimate.ndim != 3:
        raise ValueError(
            f"expected two (H, W, C) images of one shape, got {estimate.shape} and {reference.shape}"
        )
    energy = float(np.sum(estimate * estimate))
    # Least-squares gain: the scale s minimising |reference - s * estimate|^2.
    gain = float(np.sum(reference * estimate)) / energy if energy > 0 else 1.0
    matched = np.float32(gain * estimate)
    warp = np.eye(3, dtype=np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, iterations, 0.0)
    converged = True
    try:
        _, warp = cv2.findTransformECC(
            _grey(reference), _grey(matched), warp, cv2.MOTION_HOMOGRAPHY, criteria, None, filter_size
        )
    except cv2.error as exc:
        log.warning(
            "ECC alignment did not converge (%s); scoring without alignment",
            str(exc).strip().splitlines()[-1],
        )
        warp, converged = np.eye(3, dtype=np.float32), False
    height, width = reference.shape[:2]
    inverse = cv2.WARP_INVERSE_MAP  # warp maps reference -> estimate coordinates
    aligned = cv2.warpPerspective(
        matched, warp, (width, height), flags=cv2.INTER_CUBIC | inverse, borderMode=cv2.BORDER_REFLECT
    )
    mask = cv2.warpPerspective(
        np.ones_like(matched),
        warp,
        (width, height),
        flags=cv2.INTER_NEAREST | inverse,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    if aligned.ndim == 2:  # OpenCV drops a single channel axis
        aligned, mask = aligned[..., None], mask[..., None]
    return Alignment(aligned * mask, reference * mask, mask, warp, converged)


__all__ = ["Alignment", "align_to_reference"]
