"""Loading trained networks and deblurring images of any size, whole or in tiles: the one
inference path.

Shared by evaluation, the web app, `deblur.py`, benchmarks and export, so there is one loader
with one set of error messages, one tiling scheme (`srn_deblur.tiling`) and one fast path
(precision and channels-last, `srn_deblur.devices`).
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from srn_deblur.devices import autocast, resolve_precision
from srn_deblur.network import SRNDeblurNet
from srn_deblur.tiling import (
    TilePlan,
    free_memory,
    plan_tiles,
    ramp,
    size_multiple,
    tiles_per_batch,
)


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
    gets an error that lists what differs. A network built here comes back on `map_location`
    in eval mode, ready for inference; a given `net` only gets the weights, its device and
    train/eval mode stay the caller's (fine-tuning loads into a network about to train).
    """
    path = Path(path).expanduser()
    checkpoint = _read_checkpoint(path)
    given = net is not None
    if not given:
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
    return net if given else net.to(map_location).eval()


def save_network(net: nn.Module, path: str | Path) -> Path:
    """Save `net` in the layout `train.py` checkpoints use (`net.`-prefixed weights plus
    `net_config`), so `load_network` reads it; for exports, tests and tools."""
    path = Path(path)
    state = {f"net.{k}": v for k, v in net.state_dict().items()}
    torch.save({"state_dict": state, "net_config": dict(getattr(net, "config", {}))}, path)
    return path


@torch.inference_mode()
def deblur(
    net: nn.Module,
    blurry: Tensor,
    tile_size: int | None = None,
    tile_overlap: int = 64,
    max_pixels: int | None = None,
    *,
    precision: str = "fp32",
    channels_last: bool = False,
    batch_tiles: int | str = "auto",
    on_tile: Callable[[int, int], None] | None = None,
) -> Tensor:
    """Deblur `(N, C, H, W)` images in [0, 1]; returns the finest estimate, float32 in [0, 1].

    Tiling follows `plan_tiles(H, W, tile_size, tile_overlap, max_pixels)`: tiles overlap by
    `tile_overlap` pixels and are blended with linear ramps, so peak memory depends on the tile
    size, not the photo. The fast path: `precision` (`auto`, `fp32`, `bf16`, `fp16`; see
    `srn_deblur.devices.resolve_precision`) runs the network under autocast, `channels_last`
    converts it (in place, once) and its inputs to channels-last memory. `batch_tiles` tiles of
    one shape run per pass: `auto` = 1 on the CPU, and on CUDA as many as the free memory
    (`torch.cuda.mem_get_info`) holds, measured from the first tile's peak. `on_tile(done,
    total)` is called after each pass with the tiles done so far (progress counters).
    """
    if blurry.dim() != 4:
        raise ValueError(f"expected (N, C, H, W) images, got shape {tuple(blurry.shape)}")
    n, c, h, w = blurry.shape
    device = blurry.device
    precision = resolve_precision(precision, device)
    if channels_last:
        net.to(memory_format=torch.channels_last)
    plan = plan_tiles(h, w, tile_size, tile_overlap, max_pixels, size_multiple(net))

    def run(x: Tensor) -> Tensor:  # (B, C, h, w) -> (B, C, h, w) float32
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(precision, device):
            return net(x)[-1].float()

    if plan.whole:
        out = run(blurry).clamp_(0.0, 1.0)
        if on_tile is not None:
            on_tile(1, 1)
        return out.contiguous()

    out = torch.zeros(n, c, h, w, dtype=torch.float32, device=device)
    weight = torch.zeros(1, 1, h, w, dtype=torch.float32, device=device)
    ones = {length: torch.ones(length, device=device) for length in (h, w)}

    def blend(positions: list[tuple[int, int]]) -> None:
        ph, pw = plan.tile_shape(*positions[0])
        patches = [blurry[..., t : t + ph, left : left + pw] for t, left in positions]
        result = run(torch.cat(patches))  # (len(positions) * N, C, ph, pw)
        wy = ramp(ph, plan.overlap, device) if h > plan.tile else ones[h]
        wx = ramp(pw, plan.overlap, device) if w > plan.tile else ones[w]
        wt = (wy[:, None] * wx[None, :])[None, None]  # (1, 1, ph, pw)
        for k, (top, left) in enumerate(positions):
            out[..., top : top + ph, left : left + pw] += result[k * n : (k + 1) * n] * wt
            weight[..., top : top + ph, left : left + pw] += wt

    done, skip = 0, set()
    size = 1 if batch_tiles == "auto" else int(batch_tiles)
    if batch_tiles == "auto" and device.type == "cuda" and plan.count > 1:
        # One tile alone first: its peak memory, over the free memory, sizes the batches.
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        first = plan.positions[0]
        blend([first])
        done, skip = 1, {first}
        peak = torch.cuda.max_memory_allocated(device) - before
        size = tiles_per_batch(plan.count - 1, peak, free_memory(device) or 0)
        if on_tile is not None:
            on_tile(done, plan.count)
    for group in plan.batches(size, skip):
        blend(group)
        done += len(group)
        if on_tile is not None:
            on_tile(done, plan.count)
    return out.div_(weight).clamp_(0.0, 1.0)  # in place: no extra full-size copies


__all__ = [
    "CheckpointError",
    "TilePlan",
    "deblur",
    "load_network",
    "network_state_dict",
    "plan_tiles",
    "save_network",
]
