"""PSNR and SSIM in the conventions deblurring papers report, on `(1, C, H, W)` images in [0, 1].

Two SSIMs, because published tables use both and they differ by up to ~0.02 on the same images:
per channel (scikit-image / BasicSR: a 2-D window on each of R, G, B, the map less the window's
border) and MATLAB's default for an RGB array, which filters H x W x 3 as one 3-D volume
(`docs/evaluation.md`, "Scoring protocols"). PSNR is taken over every value (or the valid
ones); identical images score `inf`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.functional.image import structural_similarity_index_measure

SSIM_WINDOW = 11  # taps of the Gaussian window, every convention here
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03
SSIM_BORDER = (SSIM_WINDOW - 1) // 2  # where the window reaches into padding


def _check_pair(estimate: Tensor, sharp: Tensor) -> None:
    if estimate.dim() != 4 or estimate.shape[0] != 1 or estimate.shape != sharp.shape:
        raise ValueError(
            f"expected one (1, C, H, W) image and its twin of the same shape, got {tuple(estimate.shape)}"
            f" and {tuple(sharp.shape)}"
        )
    height, width = sharp.shape[-2:]
    if min(height, width) <= 2 * SSIM_BORDER:
        raise ValueError(
            f"SSIM needs images larger than {SSIM_WINDOW}x{SSIM_WINDOW} pixels, got {width}x{height}"
        )


def psnr(estimate: Tensor, sharp: Tensor, mask: Tensor | None = None) -> float:
    """PSNR in dB (data range 1) over all values, or over those where `mask` (same shape) is 1."""
    _check_pair(estimate, sharp)
    squared = (estimate.double() - sharp.double()).square()
    mse = squared.mean() if mask is None else (squared * mask).sum() / mask.sum()
    return math.inf if float(mse) == 0.0 else -10.0 * math.log10(float(mse))


def ssim_channel_map(estimate: Tensor, sharp: Tensor) -> Tensor:
    """`(1, C, H, W)` SSIM map, each channel with its own 11x11 Gaussian window (reflect-padded)."""
    _check_pair(estimate, sharp)
    _, ssim_map = structural_similarity_index_measure(
        estimate.float(),
        sharp.float(),
        data_range=1.0,
        gaussian_kernel=True,
        kernel_size=SSIM_WINDOW,
        sigma=SSIM_SIGMA,
        k1=SSIM_K1,
        k2=SSIM_K2,
        return_full_image=True,
    )
    return ssim_map


def ssim_per_channel(estimate: Tensor, sharp: Tensor, mask: Tensor | None = None) -> float:
    """SSIM per channel, averaged over R, G, B and over the map less its 5-pixel border.

    The border is where the window reaches into padding: scikit-image's convention (torchmetrics'
    own mean keeps it). With `mask` (same shape, 1 = valid), each channel's mean is taken over
    its valid pixels only, as RealBlur's official evaluation does after alignment.
    """
    b = SSIM_BORDER
    ssim_map = ssim_channel_map(estimate, sharp).double()[..., b:-b, b:-b]  # (1, C, H - 10, W - 10)
    if mask is None:
        return float(ssim_map.mean())
    valid = mask.double()[..., b:-b, b:-b]
    per_channel = (ssim_map * valid).sum(dim=(-2, -1)) / valid.sum(dim=(-2, -1)).clamp_min(1.0)  # (1, C)
    return float(per_channel.mean())


def _gaussian_taps(device: torch.device) -> Tensor:
    offsets = torch.arange(SSIM_WINDOW, dtype=torch.float64, device=device) - SSIM_BORDER
    taps = torch.exp(-offsets.square() / (2 * SSIM_SIGMA**2))
    return taps / taps.sum()


def _filter_volume(volumes: Tensor) -> Tensor:
    """Separable 11-tap Gaussian along D, H and W of `(N, 1, D, H, W)`, replicate-padded (same shape)."""
    b = SSIM_BORDER
    taps = _gaussian_taps(volumes.device)
    out = F.pad(volumes, (b, b, b, b, b, b), mode="replicate")  # (N, 1, D + 10, H + 10, W + 10)
    for shape in ((-1, 1, 1), (1, -1, 1), (1, 1, -1)):
        out = F.conv3d(out, taps.view(1, 1, *shape))  # shrinks one axis by 10 each pass
    return out


def ssim_volume(estimate: Tensor, sharp: Tensor) -> float:
    """MATLAB's `ssim` on an H x W x 3 array: one 3-D Gaussian (11 taps, sigma 1.5) over rows,
    columns and channels, replicate padding on all three axes, the map averaged over every value.
    """
    _check_pair(estimate, sharp)
    x, y = estimate.double()[0], sharp.double()[0]  # (C, H, W): the channels are the volume's depth
    moments = _filter_volume(torch.stack([x, y, x * x, y * y, x * y])[:, None])[:, 0]  # (5, C, H, W)
    mu_x, mu_y, xx, yy, xy = moments
    c1, c2 = SSIM_K1**2, SSIM_K2**2  # data range 1
    var_x, var_y, cov = xx - mu_x.square(), yy - mu_y.square(), xy - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
        (mu_x.square() + mu_y.square() + c1) * (var_x + var_y + c2)
    )
    return float(ssim_map.mean())


__all__ = [
    "SSIM_BORDER",
    "SSIM_SIGMA",
    "SSIM_WINDOW",
    "psnr",
    "ssim_channel_map",
    "ssim_per_channel",
    "ssim_volume",
]
