"""Helpers for the Hydra entry points: building lists of objects and reporting results."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.syntax import Syntax
from rich.table import Table


def instantiate_group(cfg: DictConfig | None) -> list:
    """Instantiate every entry with a `_target_` in a config group (callbacks, loggers)."""
    if not cfg:
        return []
    if not isinstance(cfg, DictConfig):
        raise TypeError(f"expected a mapping of objects to build, got {type(cfg).__name__}")
    return [
        hydra.utils.instantiate(conf)
        for conf in cfg.values()
        if isinstance(conf, DictConfig) and "_target_" in conf
    ]


def print_config(cfg: DictConfig) -> None:
    """Print the resolved config as YAML so a run's log shows exactly what ran."""
    Console().print(Syntax(OmegaConf.to_yaml(cfg, resolve=True), "yaml"))


def results_table(metrics: Mapping[str, float], stage: str = "test") -> Table:
    """A table of the model's PSNR/SSIM next to the blurry input's, and the gain."""
    table = Table(title=f"{stage} set: deblurred vs blurry input")
    for column in ("metric", "blurry input", "SRN output", "gain"):
        table.add_column(column, justify="right")
    for name, unit in (("psnr", " dB"), ("ssim", "")):
        model = metrics.get(f"{stage}/{name}")
        blurry = metrics.get(f"{stage}/input_{name}")
        if model is None or blurry is None:
            continue
        model, blurry = float(model), float(blurry)
        table.add_row(
            name.upper(), f"{blurry:.4f}{unit}", f"{model:.4f}{unit}", f"{model - blurry:+.4f}{unit}"
        )
    return table


def code_version(repo: str | Path | None = None) -> dict[str, str | bool | None]:
    """The code a run used: package version, git commit and whether the tree had local edits.

    Logged with the hyperparameters so every run can be traced back to its code. `None` fields
    mean "not a git checkout" (an installed wheel) or no git on the machine. Read-only git calls;
    `--no-optional-locks` keeps `git status` from rewriting the index under a running job.
    """
    root = Path(repo) if repo is not None else Path(__file__).resolve().parents[1]
    try:
        package = version("srn-deblur")
    except PackageNotFoundError:
        package = None

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "--no-optional-locks", "-C", str(root), *args],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip()

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    dirty = bool(status) if status is not None else None
    return {"package_version": package, "git_commit": commit, "git_dirty": dirty}
