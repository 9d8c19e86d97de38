"""Speed, memory and FLOP/s of SRN: the plain implementation against each fast path.

    python benchmarks/bench.py                      # CPU preset (this machine)
    python benchmarks/bench.py --preset gpu         # one call on an H100/H200
    python benchmarks/bench.py --preset smoke       # seconds; what the tests run

Measures, for each (model, fast path) case:
- inference latency of a whole image (720x1280 by default) and of a 12 MP photo through
  tiled inference (`srn_deblur.inference.deblur`), with peak memory;
- training throughput: 256x256 crops per second, forward, multi-scale loss, backward,
  ConvLSTM clipping and the Adam step, as `SRNLitModule` does them under Lightning;
- achieved FLOP/s from conv MACs counted on the network (1 MAC = 2 FLOP; a training step
  counted as 3 forward passes), next to a matmul FLOP/s measured in the same run;
- data-loader samples per second;
- each fast path's agreement with the plain path (max |difference| of the output, or the
  relative difference of the first training loss).

Cases run interleaved (one call of each case per round, rotating order) after warm-ups, and
the median over rounds is reported, so a noisy shared machine slows every case alike and the
ratios to the plain path stay meaningful. CUDA is synchronised around every timed call.
Results print as a table and go to a JSON file.
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import dataclasses
import datetime
import importlib.util
import json
import platform
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from functools import partial
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table
from torch import Tensor, nn

from srn_deblur.inference import deblur, tile_grid
from srn_deblur.module import SRNLitModule
from srn_deblur.network import SRNConfig, SRNDeblurNet

RESULTS_DIR = Path(__file__).resolve().parent / "results"

# Networks by name; SRNConfig's defaults are the release's `lstm` model (the paper's).
MODELS: dict[str, SRNConfig] = {
    "lstm": SRNConfig(),  # the paper's model: grey, ConvLSTM; colour images run as 3 planes
    "color_lstm": SRNConfig(channels=3),  # 3-channel with ConvLSTM (the CPU reference)
    "color": SRNConfig(channels=3, recurrence="none"),  # the release's default
    "gray": SRNConfig(recurrence="none"),
    # The CPU demo's network (configs/model/demo.yaml) and its earlier, deeper variant.
    "demo": SRNConfig(channels=3, widths=(16, 32, 64), num_res_blocks=0, residual=True),
    "demo_rb1": SRNConfig(channels=3, widths=(16, 32, 64), num_res_blocks=1, residual=True),
}


@dataclasses.dataclass(frozen=True)
class FastPath:
    """One combination of fast-path switches, as the training and inference configs name them.

    `cudnn_benchmark` is trainer.benchmark, `bf16` is trainer.precision=bf16-mixed,
    `channels_last` / `compile_mode` are model.channels_last / model.compile(_mode).
    """

    name: str
    channels_last: bool = False
    bf16: bool = False
    compile_mode: str | None = None
    cudnn_benchmark: bool = True
    inference_mode: bool = True
    onnx: bool = False


PATHS = {
    p.name: p
    for p in (
        # The plain implementation: float32, eager, channels-first, no_grad, no cudnn autotuning.
        FastPath("plain", cudnn_benchmark=False, inference_mode=False),
        FastPath("inference_mode", cudnn_benchmark=False),
        FastPath("cudnn_benchmark"),
        FastPath("channels_last", channels_last=True),
        FastPath("compile", compile_mode="default"),
        FastPath("bf16", bf16=True),
        FastPath("bf16_cl", channels_last=True, bf16=True),
        FastPath("compile_bf16_cl", channels_last=True, bf16=True, compile_mode="default"),
        # reduce-overhead = inductor + CUDA graphs (shapes are static in each case).
        FastPath("graphs_bf16_cl", channels_last=True, bf16=True, compile_mode="reduce-overhead"),
        # The exported ONNX graph under onnxruntime (CPU, float32).
        FastPath("onnx", onnx=True),
    )
}

PRESETS: dict[str, dict[str, Any]] = {
    # Sized for a 2-core CPU shared with others (about 10 minutes on one thread). torch.compile is
    # left out here: on this CPU it costs minutes of compilation per case (add it with --train
    # color_lstm:plain,compile_bf16_cl on a quiet machine).
    "cpu": {
        "infer": ["color_lstm:plain,channels_last,bf16,bf16_cl,onnx"],
        "train": ["color_lstm:plain,channels_last,bf16_cl", "lstm:plain,bf16_cl"],
        "tiled": ["color_lstm:bf16_cl"],
        "train_batch": 4,
        "warmup": 1,
        "repeats": 2,
        "tiled_repeats": 1,
        "matmul_size": 4096,
        "loader_workers": 2,
        "loader_batches": 10,
    },
    "gpu": {
        "infer": [
            "lstm:plain,cudnn_benchmark,channels_last,bf16,bf16_cl,compile_bf16_cl,graphs_bf16_cl",
            "color_lstm:plain,bf16_cl,graphs_bf16_cl",
        ],
        "train": ["lstm:plain,bf16_cl,graphs_bf16_cl", "color_lstm:plain,bf16_cl"],
        "tiled": ["lstm:bf16_cl", "color_lstm:bf16_cl"],
        "train_batch": 16,
        "warmup": 3,
        "repeats": 15,
        "tiled_repeats": 2,
        "matmul_size": 8192,
        "loader_workers": 8,
        "loader_batches": 30,
    },
    "smoke": {
        "net": ["widths=[4,8,8]", "num_res_blocks=1"],
        "infer": ["color_lstm:plain,channels_last,bf16_cl", "lstm:plain,bf16"],
        "train": ["color_lstm:plain,bf16_cl"],
        "tiled": ["color_lstm:plain"],
        "infer_size": "48x80",
        "tiled_size": "96x128",
        "tile": 64,
        "tile_overlap": 16,
        "crop": 32,
        "train_batch": 2,
        "warmup": 1,
        "repeats": 2,
        "tiled_repeats": 1,
        "matmul_size": 128,
        "loader_workers": 0,
        "loader_batches": 2,
        "loader_size": "96x128",
        "loader_pairs": 2,
    },
}

_DEFAULTS: dict[str, Any] = {
    "net": [],
    "infer_size": "720x1280",
    "tiled_size": "3000x4000",  # 12 MP
    "tile": 512,
    "tile_overlap": 64,
    "crop": 256,
    "loader_size": "720x1280",
    "loader_pairs": 16,
}


# ----------------------------------------------------------------------------- measuring


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rss_mib() -> tuple[float, float]:
    """(current RSS, peak RSS since the last reset) of this process, MiB (Linux)."""
    status = Path("/proc/self/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
    hwm = int(re.search(r"VmHWM:\s+(\d+)", status).group(1))
    return rss / 1024, hwm / 1024


def _reset_peak(device: torch.device) -> float:
    """Start a peak-memory window; returns the memory in use now (MiB)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device) / 2**20
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed heap back, so RSS is what is live
    except OSError:
        pass
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    except OSError:
        pass
    return _rss_mib()[0]


