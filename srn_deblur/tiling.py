"""The tile plan: whether a photo runs whole or in tiles, where the tiles sit, and how many
run in one batch.

`deblur` follows the plan and progress counters (the web app, `deblur.py`) count its tiles, so
both agree by construction.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import torch
from torch import Tensor

# Share of the GPU's free memory that batched tiles may fill; the rest absorbs the allocator's
# fragmentation and the blending buffers.
GPU_MEMORY_HEADROOM = 0.7


@dataclass(frozen=True)
class TilePlan:
    """How `deblur` covers an `height x width` image.

    `tile` is None for one whole-image pass; otherwise tiles of side `tile` (the last row and
    column may be shorter, stopping at the image edge) start at every `(top, left)` of
    `positions`, neighbours sharing `overlap` pixels.
    """

    height: int
    width: int
    tile: int | None
    overlap: int
    tops: tuple[int, ...]
    lefts: tuple[int, ...]

    @property
    def whole(self) -> bool:
        return self.tile is None

    @property
    def positions(self) -> list[tuple[int, int]]:
        return [(top, left) for top in self.tops for left in self.lefts]

    @property
    def count(self) -> int:
        """Network passes at batch size 1: 1 for the whole image, else one per tile."""
        return len(self.tops) * len(self.lefts)

    def tile_shape(self, top: int, left: int) -> tuple[int, int]:
        if self.tile is None:
            return self.height, self.width
        return min(self.tile, self.height - top), min(self.tile, self.width - left)

    def batches(self, size: int, skip: Collection[tuple[int, int]] = ()) -> list[list[tuple[int, int]]]:
        """Positions (less `skip`) in groups of at most `size` tiles of one shape (a batch must stack)."""
        by_shape: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for position in (p for p in self.positions if p not in skip):
            by_shape.setdefault(self.tile_shape(*position), []).append(position)
        step = max(size, 1)
        return [same[i : i + step] for same in by_shape.values() for i in range(0, len(same), step)]


def _tile_geometry(tile_size: int, tile_overlap: int, align: int) -> tuple[int, int]:
    """Tile side and overlap rounded down to multiples of `align`; the overlap stays below the tile."""
    tile = max(align, (tile_size // align) * align)
    return tile, min((tile_overlap // align) * align, tile - align)


def _starts(length: int, tile: int, stride: int) -> tuple[int, ...]:
    """Tile positions, all multiples of `stride` (itself a multiple of the network's size
    multiple); the last tile may be shorter and stop at the image edge, never shift off-grid."""
    return tuple(range(0, max(length - tile, 0) + stride, stride)) if length > tile else (0,)


def size_multiple(net: object) -> int:
    """The side every tile position must be a multiple of: the network's padding multiple."""
    return net.padded_length(1) if hasattr(net, "padded_length") else 16


def plan_tiles(
    height: int,
    width: int,
    tile_size: int | None = None,
    tile_overlap: int = 64,
    max_pixels: int | None = None,
    align: int = 16,
) -> TilePlan:
    """The plan `deblur` follows for an image of this size.

    With `max_pixels` set, only images of more than `max_pixels` pixels are tiled (with
    `tile_size`, default 512); without it, `tile_size` alone forces tiling and no `tile_size`
    means one whole-image pass. Tile positions are multiples of `align` (the network's size
    multiple, 16 for 3 scales), so each tile sees the coarse scales' sampling grid of the whole.
    """
    if max_pixels is not None:
        tile_size = (tile_size or 512) if height * width > max_pixels else None
    if tile_size is None or (height <= tile_size and width <= tile_size):
        return TilePlan(height, width, None, 0, (0,), (0,))
    tile, overlap = _tile_geometry(tile_size, tile_overlap, align)
    stride = tile - overlap
    return TilePlan(height, width, tile, overlap, _starts(height, tile, stride), _starts(width, tile, stride))


def ramp(length: int, overlap: int, device: torch.device) -> Tensor:
    """1D blending weights: rising linearly over `overlap` pixels at both ends, never zero."""
    pos = torch.arange(length, device=device, dtype=torch.float32)
    return (torch.minimum(pos + 1, length - pos) / max(overlap, 1)).clamp(1e-3, 1.0)


def tiles_per_batch(
    count: int, bytes_per_tile: int, free_bytes: int, headroom: float = GPU_MEMORY_HEADROOM
) -> int:
    """How many tiles fit in one batch: `headroom` of the free memory over one tile's peak, 1 to `count`."""
    if bytes_per_tile <= 0:
        return max(count, 1)
    return max(1, min(count, int(free_bytes * headroom) // bytes_per_tile))


def free_memory(device: torch.device) -> int | None:
    """Free bytes on a CUDA device (`torch.cuda.mem_get_info`); None on the CPU (no batching)."""
    if device.type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(device)
    return int(free)


__all__ = [
    "GPU_MEMORY_HEADROOM",
    "TilePlan",
    "free_memory",
    "plan_tiles",
    "size_multiple",
    "ramp",
    "tiles_per_batch",
]
