"""Timing and memory for the benchmarks: interleaved rounds of cases, peaks, the machine.

Cases run interleaved (one call of each case per round, rotating order) after warm-ups, so a
noisy shared machine slows every case alike and ratios measured in one run stay meaningful.
"""

from __future__ import annotations

import ctypes
import dataclasses
import datetime
import platform
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch


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
