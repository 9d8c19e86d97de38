"""Blurry | deblurred | sharp grids of validation images, so progress can be seen, not only read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger, WandbLogger
from torchvision.utils import make_grid, save_image


class ValidationImageLogger(pl.Callback):
    """Every `every_n_epochs`, saves a grid of the first `num_images` validation images.

    Each row is blurry | deblurred | sharp. The grid is written as a PNG under `save_dir`
    and sent to TensorBoard or wandb when those loggers are active. Only rank zero writes.
    Uses the estimate that `validation_step` returns, so it costs no extra forward pass.
    """

    def __init__(
        self, save_dir: str | Path, num_images: int = 3, every_n_epochs: int = 1, max_side: int = 512
    ) -> None:
        self.save_dir = Path(save_dir)
        self.num_images = num_images
        self.every_n_epochs = every_n_epochs
        self.max_side = max_side
        self._rows: list[torch.Tensor] = []

    def _active(self, trainer: pl.Trainer) -> bool:
        return (
            trainer.is_global_zero
            and not trainer.sanity_checking
            and (trainer.current_epoch + 1) % self.every_n_epochs == 0
        )

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._rows = []

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not self._active(trainer) or len(self._rows) >= self.num_images or not isinstance(outputs, dict):
            return
        blurry, sharp = batch
        estimate = outputs["estimate"]
        row = (
            torch.cat([blurry[:1], estimate[:1], sharp[:1]], dim=0).float().clamp(0, 1).cpu()
        )  # (3, C, H, W)
        scale = self.max_side / max(row.shape[-2:])
        if scale < 1:
            row = torch.nn.functional.interpolate(row, scale_factor=scale, mode="area")
        self._rows.append(make_grid(row, nrow=3, padding=2))

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._rows:
            return
        width = max(r.shape[-1] for r in self._rows)
        rows = [torch.nn.functional.pad(r, (0, width - r.shape[-1])) for r in self._rows]
        grid = torch.cat(rows, dim=1)  # (C, sum of heights, width)
        self.save_dir.mkdir(parents=True, exist_ok=True)
        save_image(grid, self.save_dir / f"val_epoch_{trainer.current_epoch:04d}.png")
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image("val/blurry_deblurred_sharp", grid, trainer.global_step)
            elif isinstance(logger, WandbLogger):
                logger.log_image("val/blurry_deblurred_sharp", [grid], step=trainer.global_step)
        self._rows = []
