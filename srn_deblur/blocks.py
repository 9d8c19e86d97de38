"""The building blocks of one SRN scale (paper Fig. 3; release `models/model.py`).

Every convolution keeps the spatial size ("same" padding) unless it is strided, uses a
bias, and is followed by ReLU except the second conv of a ResBlock and the output conv.
`res_skip=False` turns every ResBlock into two plain conv + ReLU layers (the ablation's SR-ED).
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn


def same_padding(kernel_size: int) -> int:
    """Padding that keeps the size of a stride-1 conv; an even kernel cannot (it would shift)."""
    if kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd for a 'same' convolution, got {kernel_size}")
    return kernel_size // 2


def _tf_same_amounts(length: int, kernel_size: int, stride: int) -> tuple[int, int]:
    """TensorFlow's 'SAME' padding of one axis: the extra pixel of an uneven total goes after."""
    total = max((-(-length // stride) - 1) * stride + kernel_size - length, 0)
    return total // 2, total - total // 2


def tf_same_pad(x: Tensor, kernel_size: int, stride: int) -> Tensor:
    """Zero-pad `(N, C, H, W)` as TF's 'SAME' does before a padding-0 conv.

    With stride 2 and k = 5 on an even size TF pads 1 before and 2 after, where PyTorch's
    symmetric `padding=2` pads 2 and 2: each output would see a window one pixel off.
    """
    top, bottom = _tf_same_amounts(x.shape[-2], kernel_size, stride)
    left, right = _tf_same_amounts(x.shape[-1], kernel_size, stride)
    return F.pad(x, (left, right, top, bottom))


class ResBlock(nn.Module):
    """`x + conv(relu(conv(x)))`: no activation after the addition, as in the release.

    Without the skip it is `relu(conv(relu(conv(x))))`: two plain layers, each with the ReLU
    every plain conv of the network has (the second conv is linear only because a sum follows).
    The parameters are the same either way.
    """

    def __init__(self, channels: int, kernel_size: int = 5, skip: bool = True) -> None:
        super().__init__()
        pad = same_padding(kernel_size)
        self.skip = skip
        self.conv1 = nn.Conv2d(channels, channels, kernel_size, padding=pad)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size, padding=pad)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv2(self.relu(self.conv1(x)))
        return x + y if self.skip else self.relu(y)


def _res_blocks(channels: int, count: int, kernel_size: int, skip: bool) -> nn.Sequential:
    return nn.Sequential(*(ResBlock(channels, kernel_size, skip) for _ in range(count)))


class EBlock(nn.Module):
    """Encoder block: a (strided) conv + ReLU that changes the width, then ResBlocks.

    With stride 1 this is the paper's InBlock, whose conv lifts the input channels to the
    first feature width. `tf_padding` pads as TensorFlow's 'SAME' (asymmetric when strided),
    as the release's weights need; the parameters are the same either way.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 2,
        num_res_blocks: int = 3,
        kernel_size: int = 5,
        tf_padding: bool = False,
        res_skip: bool = True,
    ) -> None:
        super().__init__()
        pad = same_padding(kernel_size)
        self.tf_padding = tf_padding
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride=stride, padding=0 if tf_padding else pad
        )
        self.relu = nn.ReLU(inplace=True)
        self.res_blocks = _res_blocks(out_channels, num_res_blocks, kernel_size, res_skip)

    def forward(self, x: Tensor) -> Tensor:
        if self.tf_padding:
            x = tf_same_pad(x, self.conv.kernel_size[0], self.conv.stride[0])
        # (N, Cin, H, W) -> (N, Cout, H/stride, W/stride)
        return self.res_blocks(self.relu(self.conv(x)))


class InBlock(EBlock):
    """The first encoder block: full resolution, no stride."""

    def __init__(self, in_channels: int, out_channels: int, **settings: Any) -> None:
        # Stride 1 with an odd kernel: TF's 'SAME' and PyTorch's padding k // 2 agree, so the
        # block never pads as TF; the ResBlock settings are EBlock's.
        super().__init__(in_channels, out_channels, stride=1, **settings)


class DBlock(nn.Module):
    """Decoder block: ResBlocks, then a 2x transposed conv + ReLU that halves the width.

    The release uses 4x4 transposed kernels (the paper's text says 5x5); any size works,
    padding is chosen so the output is exactly twice the input size.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_res_blocks: int = 3,
        kernel_size: int = 5,
        deconv_kernel_size: int = 4,
        res_skip: bool = True,
    ) -> None:
        super().__init__()
        self.res_blocks = _res_blocks(in_channels, num_res_blocks, kernel_size, res_skip)
        pad = (deconv_kernel_size - 1) // 2
        # out = (in - 1) * 2 - 2 * pad + k + output_padding = 2 * in
        self.deconv = nn.ConvTranspose2d(
            in_channels,
            out_channels,
            deconv_kernel_size,
            stride=2,
            padding=pad,
            output_padding=2 + 2 * pad - deconv_kernel_size,
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        # (N, Cin, H, W) -> (N, Cout, 2H, 2W)
        return self.relu(self.deconv(self.res_blocks(x)))


class OutBlock(nn.Module):
    """ResBlocks, then a linear conv to the image channels (no activation, no clamp)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_res_blocks: int = 3,
        kernel_size: int = 5,
        res_skip: bool = True,
    ) -> None:
        super().__init__()
        self.res_blocks = _res_blocks(in_channels, num_res_blocks, kernel_size, res_skip)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=same_padding(kernel_size))

    def forward(self, x: Tensor) -> Tensor:
        # (N, C, H, W) -> (N, image_channels, H, W)
        return self.conv(self.res_blocks(x))
