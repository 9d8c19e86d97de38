"""Which checkpoint: the latest state of a run, the best by a metric, the newest of a task.

One home for these rules, outside the training pipeline, so that training, resuming, callbacks
and the web app pick checkpoints the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

log = logging.getLogger(__name__)

# Where train.py puts checkpoints under <log_dir>/<task_name>/: single runs and multirun jobs.
_CHECKPOINT_GLOBS = ("runs/*/checkpoints/*.ckpt", "multiruns/*/*/checkpoints/*.ckpt")


def latest_checkpoint(trainer: pl.Trainer) -> tuple[Path, int] | None:
    """The `last*.ckpt` with the highest global step among the trainer's checkpoint folders."""
    folders = {
        Path(cb.dirpath)
        for cb in trainer.checkpoint_callbacks
        if isinstance(cb, ModelCheckpoint) and cb.dirpath
    }
    return latest_in(folders)


def latest_in(folders: Iterable[Path]) -> tuple[Path, int] | None:
    """The `last*.ckpt` with the highest global step in `folders`: a run's latest state.

    Checkpoints are read memory-mapped and weights-only, so this costs milliseconds even for
    large files; an unreadable one is skipped with a warning naming it, and only unreadable
    ones stop the caller rather than let a fresh start overwrite them.
    """
    found: list[tuple[int, float, Path]] = []
    unreadable: list[str] = []
    for folder in sorted(set(folders)):
        for path in folder.glob(f"{ModelCheckpoint.CHECKPOINT_NAME_LAST}*.ckpt"):
            try:
                step = int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["global_step"])
            except Exception as error:  # e.g. cut short by a crash on a filesystem without atomic renames
                log.warning(f"skipping unreadable checkpoint {path}: {error}")
                unreadable.append(str(path))
                continue
            found.append((step, path.stat().st_mtime, path))
    if not found and unreadable:
        # Starting afresh here would overwrite them: stop and let a person decide.
        raise RuntimeError(
            f"found only unreadable checkpoints {unreadable}; move them out of the way to start"
            " afresh, or set ckpt_path to a good checkpoint"
        )
    if not found:
        return None
    step, _, path = max(found)
    return path, step


def rating_checkpoint_callback(trainer: pl.Trainer) -> ModelCheckpoint | None:
    """The checkpoint callback that ranks checkpoints by a metric (`model_checkpoint`).

    Not simply `trainer.checkpoint_callback`: `last_checkpoint` and `step_checkpoint` are
    ModelCheckpoints too, and their "best" is merely their latest save.
    """
    return next(
        (cb for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint) and cb.monitor), None
    )


def newest_checkpoint(log_dir: str | Path, task_name: str = "train") -> Path | None:
    """The most recently written `.ckpt` of `task_name`'s runs, or None if there is none.

    On equal times `last.ckpt` wins, since it is what a run saved last.
    """
    root = Path(log_dir).expanduser() / task_name
    found = [p for pattern in _CHECKPOINT_GLOBS for p in root.glob(pattern) if p.is_file()]
    if not found:
        return None
    return max(found, key=lambda p: (p.stat().st_mtime, p.name == "last.ckpt"))