def _peak(device: torch.device) -> float:
    """Peak memory since `_reset_peak`: CUDA max allocated, or the process's max RSS (MiB)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return _rss_mib()[1]


@dataclasses.dataclass
class Case:
    """One timed thing: a callable and what it counts."""

    task: str
    model: str
    path: FastPath
    shape: str
    fn: Callable[[], Any]
    work: float  # FLOP per call
    items: int  # images or crops per call
    compare: Callable[[Any, Any], float] | None = None
    times: list[float] = dataclasses.field(default_factory=list)
    first_output: Any = None
    first_call_s: float | None = None
    setup_s: float = 0.0
    peak_mib: float = 0.0
    working_mib: float = 0.0

    def call(self, device: torch.device, timed: bool) -> None:
        base = _reset_peak(device)
        _sync(device)
        start = time.perf_counter()
        out = self.fn()
        _sync(device)
        elapsed = time.perf_counter() - start
        peak = _peak(device)
        self.peak_mib = max(self.peak_mib, peak)
        self.working_mib = max(self.working_mib, peak - base)
        if self.first_output is None:
            self.first_output = out
            self.first_call_s = elapsed
        if timed:
            self.times.append(elapsed)


def run_interleaved(cases: Sequence[Case], device: torch.device, warmup: int, repeats: int) -> None:
    """Warm every case up, then time one call of each case per round, rotating the order."""
    for case in cases:
        for _ in range(warmup):
            case.call(device, timed=False)
    for round_ in range(repeats):
        shift = round_ % len(cases)
        for case in list(cases[shift:]) + list(cases[:shift]):
            case.call(device, timed=True)


def matmul_flops(device: torch.device, dtype: torch.dtype, n: int, repeats: int = 5) -> float:
    """Best FLOP/s of an n x n matmul over `repeats` calls: the machine's practical limit per dtype."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    times = []
    for i in range(repeats + 2):
        _sync(device)
        start = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        if i >= 2:
            times.append(time.perf_counter() - start)
    return 2 * n**3 / min(times)


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


