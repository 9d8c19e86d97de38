"""Loading trained networks and deblurring images of any size, whole or in tiles.

Shared by evaluation, the web app, benchmarks and export, so there is one loader with one set
of error messages and one tiling scheme.
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from srn_deblur.network import SRNDeblurNet


class CheckpointError(ValueError):
    """A checkpoint that cannot be turned into the requested network."""


def _read_checkpoint(path: Path) -> Mapping[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; pass the .ckpt that train.py wrote")
    try:
        # weights_only: plain tensors and containers only, never arbitrary pickled objects.
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError) as exc:
        raise CheckpointError(
            f"cannot load checkpoint {path}: the file is corrupt, truncated, not a PyTorch"
            f" checkpoint, or holds objects that are not plain weights ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''})"
        ) from exc
    if not isinstance(data, Mapping):
        raise CheckpointError(f"checkpoint {path} holds a {type(data).__name__}, not a state dict")
    return data


def network_state_dict(checkpoint: Mapping[str, Any]) -> dict[str, Tensor]:
    """The network's weights from a Lightning checkpoint (`net.` prefix) or a bare state dict."""
    state = checkpoint.get("state_dict", checkpoint)
    if any(k.startswith("net.") for k in state):
        state = {k[len("net.") :]: v for k, v in state.items() if k.startswith("net.")}
    return {k.removeprefix("_orig_mod."): v for k, v in state.items() if isinstance(v, Tensor)}


def load_network(
    path: str | Path,
    net: nn.Module | None = None,
    net_config: Mapping[str, Any] | None = None,
    map_location: str | torch.device = "cpu",
) -> nn.Module:
    """Build and load a network from a checkpoint written by `train.py` or a bare state dict.

    The architecture comes from, in order: `net` (an already built network), `net_config`,
    or the `net_config` that `train.py` stores in every checkpoint. A bare state dict needs
    one of the first two. The weights must fit exactly; a checkpoint of another architecture
    gets an error that lists what differs.
    """
    path = Path(path).expanduser()
    checkpoint = _read_checkpoint(path)
    if net is None:
        config = net_config or checkpoint.get("net_config")
        if config is None:
            raise CheckpointError(
                f"{path} is a bare state dict with no network config; pass net_config (the"
                " model.net settings it was trained with) or a checkpoint written by train.py"
            )
        net = SRNDeblurNet(**dict(config))
    state = network_state_dict(checkpoint)
    own = net.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or mismatched:
        details = []
        if missing:
            details.append(f"missing {len(missing)} tensors (e.g. {missing[0]})")
        if unexpected:
            details.append(f"{len(unexpected)} unexpected tensors (e.g. {unexpected[0]})")
        if mismatched:
            k = mismatched[0]
            details.append(
                f"{len(mismatched)} tensors of another shape (e.g. {k}: checkpoint"
                f" {tuple(state[k].shape)}, network {tuple(own[k].shape)})"
            )
        raise CheckpointError(
            f"checkpoint {path} does not fit this network: {'; '.join(details)}. It was trained"
            " with another architecture: use the model config it was trained with."
        )
    net.load_state_dict(state)
    return net.to(map_location).eval()


def save_network(net: nn.Module, path: str | Path) -> Path:
    """Save `net` in the layout `train.py` checkpoints use (`net.`-prefixed weights plus
    `net_config`), so `load_network` reads it; for exports, tests and tools."""
    path = Path(path)
    state = {f"net.{k}": v for k, v in net.state_dict().items()}
    torch.save({"state_dict": state, "net_config": dict(getattr(net, "config", {}))}, path)
    return path


def _ramp(length: int, overlap: int, device: torch.device) -> Tensor:
    """1D blending weights: rising linearly over `overlap` pixels at both ends, never zero."""
    pos = torch.arange(length, device=device, dtype=torch.float32)
    ramp = torch.minimum(pos + 1, length - pos) / max(overlap, 1)
    return ramp.clamp(1e-3, 1.0)


