"""What a finished `train.py` run folder says about itself: its data, its checkpoint, its precision.

`evaluate.py run_dir=...` scores a run on the data it was trained on, with the checkpoint and the
number format its own test used, so its table reproduces the one `train.py` printed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from srn_deblur.checkpoints import latest_in
from srn_deblur.devices import resolve_precision

# Lightning's `trainer.precision` values -> the inference precision they compute in.
_LIGHTNING_PRECISIONS = {"bf16-mixed": "bf16", "bf16-true": "bf16", "16-mixed": "fp16", "16-true": "fp16"}


@dataclass(frozen=True)
class TrainingRun:
    """A run folder's data config (resolved, plain values), the checkpoint its test scored, and
    the precision (`fp32`, `bf16`, `fp16`) it ran in."""

    run_dir: Path
    data: dict[str, Any]
    checkpoint: Path
    precision: str


def inference_precision(trainer_precision: str | None, accelerator: str | None) -> str:
    """The inference precision that matches a Lightning `trainer.precision` (`auto` resolved as
    `train.py` resolves it)."""
    if trainer_precision == "auto":
        device = "cuda" if accelerator in ("gpu", "cuda") else "cpu"
        return resolve_precision("auto", torch.device(device))
    return _LIGHTNING_PRECISIONS.get(str(trainer_precision), "fp32")


def load_training_run(run_dir: str | Path) -> TrainingRun:
    """Read `run_dir/.hydra/config.yaml` and find the checkpoint the run's test would score.

    `test_ckpt: last` (the default) is the most advanced `last*.ckpt`; `best` is the newest
    `epoch_*.ckpt` (the best by validation PSNR). Errors name the folder and say what to pass.
    """
    run_dir = Path(run_dir).expanduser()
    config_file = run_dir / ".hydra" / "config.yaml"
    if not config_file.is_file():
        raise FileNotFoundError(
            f"run_dir={run_dir} has no .hydra/config.yaml: pass the folder train.py wrote"
            " (logs/<task>/runs/<time>/), or ckpt_path= and data= instead"
        )
    cfg = OmegaConf.load(config_file)
    data = OmegaConf.to_container(cfg.data, resolve=True)
    folder = run_dir / "checkpoints"
    if cfg.get("test_ckpt", "last") == "best":
        best = sorted(folder.glob("epoch_*.ckpt"), key=lambda p: p.stat().st_mtime)
        checkpoint = best[-1] if best else None
    else:
        latest = latest_in([folder, *[p for p in folder.glob("*") if p.is_dir()]])
        checkpoint = latest[0] if latest else None
    if checkpoint is None:
        raise FileNotFoundError(f"{folder} has no checkpoint to score (the run saved none); pass ckpt_path=")
    trainer = cfg.get("trainer", {})
    precision = inference_precision(trainer.get("precision"), trainer.get("accelerator"))
    return TrainingRun(run_dir, data, checkpoint, precision)