# ----------------------------------------------------------------------------- building cases


def _parse_size(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)x(\d+)", text)
    if not match:
        raise SystemExit(f"sizes are HEIGHTxWIDTH, e.g. 720x1280; got {text!r}")
    return int(match.group(1)), int(match.group(2))


def _parse_specs(specs: Sequence[str]) -> list[tuple[str, list[FastPath]]]:
    """`model:path,path` -> [(model, [FastPath, ...])], with unknown names refused by name."""
    parsed = []
    for spec in specs:
        if spec == "none":
            continue
        model, _, paths = spec.partition(":")
        if model not in MODELS:
            raise SystemExit(f"unknown model {model!r} in {spec!r}; choose from {sorted(MODELS)}")
        names = [p for p in paths.split(",") if p] or ["plain"]
        unknown = [p for p in names if p not in PATHS]
        if unknown:
            raise SystemExit(f"unknown fast path(s) {unknown} in {spec!r}; choose from {list(PATHS)}")
        parsed.append((model, [PATHS[p] for p in names]))
    return parsed


def _parse_net_overrides(items: Sequence[str]) -> dict[str, Any]:
    """`key=value` pairs for SRNDeblurNet, values parsed as JSON (e.g. `widths=[4,8,8]`)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--net takes key=value, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def build_network(model: str, overrides: dict[str, Any], seed: int = 0) -> SRNDeblurNet:
    torch.manual_seed(seed)
    return SRNDeblurNet(MODELS[model], **overrides)


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
    if tile is not None:  # tiles overlap: count the pixels the network really runs on
        side, tops, lefts = tile_grid(height, width, tile, overlap, net.padded_length(1))
        macs = count_macs(net, (1, 3, side, side)) * len(tops) * len(lefts)
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


# ----------------------------------------------------------------------------- reporting


def machine_info(device: torch.device) -> dict[str, Any]:
    info = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "host": platform.node(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": str(device),
    }
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        info["cpu"] = re.search(r"model name\s*:\s*(.*)", cpuinfo).group(1)
        info["cpu_cores"] = cpuinfo.count("processor\t:")
        info["amx_bf16"] = "amx_bf16" in cpuinfo
    except (OSError, AttributeError):
        info["cpu"] = platform.processor()
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["gpu_memory_gib"] = round(torch.cuda.get_device_properties(device).total_memory / 2**30, 1)
    return info


def _row(case: Case, plain: Case | None, matmul: dict[str, float]) -> dict[str, Any]:
    median = statistics.median(case.times)
    row = {
        "task": case.task,
        "model": case.model,
        "path": case.path.name,
        "shape": case.shape,
        "median_s": median,
        "best_s": min(case.times),
        "times_s": case.times,
        "items_per_s": case.items / median,
        "gflop_per_call": case.work / 1e9,
        "gflops": case.work / median / 1e9,
        "matmul_gflops": matmul["bf16" if case.path.bf16 else "fp32"] / 1e9,
        "peak_mib": case.peak_mib,
        "working_mib": case.working_mib,
        "setup_s": case.setup_s,
        "first_call_s": case.first_call_s,
    }
    row["of_matmul"] = row["gflops"] / row["matmul_gflops"]
    if plain is not None:
        row["speedup_vs_plain"] = statistics.median(plain.times) / median
        # On a shared machine the fastest call is the least disturbed one: its ratio is steadier.
        row["speedup_vs_plain_best"] = min(plain.times) / row["best_s"]
        if case.compare is not None and case is not plain:
            row["agreement"] = case.compare(case.first_output, plain.first_output)
    return row


def _seconds(t: float) -> str:
    return f"{t * 1e3:.1f} ms" if t < 1 else f"{t:.2f} s"


def _table(title: str, rows: Sequence[dict[str, Any]], unit: str, device: torch.device) -> Table:
    memory = "peak CUDA alloc" if device.type == "cuda" else "peak RSS"
    table = Table(title=title)
    columns = ("model", "path", "shape", "median", "best", unit, "vs plain", "best vs plain", "GFLOP/s",
               "of matmul", memory, "working", "agreement")
    for col in columns:
        table.add_column(col, justify="left" if col in ("model", "path", "shape") else "right")
    for r in rows:
        agreement = r.get("agreement")
        table.add_row(
            r["model"],
            r["path"],
            r["shape"],
            _seconds(r["median_s"]),
            _seconds(r["best_s"]),
            f"{r['items_per_s']:.3g}",
            f"{r['speedup_vs_plain']:.2f}x" if "speedup_vs_plain" in r else "",
            f"{r['speedup_vs_plain_best']:.2f}x" if "speedup_vs_plain_best" in r else "",
            f"{r['gflops']:.0f}",
            f"{100 * r['of_matmul']:.0f}%",
            f"{r['peak_mib']:.0f} MiB",
            f"{r['working_mib']:.0f} MiB",
            "" if agreement is None else f"{agreement:.1e}",
        )
    return table


def markdown_report(results: dict[str, Any]) -> str:
    """The run's tables as markdown, for benchmarks/RESULTS.md."""
    m = results["machine"]
    where = m.get("gpu") or f"{m.get('cpu')} ({m.get('cpu_cores')} cores)"
    lines = [
        f"Measured {m['date']} on {where}, {m['device']}, torch {m['torch']}, {m['threads']} threads.",
        "",
        "matmul: " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in results.get("matmul_gflops", {}).items()),
    ]
    if results["rows"]:
        lines += [
            "",
            "| task | model | path | shape | median | best | per s | vs plain | best vs plain | GFLOP/s"
            " | of matmul | peak mem | working | agreement |",
            "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
    for r in results["rows"]:
        speedup = f"{r['speedup_vs_plain']:.2f}x" if "speedup_vs_plain" in r else ""
        best_speedup = f"{r['speedup_vs_plain_best']:.2f}x" if "speedup_vs_plain_best" in r else ""
        agreement = f"{r['agreement']:.1e}" if r.get("agreement") is not None else ""
        lines.append(
            f"| {r['task']} | {r['model']} | {r['path']} | {r['shape']} | {_seconds(r['median_s'])} |"
            f" {_seconds(r['best_s'])} | {r['items_per_s']:.3g} | {speedup} | {best_speedup} |"
            f" {r['gflops']:.0f} | {100 * r['of_matmul']:.0f}% | {r['peak_mib']:.0f} MiB |"
            f" {r['working_mib']:.0f} MiB | {agreement} |"
        )
    if "loader" in results:
        loader = results["loader"]
        crop = loader["plain"]["crop"]
        lines += ["", f"data loader ({loader['workers']} workers, batch {loader['plain']['batch']} of"
                  f" {crop}x{crop}, {loader['data']}): plain (decode PNGs)"
                  f" {loader['plain']['samples_per_s']:.1f} samples/s, fast path (memory-mapped cache)"
                  f" {loader['fast']['samples_per_s']:.1f} samples/s"]
    if results.get("targets"):
        lines += ["", *[f"- {t}" for t in results["targets"]]]
    return "\n".join(lines) + "\n"


def _targets(results: dict[str, Any]) -> list[str]:
    """The issue's targets, checked against this run's rows."""
    rows, device = results["rows"], results["machine"]["device"]

    def find(task: str, model: str, path: str) -> dict[str, Any] | None:
        return next((r for r in rows if (r["task"], r["model"], r["path"]) == (task, model, path)), None)

    lines = []
    fp32_paths = ("inference_mode", "channels_last", "compile", "cudnn_benchmark")
    for task in ("infer", "train"):
        for model in sorted({r["model"] for r in rows if r["task"] == task}):
            plain = find(task, model, "plain")
            fast = [r for r in rows if r["task"] == task and r["model"] == model and r["path"] in fp32_paths]
            if plain and fast:
                best = min(fast, key=lambda r: r["median_s"])
                verdict = "met" if best["median_s"] <= plain["median_s"] else "not by this path: keep plain"
                lines.append(
                    f"{task} {model} float32: fastest fp32 fast path {best['path']} {best['median_s']:.3g} s"
                    f" vs plain {plain['median_s']:.3g} s ({best['speedup_vs_plain']:.2f}x by medians,"
                    f" {best['speedup_vs_plain_best']:.2f}x by best calls; target no slower: {verdict})"
                )
    if device.startswith("cuda"):
        for model, limit in (("lstm", 0.040), ("color_lstm", 0.015)):
            bf16 = [r for r in rows if (r["task"], r["model"]) == ("infer", model) and "bf16" in r["path"]]
            best = min(bf16, key=lambda r: r["median_s"], default=None)
            if best:
                ok = "met" if best["median_s"] <= limit else "MISSED"
                lines.append(f"infer {model} bf16 {best['shape']}: {best['median_s'] * 1e3:.1f} ms"
                             f" ({best['path']}; target <= {limit * 1e3:.0f} ms: {ok})")
        best = max((r for r in rows if r["task"] == "train" and "bf16" in r["path"] and r["model"] == "lstm"),
                   key=lambda r: r["items_per_s"], default=None)
        if best:
            ok = "met" if best["items_per_s"] >= 200 else "MISSED"
            hours = 263_000 * 16 / best["items_per_s"] / 3600
            lines.append(f"train lstm bf16 {best['shape']}: {best['items_per_s']:.0f} crops/s"
                         f" ({best['path']}; target >= 200: {ok});"
                         f" the paper's 263,000 steps of 16 would take {hours:.1f} h")
            loader = results.get("loader")
            if loader:
                enough = "met" if loader["samples_per_s"] >= best["items_per_s"] else "MISSED"
                lines.append(f"loader {loader['samples_per_s']:.0f} samples/s vs training"
                             f" {best['items_per_s']:.0f} crops/s: {enough}")
    for r in rows:
        if r["task"] == "tiled":
            if device.startswith("cuda"):
                target = "CUDA max allocated"
            else:
                target = f"target <= 4096 MiB on CPU: {'met' if r['peak_mib'] <= 4096 else 'MISSED'}"
            lines.append(f"tiled {r['model']} {r['path']} {r['shape']}: peak {r['peak_mib']:.0f} MiB"
                         f" ({target}), {r['median_s']:.3g} s")
    return lines


# ----------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), help="defaults for a machine kind (cpu, gpu)")
    parser.add_argument("--device", help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--infer", action="append", metavar="MODEL:PATH,...",
                        help=f"whole-image inference cases ('none' skips the task, as for --train and"
                        f" --tiled); models {sorted(MODELS)}, paths {list(PATHS)}")
    parser.add_argument("--train", action="append", metavar="MODEL:PATH,...", help="training-step cases")
    parser.add_argument("--tiled", action="append", metavar="MODEL:PATH,...", help="tiled 12 MP cases")
    parser.add_argument("--net", action="append", metavar="KEY=VALUE",
                        help="network overrides, e.g. widths=[4,8,8]")
    parser.add_argument("--infer-size", help="whole-image size HxW (720x1280)")
    parser.add_argument("--tiled-size", help="tiled photo size HxW (3000x4000 = 12 MP)")
    parser.add_argument("--tile", type=int, help="tile side for tiled inference (512)")
    parser.add_argument("--tile-overlap", type=int, help="tile overlap in pixels (64)")
    parser.add_argument("--crop", type=int, help="training crop side (256)")
    parser.add_argument("--train-batch", type=int, help="training batch (16 on GPU as in the paper)")
    parser.add_argument("--warmup", type=int, help="untimed calls per case before timing")
    parser.add_argument("--repeats", type=int, help="timed rounds; the median is reported")
    parser.add_argument("--tiled-repeats", type=int, help="timed rounds of the tiled cases")
    parser.add_argument("--matmul-size", type=int, help="side of the reference matmul")
    parser.add_argument("--loader-workers", type=int, help="data-loader workers (-1 skips the loader)")
    parser.add_argument("--loader-batches", type=int, help="batches timed from the loader")
    parser.add_argument("--loader-data", type=Path, help="GOPRO-layout folder (default: a synthetic set)")
    parser.add_argument("--loader-size", help="size HxW of generated GOPRO-like pairs (720x1280)")
    parser.add_argument("--loader-pairs", type=int, help="how many pairs to generate (16)")
    parser.add_argument("--threads", type=int, help="CPU threads for torch and onnxruntime (torch's default)")
    parser.add_argument("--json", type=Path, help="where to write the results (default benchmarks/results/);"
                        " a markdown copy of the tables goes next to it")
    args = parser.parse_args(argv)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda asked for, but torch sees no CUDA device")
    preset = PRESETS[args.preset or ("gpu" if device.startswith("cuda") else "cpu")]
    for key, value in {**_DEFAULTS, **preset}.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.device = device
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    console = Console(width=200)
    overrides = _parse_net_overrides(args.net)
    specs = {task: _parse_specs(getattr(args, task)) for task in ("infer", "train", "tiled")}
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out_path = args.json or RESULTS_DIR / f"{device.type}-{stamp}.json"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "machine": machine_info(device), "args": {k: str(v) for k, v in vars(args).items()}, "rows": []
    }
    began = time.perf_counter()

    def save(phase: str) -> None:
        results["phases_done"] = results.get("phases_done", []) + [phase]
        out_path.write_text(json.dumps(results, indent=2, default=str))
        out_path.with_suffix(".md").write_text(markdown_report(results))
        console.print(f"[{time.perf_counter() - began:.0f} s] {phase} done -> {out_path}")

    matmul = {"fp32": matmul_flops(device, torch.float32, args.matmul_size),
              "bf16": matmul_flops(device, torch.bfloat16, args.matmul_size)}
    results["matmul_gflops"] = {k: v / 1e9 for k, v in matmul.items()}
    console.print(f"matmul {args.matmul_size}^2: fp32 {matmul['fp32'] / 1e9:.0f} GFLOP/s,"
                  f" bf16 {matmul['bf16'] / 1e9:.0f} GFLOP/s")
    save("matmul")

    with tempfile.TemporaryDirectory(prefix="srn-bench-") as tmp:
        phases = (
            ("infer", "whole-image inference", "images/s", args.repeats, args.warmup),
            ("train", "training steps", "crops/s", args.repeats, args.warmup),
            # A tiled photo runs many tiles, so its first call is already warm.
            ("tiled", "tiled inference", "images/s", args.tiled_repeats, 0),
        )
        for task, title, unit, repeats, warmup in phases:
            for model, paths in specs[task]:
                net = build_network(model, overrides)
                cases = []
                for path in paths:
                    if task == "train":
                        if path.onnx or path.name == "inference_mode":
                            raise SystemExit(f"{path.name} is an inference-only path; not a training case")
                        cases.append(training_case(model, net, path, device, args.train_batch, args.crop))
                    else:
                        size = _parse_size(args.infer_size if task == "infer" else args.tiled_size)
                        tile = args.tile if task == "tiled" else None
                        cases.append(inference_case(task, model, net, path, device, size, tile,
                                                    args.tile_overlap, Path(tmp)))
                run_interleaved(cases, device, warmup, repeats)
                plain = next((c for c in cases if c.path.name == "plain"), None)
                rows = [_row(c, plain, matmul) for c in cases]
                results["rows"].extend(rows)
                shown = f"{title}, {model}"
                if task == "tiled":
                    shown += f", tiles {args.tile}/{args.tile_overlap}"
                console.print(_table(shown, rows, unit, device))
                del cases, plain
                save(f"{task} {model}")

    if args.loader_workers >= 0:
        channels = 1 if any(m in ("lstm", "gray") for m, _ in specs["train"]) else 3
        try:
            loader = results["loader"] = measure_data_loader(
                args.loader_workers, args.train_batch, args.crop, args.loader_batches, args.loader_data,
                _parse_size(args.loader_size), args.loader_pairs, channels, pin_memory=device.type == "cuda",
            )
        except ModuleNotFoundError as exc:  # e.g. a GPU image without the project's data dependencies
            results["loader_error"] = f"loader not measured: {exc}; pip install -e . (albumentations, opencv)"
            console.print(results["loader_error"])
            loader = None
        if loader:
            console.print(f"data loader, {loader['workers']} workers, {loader['data']}: plain (decode"
                          f" PNGs) {loader['plain']['samples_per_s']:.1f} samples/s, fast path (memory-mapped"
                          f" cache) {loader['fast']['samples_per_s']:.1f} samples/s")
        save("loader")

    results["targets"] = _targets(results)
    for line in results["targets"]:
        console.print(line)
    save("targets")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
