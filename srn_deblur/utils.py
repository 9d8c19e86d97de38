"""Helpers for the Hydra entry points: building lists of objects and reporting results."""

from __future__ import annotations

from collections.abc import Mapping

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
    return [hydra.utils.instantiate(conf) for conf in cfg.values() if isinstance(conf, DictConfig) and "_target_" in conf]


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
        table.add_row(name.upper(), f"{blurry:.4f}{unit}", f"{model:.4f}{unit}", f"{model - blurry:+.4f}{unit}")
    return table
