"""The training pipeline behind `train.py`, importable so tests can run it in-process."""

from __future__ import annotations

import logging
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ProgressBar
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.strategies.launchers.subprocess_script import _SubprocessScriptLauncher
from rich.console import Console

from srn_deblur.checkpoints import latest_checkpoint, rating_checkpoint_callback
from srn_deblur.inference import load_network
from srn_deblur.training_runs import inference_precision
from srn_deblur.utils import code_version, instantiate_group, print_config, results_table

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit and/or test as `cfg` says; returns the logged metrics (floats).

    `data.batch_size` is the global batch: each of the trainer's processes loads
    `batch_size / world_size` crops, so a run means the same thing on 1 or 8 devices.
    """
    if cfg.get("seed") is not None:
        # One seed on every rank: identical initial weights and the same sampler shuffle
        # (DistributedSampler splits one permutation); crops are decorrelated per rank below.
        pl.seed_everything(cfg.seed, workers=True)
    # Hydra's own node (present when a test composes with it) is not the run's config, and its
    # sweep fields only resolve inside a multirun; Hydra saves it to .hydra/ anyway.
    run_config = OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"])
    if cfg.get("print_config", True):
        print_config(run_config)

    callbacks = instantiate_group(cfg.get("callbacks"))
    if not cfg.trainer.get("enable_progress_bar", True):
        # `trainer.enable_progress_bar=false` should just work, not clash with the group's bar.
        callbacks = [cb for cb in callbacks if not isinstance(cb, ProgressBar)]
    loggers = instantiate_group(cfg.get("logger"))
    trainer_kwargs = (
        {"precision": trainer_precision(cfg.trainer)} if cfg.trainer.get("precision") == "auto" else {}
    )
    trainer: pl.Trainer = hydra.utils.instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False, **trainer_kwargs
    )
    check_launch(trainer, multirun=HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN)

    channels = data_channels(cfg.data, cfg.model.get("net"))
    datamodule: pl.LightningDataModule = _instantiate_datamodule(cfg.data, trainer.world_size, channels)
    model: pl.LightningModule = hydra.utils.instantiate(cfg.model)
    if cfg.get("init_weights"):
        load_initial_weights(model, cfg.init_weights, resume_from=cfg.get("ckpt_path"))

    hyperparams = {**OmegaConf.to_container(run_config, resolve=True), "code": code_version()}
    for lg in loggers:
        lg.log_hyperparams(hyperparams)

    try:
        metrics = _fit_and_test(cfg, trainer, model, datamodule)
    except BaseException:
        _finish_wandb(loggers, exit_code=1)
        raise
    _finish_wandb(loggers, exit_code=0)
    return metrics


def _fit_and_test(
    cfg: DictConfig, trainer: pl.Trainer, model: pl.LightningModule, datamodule: pl.LightningDataModule
) -> dict[str, float]:
    if cfg.get("train", True):
        trainer.fit(model, datamodule=datamodule, ckpt_path=resume_checkpoint(cfg, trainer))
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


def _finish_wandb(loggers: list, exit_code: int) -> None:
    """Close this job's wandb run. In a sweep the jobs share one process, and WandbLogger would
    otherwise log every later trial into the first trial's still-open run."""
    if any(isinstance(lg, WandbLogger) for lg in loggers):
        import wandb

        if wandb.run is not None:
            wandb.finish(exit_code=exit_code)


def per_device_batch_size(global_batch_size: int, world_size: int) -> int:
    """The batch each process loads so that all processes together step on `global_batch_size`.

    The LR schedule needs no change: Lightning's `estimated_stepping_batches` already counts
    optimizer steps of the sharded loader, which equal a single process's steps at the global batch.
    """
    if world_size < 1 or global_batch_size % world_size:
        raise ValueError(
            f"data.batch_size={global_batch_size} is the global batch and must divide evenly over the"
            f" {world_size} training processes (trainer.devices x trainer.num_nodes); pick a multiple"
            f" of {world_size}"
        )
    return global_batch_size // world_size


def trainer_precision(trainer: DictConfig) -> str:
    """`trainer.precision: auto`: bf16 autocast where the hardware multiplies bf16 natively (CUDA,
    CPUs with AMX-BF16 or AVX512-BF16), float32 elsewhere, where emulated bf16 is slower."""
    return "bf16-mixed" if inference_precision("auto", trainer.get("accelerator")) == "bf16" else "32-true"


def data_channels(data: DictConfig, net: DictConfig | None) -> int | None:
    """The channels the training crops need: `data.train_channels`, or the network's when null.

    The data configs leave it null rather than point into `model`, so a data config means the
    same thing in training, in evaluation (which has no model) and on its own.
    """
    channels = data.get("train_channels")
    if channels is None and net is not None:
        channels = net.get("channels")
    return channels


