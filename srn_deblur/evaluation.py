"""Scoring a trained network on full-size test images, as the papers report their results.

Every test image whole, the network's finest estimate clamped to [0, 1], then scored by a named
`ScoringProtocol` (`srn_deblur.protocols`: SSIM per channel or MATLAB's volume SSIM, 8-bit
rounding or truncation, RealBlur's alignment). The blurry input is scored the same way beside
the estimate, so a table shows what the network added. The LightningModule's test step uses
the same protocol object, so `train.py`'s test table and `evaluate.py` agree on one checkpoint.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from datamodules.datasets import PairedImageDataset
from datamodules.image_io import to_uint8, write_rgb
from srn_deblur.devices import resolve_device, resolve_precision
from srn_deblur.inference import deblur, load_network
from srn_deblur.network import parameter_count
from srn_deblur.protocols import DEFAULT_PROTOCOL, ScoringProtocol
from srn_deblur.reports import ImageScore, markdown_table, summarize, write_csv
from srn_deblur.training_runs import load_training_run
from srn_deblur.utils import print_config

log = logging.getLogger(__name__)


def _synchronize(device: torch.device) -> None:
    # CUDA runs asynchronously: without this a timer measures the launch, not the work.
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def evaluate_dataset(
    net: nn.Module,
    dataset: PairedImageDataset,
    device: torch.device | str = "cpu",
    tile_size: int | None = None,
    tile_overlap: int = 64,
    max_pixels: int | None = None,
    protocol: ScoringProtocol = DEFAULT_PROTOCOL,
    save_dir: str | Path | None = None,
    limit_images: int | None = None,
    warmup: bool = True,
    precision: str = "fp32",
) -> list[ImageScore]:
    """Deblur and score every image of `dataset` (full images, no crop), in its order.

    Tiling follows `srn_deblur.inference.deblur`: `tile_size` forces tiles, `max_pixels`
    switches to them for larger images. With `save_dir`, each estimate is written as
    `save_dir/<sequence>/<image name>.png`, quantised as the protocol scores it. `warmup` runs
    the first image once untimed, so the runtime excludes one-off costs (cuDNN autotuning,
    allocator growth).
    """
    if dataset.crop_size is not None:
        raise ValueError("evaluation needs full images: pass a dataset built without crop_size")
    device = torch.device(device)
    net = net.to(device).eval()
    count = len(dataset.pairs) if limit_images is None else min(limit_images, len(dataset.pairs))

    def run(blurry: torch.Tensor) -> torch.Tensor:
        return deblur(net, blurry, tile_size, tile_overlap, max_pixels, precision=precision)

    scores = []
    for index in range(count):
        pair = dataset.pairs[index]
        blurry, sharp = (x[None].to(device) for x in dataset[index])  # (1, 3, H, W) each
        if warmup and index == 0:
            run(blurry)
        _synchronize(device)
        start = time.perf_counter()
        estimate = run(blurry)  # (1, 3, H, W) in [0, 1]
        _synchronize(device)
        seconds = time.perf_counter() - start
        psnr, ssim = protocol.score(estimate, sharp)
        input_psnr, input_ssim = protocol.score(blurry, sharp, estimate=False)
        height, width = blurry.shape[-2:]
        scores.append(
            ImageScore(
                pair.sequence, pair.blurry.name, height, width, psnr, ssim, input_psnr, input_ssim, seconds
            )
        )
        if save_dir is not None:
            image = to_uint8(estimate, protocol.rounding or "round")
            write_rgb(Path(save_dir) / pair.sequence / f"{Path(pair.blurry.name).stem}.png", image)
        log.info(
            "[%d/%d] %s/%s  PSNR %.2f dB (blurry %.2f)  SSIM %.4f  %.3f s",
            index + 1,
            count,
            pair.sequence,
            pair.blurry.name,
            psnr,
            input_psnr,
            ssim,
            seconds,
        )
    return scores


def evaluate_checkpoint(
    ckpt_path: str | Path,
    datamodule: pl.LightningDataModule,
    output_dir: str | Path,
    net_config: Mapping[str, Any] | None = None,
    device: str = "auto",
    tile_size: int | None = None,
    tile_overlap: int = 64,
    max_pixels: int | None = None,
    protocol: ScoringProtocol = DEFAULT_PROTOCOL,
    save_images: bool = False,
    limit_images: int | None = None,
    warmup: bool = True,
    precision: str = "fp32",
) -> dict[str, Any]:
    """Evaluate a checkpoint on a datamodule's test split; write the results to `output_dir`.

    Writes `per_image.csv`, `results.md` (the table, the protocol below it) and `summary.json`
    (means, network, protocol), plus `images/` when `save_images`. Returns the summary.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device)
    precision = resolve_precision(precision, dev)
    net = load_network(ckpt_path, net_config=net_config, map_location=dev)
    datamodule.prepare_data()
    datamodule.setup("test")
    scores = evaluate_dataset(
        net,
        datamodule.data_test,
        dev,
        tile_size,
        tile_overlap,
        max_pixels,
        protocol,
        output_dir / "images" if save_images else None,
        limit_images,
        warmup,
        precision,
    )
    summary = summarize(scores)
    description = protocol.describe()
    summary.update(
        checkpoint=str(ckpt_path),
        net_config=dict(getattr(net, "config", {})),
        parameters=parameter_count(net),
        device=str(dev) if dev.type != "cuda" else torch.cuda.get_device_name(dev),
        precision=precision,
        tiling={"tile_size": tile_size, "tile_overlap": tile_overlap, "max_pixels": max_pixels},
        protocol_name=protocol.name,
        protocol=description,
    )
    data_name = Path(getattr(datamodule, "data_dir", "data")).name
    table = markdown_table(summary, f"{Path(ckpt_path).name} on the test split of {data_name}", description)
    table += f"\nRuntime on {summary['device']} ({precision}), mean over images.\n"
    write_csv(scores, output_dir / "per_image.csv")
    (output_dir / "results.md").write_text(table)
    (output_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    summary["table"] = table
    return summary


def run_evaluation(cfg: DictConfig) -> dict[str, Any]:
    """What `evaluate.py` does: build the data and protocol from `cfg`, evaluate `cfg.ckpt_path`, print."""
    if cfg.get("print_config", True):
        print_config(cfg)
    data, ckpt_path, precision = cfg.data, cfg.get("ckpt_path"), cfg.get("precision")
    if cfg.get("run_dir"):
        # A training run scored as its own test scored it: its data, checkpoint and precision.
        run = load_training_run(cfg.run_dir)
        data = OmegaConf.create(run.data)
        ckpt_path, precision = ckpt_path or run.checkpoint, precision or run.precision
    data = OmegaConf.merge(data, cfg.get("data_overrides") or {})
    if not ckpt_path:
        raise ValueError("evaluate.py needs ckpt_path=<checkpoint> or run_dir=<a train.py run folder>")
    datamodule: pl.LightningDataModule = hydra.utils.instantiate(data)
    protocol: ScoringProtocol = (
        hydra.utils.instantiate(cfg.protocol) if cfg.get("protocol") else DEFAULT_PROTOCOL
    )
    # A bare state dict carries no architecture: take it from the model config, if one is chosen.
    model = cfg.get("model")
    net_config = None
    if model is not None and model.get("net") is not None:
        net_config = OmegaConf.to_container(model.net, resolve=True)
        net_config.pop("_target_", None)
    summary = evaluate_checkpoint(
        ckpt_path,
        datamodule,
        cfg.paths.output_dir,
        net_config=net_config,
        device=cfg.device,
        tile_size=cfg.tile_size,
        tile_overlap=cfg.tile_overlap,
        max_pixels=cfg.max_pixels,
        protocol=protocol,
        save_images=cfg.save_images,
        limit_images=cfg.limit_images,
        warmup=cfg.warmup,
        precision=precision or "fp32",
    )
    print(summary["table"])
    print(f"per-image scores: {Path(cfg.paths.output_dir) / 'per_image.csv'}")
    return summary
