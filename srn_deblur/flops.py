"""Counting a network's multiply-accumulates, for achieved-FLOP/s figures and their tests."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import Tensor, nn


def count_macs(net: nn.Module, shape: Sequence[int]) -> int:
    """Multiply-accumulates of all convolutions in one forward pass of `net` on `shape`.

    Counted by hooks on a copy of the network on the meta device (no arithmetic is done).
    A transposed conv costs input pixels x out channels x kernel area: each input pixel
    meets every weight once (counting it over output pixels, like a dense conv, gives 4x).
    """
    meta = copy.deepcopy(net).to("meta")
    total = 0

    def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        nonlocal total
        kernel = module.kernel_size[0] * module.kernel_size[1]
        if isinstance(module, nn.ConvTranspose2d):
            total += inputs[0].numel() * (module.out_channels // module.groups) * kernel
        else:
            total += output.numel() * (module.in_channels // module.groups) * kernel

    for m in meta.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            m.register_forward_hook(hook)
    with torch.no_grad():
        meta(torch.empty(*shape, device="meta"))
    return total