def _instantiate_datamodule(
    cfg: DictConfig, world_size: int, train_channels: int | None
) -> pl.LightningDataModule:
    kwargs = {"train_channels": train_channels} if "train_channels" in cfg else {}
    if "batch_size" in cfg:
        per_device = per_device_batch_size(cfg.batch_size, world_size)
        if world_size > 1:
            log.info(f"global batch {cfg.batch_size} = {world_size} processes x {per_device}")
        kwargs["batch_size"] = per_device
    return hydra.utils.instantiate(cfg, **kwargs)


def check_launch(trainer: pl.Trainer, multirun: bool) -> None:
    """Refuse the one combination that silently misbehaves: Lightning relaunching `train.py` for
    its other ranks inside a Hydra multirun (each relaunched rank would start a sweep of its own).
    Under SLURM the ranks are srun's tasks and nothing is relaunched, so sweeps are fine there."""
    launcher = getattr(trainer.strategy, "launcher", None)
    environment = getattr(trainer.strategy, "cluster_environment", None)
    relaunches_script = (
        isinstance(launcher, _SubprocessScriptLauncher)
        and trainer.num_devices > 1
        and not (environment is not None and environment.creates_processes_externally)
    )
    if multirun and relaunches_script:
        raise ValueError(
            f"trainer.strategy={trainer.strategy.__class__.__name__} on {trainer.world_size} devices"
            " relaunches train.py once per device, which a Hydra multirun (-m) cannot do. Sweep over"
            " multi-device runs with hydra/launcher=submitit_slurm (SLURM starts the ranks), or start"
            " each setting as its own single run"
        )


def resume_checkpoint(cfg: DictConfig, trainer: pl.Trainer) -> str | None:
    """The checkpoint `trainer.fit` starts from.

    `resume: auto` continues the run in this output folder from its most advanced `last*.ckpt`
    (the epoch-end one of `last_checkpoint` or the mid-epoch one of `step_checkpoint`), so a
    killed or requeued run started again with the same command loses at most the steps since
    that save. With nothing saved yet it falls back to `ckpt_path` (or a fresh start).
    """
    mode = cfg.get("resume")
    if mode in (None, False):
        return cfg.get("ckpt_path")
    if mode != "auto":
        raise ValueError(f"resume must be 'auto' or null, got {mode!r}")
    last = latest_checkpoint(trainer)
    if last is None:
        start = cfg.get("ckpt_path") or "scratch"
        log.info(f"resume=auto: no checkpoint saved in this run folder yet; starting from {start}")
        return cfg.get("ckpt_path")
    path, step = last
    log.info(f"resume=auto: continuing from {path} (step {step})")
    return str(path)


def _checkpoint_to_test(cfg: DictConfig, trainer: pl.Trainer) -> str | None:
    """`test_ckpt: best` (highest val PSNR) or `last` after training; `ckpt_path` otherwise."""
    if not cfg.get("train", True):
        return cfg.get("ckpt_path")
    choice = cfg.get("test_ckpt", "best")
    if choice not in ("best", "last"):
        raise ValueError(f"test_ckpt must be 'best' or 'last', got {choice!r}")
    if choice == "last":
        last = latest_checkpoint(trainer)
        return str(last[0]) if last else None
    callback = rating_checkpoint_callback(trainer)
    return (callback.best_model_path or None) if callback else None


def load_initial_weights(model: pl.LightningModule, path: str, resume_from: str | None = None) -> None:
    """`init_weights`: start a new run from a checkpoint's network weights (e.g. a converted release
    model, to fine-tune it) with a fresh optimizer, LR schedule and step count; `ckpt_path` resumes."""
    if resume_from:
        raise ValueError(
            f"init_weights={path} and ckpt_path={resume_from} are both set: ckpt_path resumes a run"
            " (weights, optimizer, step), init_weights starts a new one from weights only; set one"
        )
    load_network(path, net=model.net)  # clear errors for a missing file or another architecture
    saved = torch.load(path, map_location="cpu", weights_only=True, mmap=True).get("net_config") or {}
    own = getattr(model.net, "config", {})
    differs = sorted(k for k in saved if k in own and saved[k] != own[k])
    if differs:
        log.warning(
            f"init_weights: {path} was saved with {', '.join(f'{k}={saved[k]!r}' for k in differs)},"
            f" this run's network has {', '.join(f'{k}={own[k]!r}' for k in differs)} (the release's"
            " converted weights need model.net.tf_exact=true)"
        )
    log.info(f"init_weights: network weights from {path}; optimizer and schedule start afresh")
