"""Running `train.py` as a user would, in a subprocess: sweeps, DDP ranks and killed runs need
real processes (Hydra's multirun, Lightning's relaunching, SIGKILL), not an in-process call."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import TINY_TRAINING

REPO = Path(__file__).resolve().parents[1]


def tiny_overrides(tmp_path: Path) -> list[str]:
    """`TINY_TRAINING` for the command line, with the synthetic data under `tmp_path`."""
    return [*TINY_TRAINING, f"paths.data_dir={tmp_path / 'data'}"]


def train_command(overrides: list[str], multirun: bool = False) -> list[str]:
    return [sys.executable, str(REPO / "train.py"), *(["-m"] if multirun else []), *overrides]


def train_env() -> dict[str, str]:
    env = dict(os.environ, HYDRA_FULL_ERROR="1", WANDB_SILENT="true")
    # One intra-op thread: on a shared 2-core machine OpenMP's spinning threads made tiny steps ~10x slower.
    env.setdefault("OMP_NUM_THREADS", "1")
    env.pop("WANDB_API_KEY", None)
    return env


def run_train(overrides: list[str], timeout: float, multirun: bool = False) -> subprocess.CompletedProcess:
    """Run `train.py` to completion; fails the test with the output's tail if it exits non-zero."""
    command = train_command(overrides, multirun)
    done = subprocess.run(command, cwd=REPO, env=train_env(), capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        pytest.fail(f"train.py exited with {done.returncode}:\n{(done.stdout + done.stderr)[-4000:]}")
    return done


def read_metrics(path: Path) -> list[dict[str, str]]:
    """Rows of a CSVLogger `metrics.csv`."""
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def column(rows: list[dict[str, str]], name: str) -> list[tuple[int, float]]:
    """(step, value) of every row where metric `name` was logged."""
    return [(int(r["step"]), float(r[name])) for r in rows if r.get(name)]


def saved_step(path: Path) -> int | None:
    """The global step in a Lightning checkpoint, or None while it is absent or being replaced."""
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["global_step"])
    except Exception:
        return None


def wait_for_saved_step(
    checkpoint: Path, min_step: int, process: subprocess.Popen, output: Path, timeout: float = 180
) -> int:
    """Poll until `checkpoint` holds a step >= `min_step`; fails if `process` ends first."""
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the run ended (rc {process.returncode}) too early:\n{output.read_text()[-3000:]}")
        mtime = checkpoint.stat().st_mtime_ns if checkpoint.exists() else None
        if mtime is not None and mtime != seen:
            seen = mtime
            step = saved_step(checkpoint)
            if step is not None and step >= min_step:
                return step
        time.sleep(0.02)
    pytest.fail(f"{checkpoint} reached no step >= {min_step} within {timeout} s")
