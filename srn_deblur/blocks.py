"""The building blocks of one SRN scale (paper Fig. 3; release `models/model.py`).

Every convolution keeps the spatial size ("same" padding) unless it is strided, uses a
bias, and is followed by ReLU except the second conv of a ResBlock and the output conv.
"""

from __future__ import annotations

from torch import Tensor, nn


def _same_padding(kernel_size: int) -> int:
    if kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd for a 'same' convolution, got {kernel_size}")
    return kernel_size // 2


class ResBlock(nn.Module):
    """`x + conv(relu(conv(x)))`: no activation after the addition, as in the release."""

    def __init__(self, channels: int, kernel_size: int = 5) -> None:
        super().__init__()
        pad = _same_padding(kernel_size)
        self.conv1 = nn.Conv2d(channels, channels, kernel_size, padding=pad)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size, padding=pad)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(self.relu(self.conv1(x)))


def _res_blocks(channels: int, count: int, kernel_size: int) -> nn.Sequential:
    return nn.Sequential(*(ResBlock(channels, kernel_size) for _ in range(count)))


class EBlock(nn.Module):
    """Encoder block: a (strided) conv + ReLU that changes the width, then ResBlocks.

    With stride 1 this is the paper's InBlock, whose conv lifts the input channels to the
    first feature width.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 2,
        num_res_blocks: int = 3,
        kernel_size: int = 5,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride=stride, padding=_same_padding(kernel_size)
        )
        self.relu = nn.ReLU(inplace=True)
        self.res_blocks = _res_blocks(out_channels, num_res_blocks, kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        # (N, Cin, H, W) -> (N, Cout, H/stride, W/stride)
        return self.res_blocks(self.relu(self.conv(x)))


class InBlock(EBlock):
    """The first encoder block: full resolution, no stride."""

    def __init__(
        self, in_channels: int, out_channels: int, num_res_blocks: int = 3, kernel_size: int = 5
    ) -> None:
        super().__init__(in_channels, out_channels, 1, num_res_blocks, kernel_size)


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
    ) -> None:
        super().__init__()
        self.res_blocks = _res_blocks(in_channels, num_res_blocks, kernel_size)
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
        self, in_channels: int, out_channels: int, num_res_blocks: int = 3, kernel_size: int = 5
    ) -> None:
        super().__init__()
        self.res_blocks = _res_blocks(in_channels, num_res_blocks, kernel_size)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=_same_padding(kernel_size))

    def forward(self, x: Tensor) -> Tensor:
        # (N, C, H, W) -> (N, image_channels, H, W)
        return self.conv(self.res_blocks(x))
