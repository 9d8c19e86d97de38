"""Named scoring protocols: how an estimate becomes the PSNR/SSIM a results table reports.

"My numbers are lower than the paper's" is most often a protocol difference, not a model one:
SSIM per channel or over the RGB volume, 8-bit rounding or truncation, alignment or not. A
`ScoringProtocol` names one choice of each; `configs/protocol/*.yaml` holds the published ones
(`default`, `matlab`, `release`, `realblur`) and every table prints the one it used. The
LightningModule's validation and test steps and `evaluate.py` score through the same object.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from datamodules.image_io import ROUNDINGS, quantize
from srn_deblur.alignment import align_to_reference
from srn_deblur.metrics import psnr, ssim_per_channel, ssim_volume

SSIM_KINDS = ("channel", "volume")
ALIGNMENTS = ("none", "realblur")

_SSIM_TEXT = {
    "channel": (
        "SSIM per channel (11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03; mean over R, G, B and"
        " the map less its 5-pixel border, as scikit-image and BasicSR)"
    ),
    "volume": (
        "SSIM of the H x W x 3 array as one volume (MATLAB's ssim default: an 11-tap Gaussian of"
        " sigma 1.5 along rows, columns and channels, replicate padding, mean over every value)"
    ),
}
_ROUNDING_TEXT = {
    "round": "estimates rounded to 8 bits",
    "truncate": "estimates truncated to 8 bits, as the release saved its PNGs",
    None: "estimates not quantised",
}


@dataclass(frozen=True)
class ScoringProtocol:
    """One way of scoring `(1, C, H, W)` estimates in [0, 1] against their sharp images.

    Args:
        name: what tables call it (the config's file name).
        ssim: `channel` (per channel, border cropped) or `volume` (MATLAB's RGB default).
        rounding: how estimates become 8 bits before scoring: `round`, `truncate` (the
            release's `(clip(x, 0, 1) * 255).astype(uint8)`), or `None` (scored as floats).
            Blurry inputs are 8-bit already and are never re-quantised.
        alignment: `none`, or `realblur`: intensity matching and an ECC homography onto the
            ground truth, PSNR and (per-channel) SSIM over the pixels the warp fills.
        ecc_iterations, ecc_filter_size: ECC's settings for `realblur` (100 and 5 officially).
    """

    name: str = "default"
    ssim: str = "channel"
    rounding: str | None = "round"
    alignment: str = "none"
    ecc_iterations: int = 100
    ecc_filter_size: int = 5

    def __post_init__(self) -> None:
        if self.ssim not in SSIM_KINDS:
            raise ValueError(f"protocol {self.name!r}: ssim must be one of {SSIM_KINDS}, got {self.ssim!r}")
        if self.rounding is not None and self.rounding not in ROUNDINGS:
            raise ValueError(
                f"protocol {self.name!r}: rounding must be one of {ROUNDINGS} or null, got {self.rounding!r}"
            )
        if self.alignment not in ALIGNMENTS:
            raise ValueError(
                f"protocol {self.name!r}: alignment must be one of {ALIGNMENTS}, got {self.alignment!r}"
            )
        if self.alignment == "realblur" and self.ssim != "channel":
            raise ValueError(
                f"protocol {self.name!r}: realblur alignment scores SSIM per channel; set ssim: channel"
            )

    def to_8bit(self, estimate: Tensor) -> Tensor:
        """The estimate as the protocol stores it: clamped and quantised to 8 bits (or not)."""
        estimate = estimate.float().clamp(0.0, 1.0)
        return estimate if self.rounding is None else quantize(estimate, self.rounding)

    def score(self, image: Tensor, sharp: Tensor, estimate: bool = True) -> tuple[float, float]:
        """PSNR (dB) and SSIM of one `(1, C, H, W)` image against its sharp twin.

        `estimate=False` for images that are 8-bit already (the blurry input): no quantisation.
        """
        image = self.to_8bit(image) if estimate else image.float()
        sharp = sharp.float()
        if self.alignment == "realblur":
            return self._score_aligned(image, sharp)
        ssim = ssim_per_channel(image, sharp) if self.ssim == "channel" else ssim_volume(image, sharp)
        return psnr(image, sharp), ssim

    def _score_aligned(self, image: Tensor, sharp: Tensor) -> tuple[float, float]:
        def hwc(x: Tensor) -> np.ndarray:
            return x[0].permute(1, 2, 0).cpu().numpy()

        def chw(x: np.ndarray) -> Tensor:
            return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None]  # (1, C, H, W)

        aligned = align_to_reference(hwc(image), hwc(sharp), self.ecc_iterations, self.ecc_filter_size)
        estimate, reference, mask = chw(aligned.estimate), chw(aligned.reference), chw(aligned.mask)
        return psnr(estimate, reference, mask), ssim_per_channel(estimate, reference, mask)

    def describe(self) -> str:
        """One sentence for the foot of a table: what was computed, in the protocol's terms."""
        psnr_text = "PSNR (data range 1) over all RGB values"
        parts = [f"{psnr_text}; {_SSIM_TEXT[self.ssim]}; {_ROUNDING_TEXT[self.rounding]}"]
        if self.alignment == "realblur":
            parts = [
                "RealBlur's official evaluation: each image intensity-matched and homography-aligned to its"
                f" ground truth (OpenCV ECC on grey images, Gaussian filter {self.ecc_filter_size},"
                f" {self.ecc_iterations} iterations), PSNR over the valid pixels, {_SSIM_TEXT['channel']}"
                f" over the valid pixels; {_ROUNDING_TEXT[self.rounding]}"
            ]
        return f"Protocol `{self.name}`: " + "; ".join(parts) + ". Identical images score PSNR inf."


DEFAULT_PROTOCOL = ScoringProtocol()

__all__ = ["ALIGNMENTS", "DEFAULT_PROTOCOL", "SSIM_KINDS", "ScoringProtocol"]
