"""The multi-scale Euclidean loss (paper Eq. 3)."""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from srn_deblur.recurrence import Resize, resize_bilinear


class MultiScaleLoss(nn.Module):
    """`sum_i kappa_i * mse(I_i, resize(S, size(I_i)))`.

    The paper writes `kappa_i / (2 N_i) ||I_i - S_i||^2`; the release uses the mean squared
    error per scale, summed over scales, which is what this computes. The loss is evaluated
    in float32 even under autocast so bf16 rounding does not swamp small residuals.

    Args:
        scale_weights: kappa_i, coarsest first; `None` means 1.0 for every scale.
        resize: how the sharp image is resized to each scale. Pass the network's own rule
            (`SRNDeblurNet.resize`) so targets follow the convention its inputs were resized
            with (TF 1.x's for the release's weights); PyTorch's bilinear by default.
    """

    def __init__(self, scale_weights: Sequence[float] | None = None, resize: Resize | None = None) -> None:
        super().__init__()
        self.scale_weights = None if scale_weights is None else [float(w) for w in scale_weights]
        self.resize = resize or resize_bilinear

    def forward(self, estimates: Sequence[Tensor], sharp: Tensor) -> Tensor:
        weights = self.scale_weights or [1.0] * len(estimates)
        if len(weights) != len(estimates):
            raise ValueError(
                f"scale_weights has {len(weights)} entries but the network returned"
                f" {len(estimates)} scales; give one weight per scale, coarsest first"
            )
        sharp = sharp.float()
        total = sharp.new_zeros(())
        for weight, estimate in zip(weights, estimates, strict=True):
            target = self.resize(sharp, tuple(estimate.shape[-2:]))
            total = total + weight * F.mse_loss(estimate.float(), target)
        return total