def _starts(length: int, tile: int, stride: int) -> list[int]:
    """Tile positions, all multiples of `stride` (itself a multiple of the network's size
    multiple); the last tile may be shorter and stop at the image edge, never shift off-grid."""
    return list(range(0, max(length - tile, 0) + stride, stride)) if length > tile else [0]


@torch.inference_mode()
def deblur(
    net: nn.Module,
    blurry: Tensor,
    tile_size: int | None = None,
    tile_overlap: int = 64,
    max_pixels: int | None = None,
) -> Tensor:
    """Deblur `(N, C, H, W)` images in [0, 1]; returns the finest estimate clamped to [0, 1].

    When to tile: with `max_pixels` set, only images of more than `max_pixels` pixels are
    tiled (with `tile_size`, default 512); without it, `tile_size` alone forces tiling and no
    `tile_size` means whole-image inference. Tiles overlap by `tile_overlap` pixels and
    are blended with linear ramps, so peak memory depends on the tile size, not the photo.
    Tile positions are multiples of the network's size multiple (16 for 3 scales), so each
    tile sees the same coarse-scale sampling grid as the whole image would.
    """
    if blurry.dim() != 4:
        raise ValueError(f"expected (N, C, H, W) images, got shape {tuple(blurry.shape)}")
    n, c, h, w = blurry.shape
    if max_pixels is not None:
        tile_size = (tile_size or 512) if h * w > max_pixels else None
    if tile_size is None or (h <= tile_size and w <= tile_size):
        return net(blurry)[-1].float().clamp(0.0, 1.0)

    align = net.padded_length(1) if hasattr(net, "padded_length") else 16
    tile, tops, lefts = tile_grid(h, w, tile_size, tile_overlap, align)
    _, overlap = _tile_geometry(tile_size, tile_overlap, align)
    out = torch.zeros(n, c, h, w, dtype=torch.float32, device=blurry.device)
    weight = torch.zeros(1, 1, h, w, dtype=torch.float32, device=blurry.device)
    for top in tops:
        for left in lefts:
            patch = blurry[..., top : top + tile, left : left + tile]
            ph, pw = patch.shape[-2:]
            result = net(patch)[-1].float()  # (N, C, ph, pw)
            wy = _ramp(ph, overlap, blurry.device) if h > tile else torch.ones(ph, device=blurry.device)
            wx = _ramp(pw, overlap, blurry.device) if w > tile else torch.ones(pw, device=blurry.device)
            wt = (wy[:, None] * wx[None, :])[None, None]  # (1, 1, ph, pw)
            out[..., top : top + ph, left : left + pw] += result * wt
            weight[..., top : top + ph, left : left + pw] += wt
    return out.div_(weight).clamp_(0.0, 1.0)  # in place: no extra full-size copies


def _tile_geometry(tile_size: int, tile_overlap: int, align: int) -> tuple[int, int]:
    """Tile side and overlap rounded down to multiples of `align`; the overlap stays below the tile."""
    tile = max(align, (tile_size // align) * align)
    return tile, min((tile_overlap // align) * align, tile - align)


def tile_grid(height: int, width: int, tile_size: int, tile_overlap: int = 64, align: int = 16) -> tuple[int, list[int], list[int]]:
    """The tile side and the top and left tile positions `deblur` uses for an image size."""
    tile, overlap = _tile_geometry(tile_size, tile_overlap, align)
    stride = tile - overlap
    return tile, _starts(height, tile, stride), _starts(width, tile, stride)


def tile_count(height: int, width: int, tile_size: int, tile_overlap: int = 64, align: int = 16) -> int:
    """How many tiles `deblur` runs for an image of this size (for progress reporting)."""
    _, tops, lefts = tile_grid(height, width, tile_size, tile_overlap, align)
    return len(tops) * len(lefts)


__all__ = ["CheckpointError", "deblur", "load_network", "network_state_dict", "save_network", "tile_count", "tile_grid"]
