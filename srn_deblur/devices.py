"""Where the network runs and in which number format: one `resolve_device`, one `resolve_precision`.

Every entry point (evaluation, the web app, `deblur.py`, benchmarks) resolves `device=auto` and
`precision=auto` here, so they agree on what a machine gets.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# /proc/cpuinfo flags of x86 units that multiply bf16 natively (Intel AMX, AVX-512 BF16).
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
# torch's CPU capability levels whose kernels (oneDNN) use those units.
_BF16_CAPABILITIES = ("AVX512_BF16", "AMX_BF16")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """`auto` = the first CUDA GPU when there is one, else the CPU; anything else literally.

    Asking for CUDA on a machine without a usable GPU is an error that says what to pass.
    """
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"device={device!r} is not a device: use auto, cpu, cuda or cuda:N") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device} but this machine has no usable CUDA GPU: use device=auto or cpu")
    return resolved


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """The CPU feature flags the kernel reports (empty where there is no /proc/cpuinfo)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AMX-BF16 or AVX512-BF16).

    Asks the kernel's flags first, then torch's dispatch level; elsewhere (AVX2, ARM without
    the flags) bf16 is emulated and slower than float32, so `auto` keeps float32 there.
    """
    if cpu_flags() & set(BF16_CPU_FLAGS):
        return True
    return torch.backends.cpu.get_cpu_capability() in _BF16_CAPABILITIES


def resolve_precision(precision: str, device: torch.device) -> str:
    """`auto` -> `bf16` on CUDA and on CPUs with native bf16 units, `fp32` elsewhere."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    if device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16()):
        return "bf16"
    return "fp32"


def autocast(precision: str, device: torch.device) -> AbstractContextManager:
    """The autocast context for a resolved precision; float32 runs without one."""
    if precision == "fp32":
        return nullcontext()
    if precision not in _DTYPES:
        raise ValueError(f"resolve precision={precision!r} first (resolve_precision)")
    return torch.autocast(device.type, dtype=_DTYPES[precision])


__all__ = [
    "BF16_CPU_FLAGS",
    "PRECISIONS",
    "autocast",
    "cpu_flags",
    "cpu_has_native_bf16",
    "resolve_device",
    "resolve_precision",
]
