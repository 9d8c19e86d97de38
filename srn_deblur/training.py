"""The training pipeline behind `train.py`, importable so tests can run it in-process."""

from __future__ import annotations

import logging
from typing import Any

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from srn_deblur.utils import instantiate_group, print_config, results_table

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit and/or test as `cfg` says; returns the logged metrics (floats)."""
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)
    if cfg.get("print_config", True):
        print_config(cfg)

    datamodule: pl.LightningDataModule = hydra.utils.instantiate(cfg.data)
    model: pl.LightningModule = hydra.utils.instantiate(cfg.model)
    callbacks = instantiate_group(cfg.get("callbacks"))
    loggers = instantiate_group(cfg.get("logger"))
    trainer: pl.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)

    for lg in loggers:
        lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    if cfg.get("train", True):
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}

    if cfg.get("test", False):
        ckpt = _checkpoint_to_test(cfg, trainer)
        if ckpt is None:
            log.warning("no checkpoint to test: testing the model's current weights")
        trainer.test(model, datamodule=datamodule, ckpt_path=ckpt)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
        if trainer.is_global_zero:
            Console().print(results_table(metrics, "test"))
            if ckpt:
                Console().print(f"tested checkpoint: {ckpt}")
    return metrics


def _checkpoint_to_test(cfg: DictConfig, trainer: pl.Trainer) -> str | None:
    """`test_ckpt: best` (highest val PSNR) or `last` after training; `ckpt_path` otherwise."""
    if not cfg.get("train", True):
        return cfg.get("ckpt_path")
    callback = trainer.checkpoint_callback
    if callback is None:
        return None
    choice = cfg.get("test_ckpt", "best")
    if choice not in ("best", "last"):
        raise ValueError(f"test_ckpt must be 'best' or 'last', got {choice!r}")
    path = callback.best_model_path if choice == "best" else callback.last_model_path
    return path or None
