"""The timed cases of the benchmark: whole-image and tiled inference, a training step, the loader.

Each case builds its network or module once per fast path and returns a `harness.Case` to time.
"""

from __future__ import annotations

import copy
import importlib.util
import sys
import tempfile
import time
from contextlib import nullcontext
from functools import partial
from pathlib import Path
from typing import Any

import torch
from harness import Case, FastPath
from torch import Tensor, nn

from srn_deblur.flops import count_macs
from srn_deblur.inference import deblur, plan_tiles
from srn_deblur.module import SRNLitModule


def _module(net: nn.Module, path: FastPath, device: torch.device) -> SRNLitModule:
    """The network with its fast-path switches applied the way training applies them."""
    module = SRNLitModule(
        copy.deepcopy(net),
        optimizer=partial(torch.optim.Adam, lr=1e-4, betas=(0.9, 0.999), eps=1e-8),
        channels_last=path.channels_last,
        compile=path.compile_mode is not None,
        compile_mode=path.compile_mode or "default",
    ).to(device)
    module.setup("fit")
    return module


def _autocast(path: FastPath, device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16) if path.bf16 else nullcontext()


def _max_abs_diff(a: Tensor, b: Tensor) -> float:
    return float((torch.as_tensor(a).float().cpu() - torch.as_tensor(b).float().cpu()).abs().max())


def _prepare(path: FastPath, device: torch.device) -> None:
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = path.cudnn_benchmark


def inference_case(
    task: str,
    model: str,
    net: nn.Module,
    path: FastPath,
    device: torch.device,
    size: tuple[int, int],
    tile: int | None,
    overlap: int,
    workdir: Path,
) -> Case:
    """Deblur one RGB image of `size`, whole (`tile=None`) or in tiles, on `path`."""
    height, width = size
    x = torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(1))
    macs = count_macs(net, (1, 3, height, width))
    plan = plan_tiles(height, width, tile, overlap, align=net.padded_length(1))
    if not plan.whole:  # tiles overlap: count the pixels the network really runs on
        macs = count_macs(net, (1, 3, plan.tile, plan.tile)) * plan.count
    start = time.perf_counter()
    if path.onnx:
        if tile is not None:
            raise SystemExit("the onnx path runs whole images only")
        from srn_deblur.export import export_onnx, onnx_session

        onnx_file = workdir / f"{model}-{height}x{width}.onnx"
        export_onnx(copy.deepcopy(net).float().cpu(), onnx_file, height, width)
        session = onnx_session(onnx_file, torch.get_num_threads())
        x_np = x.numpy()

        def fn() -> Tensor:
            return torch.from_numpy(session.run(None, {"blurry": x_np})[0])

    else:
        module = _module(net, path, device)
        net_p = module.net.eval()
        x = x.to(device)
        if path.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)

        def fn() -> Tensor:
            _prepare(path, device)
            with _autocast(path, device):
                if not path.inference_mode:  # the plain implementation
                    with torch.no_grad():
                        return net_p(x)[-1].float().clamp(0.0, 1.0)
                return deblur(net_p, x, tile_size=tile, tile_overlap=overlap)

    case = Case(task, model, path, f"{height}x{width}", fn, 2.0 * macs, 1, _max_abs_diff)
    case.setup_s = time.perf_counter() - start
    return case


def training_case(
    model: str, net: nn.Module, path: FastPath, device: torch.device, batch: int, crop: int
) -> Case:
    """One optimizer step on a batch of random crops (grey for 1-channel models)."""
    module = _module(net, path, device)
    optimizer = module.optimizer_factory(params=module.net.parameters())
    channels = net.channels
    generator = torch.Generator().manual_seed(2)
    sharp = torch.rand(batch, channels, crop, crop, generator=generator)
    blurry = (sharp + 0.1 * torch.randn(sharp.shape, generator=generator)).clamp(0, 1)
    blurry, sharp = module.on_after_batch_transfer([blurry.to(device), sharp.to(device)], 0)

    def fn() -> Tensor:
        _prepare(path, device)
        with _autocast(path, device):
            loss, _ = module.model_step((blurry, sharp))
        loss.backward()
        module.configure_gradient_clipping(optimizer)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach().float().cpu()

    def compare(a: Tensor, b: Tensor) -> float:  # relative difference of the first loss
        return float(abs(a - b) / abs(b))

    macs = count_macs(net, (batch, channels, crop, crop))
    return Case("train", model, path, f"{batch}x{crop}x{crop}", fn, 3 * 2.0 * macs, batch, compare)


# ----------------------------------------------------------------------------- data loader


def _sibling(name: str) -> Any:
    """A script beside this one (benchmarks/ is a folder of scripts, not a package)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def measure_data_loader(
    workers: int,
    batch: int,
    crop: int,
    batches: int,
    data_dir: Path | None,
    size: tuple[int, int],
    pairs: int,
    channels: int,
    pin_memory: bool,
) -> dict[str, Any]:
    """Training samples/s of the loader, plain (decode PNGs) and fast path (memory-mapped cache).

    Uses `benchmarks/bench_loader.py`; without `data_dir` it generates GOPRO-like pairs of `size`.
    """
    bench_loader = _sibling("bench_loader")
    with tempfile.TemporaryDirectory(prefix="srn-bench-loader-") as tmp:
        data = data_dir or bench_loader.make_gopro_like_set(Path(tmp) / "gopro_like", pairs, size)
        common = dict(workers=workers, batch=batch, crop=crop, batches=batches, channels=channels,
                      pin_memory=pin_memory)
        plain = bench_loader.measure_loader(data, **common)
        fast = bench_loader.measure_loader(data, cache_dir=Path(tmp) / "cache", **common)
    return {"samples_per_s": fast["samples_per_s"], "workers": workers, "plain": plain, "fast": fast,
            "data": str(data_dir or f"{pairs} generated pairs of {size[0]}x{size[1]}")}
