"""The LightningModule: the paper's optimisation recipe around any deblurring network."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torch.optim import Optimizer
from torchmetrics import MaxMetric, MeanMetric

from srn_deblur.loss import MultiScaleLoss
from srn_deblur.protocols import DEFAULT_PROTOCOL
from srn_deblur.schedule import PolynomialDecay


def _image_metrics() -> nn.ModuleDict:
    # Per-image PSNR and SSIM by the scoring protocol evaluate.py uses, averaged over images as
    # the papers average: the test table train.py prints is evaluate.py's on the same checkpoint.
    return nn.ModuleDict({"psnr": MeanMetric(), "ssim": MeanMetric()})


def _scores(metrics: nn.ModuleDict, prefix: str) -> dict[str, Tensor]:
    return {f"{prefix}{name}": metric.compute() for name, metric in metrics.items()}


def _reset(*groups: nn.ModuleDict) -> None:
    for metrics in groups:
        for metric in metrics.values():
            metric.reset()


# `torch.compile` modes a config may name.
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


class SRNLitModule(pl.LightningModule):
    """Trains a scale-recurrent network with the paper's loss, schedule and clipping.

    Args:
        net: the network; returns a list of estimates, coarsest first, finest last.
        optimizer: a partial optimizer (Hydra `_partial_: true`), Adam(0.9, 0.999, 1e-8) in
            the paper; its `lr` is the schedule's starting rate.
        lr_end: rate reached at the last optimizer step (1e-6 in the paper, 0 in the release).
        lr_power: exponent of the polynomial decay (0.3).
        total_steps: length T of the decay; `None` takes the trainer's total optimizer steps,
            so a shorter run still decays to `lr_end`.
        scale_weights: kappa_i of the multi-scale loss, coarsest first (all 1.0 by default).
        recurrent_clip_norm: global-norm clip applied to the recurrent cell's gradients only
            (3.0 in the paper; `None` disables it, as in the release).
        channels_last: run the network in channels-last memory format (faster convolutions
            on CPUs with oneDNN and on tensor-core GPUs; same numbers).
        compile: compile the network with `torch.compile` (inductor) when training starts; the
            first steps pay the compilation, later ones run fused kernels. Checkpoint keys are
            unchanged (the module is compiled in place).
        compile_mode: `torch.compile` mode: `default`, `reduce-overhead` (CUDA graphs: worth it
            when shapes are static, as the training crops are), `max-autotune`.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[..., Optimizer],
        lr_end: float = 1e-6,
        lr_power: float = 0.3,
        total_steps: int | None = None,
        scale_weights: Sequence[float] | None = None,
        recurrent_clip_norm: float | None = 3.0,
        channels_last: bool = False,
        compile: bool = False,
        compile_mode: str = "default",
    ) -> None:
        super().__init__()
        # Checkpoints keep plain values only, so they load with `torch.load(weights_only=True)`;
        # the optimizer factory and network are rebuilt from config or `net_config`.
        if compile_mode not in COMPILE_MODES:
            raise ValueError(f"compile_mode must be one of {COMPILE_MODES}, got {compile_mode!r}")
        self.save_hyperparameters(ignore=["net", "optimizer"], logger=False)
        self.optimizer_factory = optimizer
        self.net = net
        # The loss resizes its targets with the network's own rule (TF 1.x's for the release's weights).
        self.criterion = MultiScaleLoss(scale_weights, resize=getattr(net, "resize", None))
        self.train_loss = MeanMetric()
        self.val_loss = MeanMetric()
        # Validation and test score as `evaluate.py protocol=default` does (srn_deblur.protocols).
        self.scoring = DEFAULT_PROTOCOL
        self.val_metrics = _image_metrics()
        self.val_input_metrics = _image_metrics()
        self.test_metrics = _image_metrics()
        self.test_input_metrics = _image_metrics()
        self.val_psnr_best = MaxMetric()
        self._net_compiled = False

    def setup(self, stage: str) -> None:
        if self.hparams.channels_last:
            self.net.to(memory_format=torch.channels_last)
        if self.hparams.compile and not self._net_compiled:
            # In place (nn.Module.compile), so state-dict keys and `net.config` stay as they are.
            self.net.compile(mode=self.hparams.compile_mode)
            self._net_compiled = True

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if self.hparams.channels_last:
            return [x.contiguous(memory_format=torch.channels_last) for x in batch]
        return batch

    def forward(self, blurry: Tensor) -> Tensor:
        """Deblur `(N, C, H, W)` images in [0, 1]; returns the finest estimate, clamped to [0, 1]."""
        return self.net(blurry)[-1].clamp(0.0, 1.0)

    def model_step(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        blurry, sharp = batch
        estimates = self.net(blurry)
        return self.criterion(estimates, sharp), estimates[-1]

    def on_train_start(self) -> None:
        # Sanity-check validation must not count towards the best PSNR.
        self.val_psnr_best.reset()

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        loss, _ = self.model_step(batch)
        self.train_loss(loss.detach())
        self.log("train/loss", self.train_loss, on_step=True, on_epoch=True, prog_bar=True)
        return loss

    def _evaluate(
        self, batch: tuple[Tensor, Tensor], metrics: nn.ModuleDict, input_metrics: nn.ModuleDict
    ) -> tuple[Tensor, Tensor]:
        blurry, sharp = batch
        loss, estimate = self.model_step(batch)
        # Metrics in float32 or float64 even under bf16 autocast: SSIM's variances cancel
        # catastrophically in bf16 (it reported negative SSIM for the blurry input before this).
        with torch.autocast(device_type=self.device.type, enabled=False):
            estimate = estimate.float().clamp(0.0, 1.0)
            for i in range(sharp.shape[0]):  # one image at a time, as evaluate.py scores them
                image, target = estimate[i : i + 1], sharp[i : i + 1]  # (1, C, H, W)
                for group, scores in (
                    (metrics, self.scoring.score(image, target)),
                    (input_metrics, self.scoring.score(blurry[i : i + 1], target, estimate=False)),
                ):
                    group["psnr"].update(scores[0])
                    group["ssim"].update(scores[1])
        return loss, estimate

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> dict[str, Tensor]:
        loss, estimate = self._evaluate(batch, self.val_metrics, self.val_input_metrics)
        self.val_loss(loss)
        self.log("val/loss", self.val_loss, on_epoch=True)
        return {"estimate": estimate.detach()}  # for image-logging callbacks

    def on_validation_epoch_end(self) -> None:
        scores = _scores(self.val_metrics, "val/")
        self.log_dict(scores, prog_bar=True, sync_dist=True)
        self.log_dict(_scores(self.val_input_metrics, "val/input_"), sync_dist=True)
        self.val_psnr_best(scores["val/psnr"])
        self.log("val/psnr_best", self.val_psnr_best.compute(), prog_bar=True, sync_dist=True)
        _reset(self.val_metrics, self.val_input_metrics)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, self.test_metrics, self.test_input_metrics)

    def on_test_epoch_end(self) -> None:
        self.log_dict(_scores(self.test_metrics, "test/"), sync_dist=True)
        self.log_dict(_scores(self.test_input_metrics, "test/input_"), sync_dist=True)
        _reset(self.test_metrics, self.test_input_metrics)

    def configure_gradient_clipping(
        self,
        optimizer: Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Clip the recurrent cell's gradients by their own global norm, nothing else.

        Lightning calls this after unscaling (mixed precision) and before the optimizer step.
        A trainer-level `gradient_clip_val` still clips all parameters on top, if set.
        """
        max_norm = self.hparams.recurrent_clip_norm
        recurrent = getattr(self.net, "recurrent_parameters", [])
        if max_norm is not None and recurrent:
            torch.nn.utils.clip_grad_norm_(recurrent, max_norm)
        if gradient_clip_val:
            self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = self.optimizer_factory(params=self.net.parameters())
        lr0 = optimizer.param_groups[0]["lr"]
        total = self.hparams.total_steps or int(self.trainer.estimated_stepping_batches)
        decay = PolynomialDecay(lr0, self.hparams.lr_end, total, self.hparams.lr_power)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, decay)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1},
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Lets evaluation and the web app rebuild the network without the training config.
        config = getattr(self.net, "config", None)
        if config is not None:
            checkpoint["net_config"] = dict(config)
