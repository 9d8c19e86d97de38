"""A checkpoint loaded and prepared for the fast path: 8-bit RGB photo in, 8-bit RGB photo out.

What `deblur.py` and the web app hold (built from config with `_target_`), and what evaluation
can hold: the network, its device and precision, the tiling policy and the 8-bit rounding, so
every caller runs a photo the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from datamodules.image_io import ROUNDINGS, to_tensor, to_uint8
from srn_deblur.devices import resolve_device, resolve_precision
from srn_deblur.inference import deblur, load_network
from srn_deblur.network import parameter_count
from srn_deblur.tiling import TilePlan, plan_tiles, size_multiple


class Deblurrer:
    """One network prepared once (device, precision, channels-last) and the way it runs photos.

    Args:
        checkpoint: a `.ckpt` that `load_network` reads (it carries the network's config).
        device: `auto` (the GPU when there is one), `cpu`, `cuda`, `cuda:1`, ...
        precision: `auto` (bf16 on CUDA and on CPUs with native bf16 units, else fp32), `fp32`,
            `bf16`, `fp16`; see `srn_deblur.devices.resolve_precision`.
        channels_last: channels-last memory format (faster convolutions on CPU and GPU).
        tile_size, tile_overlap: tiles for photos over `whole_image_max_pixels`, which bound the
            activation memory whatever the photo's size.
        whole_image_max_pixels: photos up to this many pixels run in one pass.
        batch_tiles: tiles per pass, or `auto` (1 on the CPU, sized to free memory on CUDA).
        rounding: 8-bit output levels, `round` or `truncate` (the release's PNGs).
        net: an already built network instead of `checkpoint` (tests, benchmarks).
    """

    def __init__(
        self,
        checkpoint: str | Path | None = None,
        device: str = "auto",
        precision: str = "auto",
        channels_last: bool = True,
        tile_size: int = 512,
        tile_overlap: int = 64,
        whole_image_max_pixels: int = 1_048_576,
        batch_tiles: int | str = "auto",
        rounding: str = "round",
        net: nn.Module | None = None,
    ) -> None:
        if tile_size < 16 or not 0 <= tile_overlap < tile_size:
            raise ValueError(
                f"need tile_size >= 16 and 0 <= tile_overlap < tile_size, got {tile_size} and {tile_overlap}"
            )
        if rounding not in ROUNDINGS:
            raise ValueError(f"rounding must be one of {ROUNDINGS}, got {rounding!r}")
        if net is None and checkpoint is None:
            raise ValueError("pass a checkpoint (ckpt_path=...) or a built network")
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.net = (net if net is not None else load_network(self.checkpoint)).to(self.device).eval()
        self.channels_last = channels_last
        if channels_last:
            self.net.to(memory_format=torch.channels_last)
        self.tile_size, self.tile_overlap = tile_size, tile_overlap
        self.whole_image_max_pixels = whole_image_max_pixels
        self.batch_tiles = batch_tiles
        self.rounding = rounding

    @property
    def channels(self) -> int:
        """The network's image channels: 3 (colour) or 1 (grey models run R, G, B as a batch)."""
        return int(dict(getattr(self.net, "config", {})).get("channels", 3))

    @property
    def parameters(self) -> int:
        return parameter_count(self.net)

    def plan(self, height: int, width: int) -> TilePlan:
        """The tile plan of a photo of this size; `plan.count` is its progress denominator."""
        limit, align = self.whole_image_max_pixels, size_multiple(self.net)
        return plan_tiles(height, width, self.tile_size, self.tile_overlap, limit, align)

    def tensor(self, blurry: Tensor, on_tile: Callable[[int, int], None] | None = None) -> Tensor:
        """`(1, 3, H, W)` in [0, 1] on any device -> the sharp `(1, 3, H, W)` float32 on `device`."""
        x = blurry.to(self.device)
        grey = self.channels == 1 and x.shape[1] == 3
        if grey:
            x = x.transpose(0, 1)  # (3, 1, H, W): R, G, B as three grey images, as the release runs them
        out = deblur(
            self.net,
            x,
            self.tile_size,
            self.tile_overlap,
            self.whole_image_max_pixels,
            precision=self.precision,
            channels_last=self.channels_last,
            batch_tiles=self.batch_tiles,
            on_tile=on_tile,
        )
        return out.transpose(0, 1) if grey else out

    def __call__(self, pixels: np.ndarray, on_tile: Callable[[int, int], None] | None = None) -> np.ndarray:
        """`(H, W, 3)` uint8 RGB -> the deblurred `(H, W, 3)` uint8 RGB (rounded as `rounding`)."""
        sharp = self.tensor(to_tensor(pixels)[None], on_tile)  # (1, 3, H, W)
        return to_uint8(sharp, self.rounding)

    def info(self) -> dict[str, object]:
        """What a log line or the health endpoint says about how photos run."""
        return {
            "checkpoint": str(self.checkpoint),
            "config": dict(getattr(self.net, "config", {})),
            "parameters": self.parameters,
            "device": str(self.device),
            "precision": self.precision,
            "channels_last": self.channels_last,
            "tile_size": self.tile_size,
            "tile_overlap": self.tile_overlap,
            "whole_image_max_pixels": self.whole_image_max_pixels,
            "batch_tiles": self.batch_tiles,
            "rounding": self.rounding,
        }


__all__ = ["Deblurrer"]
