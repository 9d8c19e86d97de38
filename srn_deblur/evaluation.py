"""Scoring a trained network on full-size test images, as the papers report GOPRO results.

Protocol (the one in the paper's tables, computed with torchmetrics): every test image whole,
RGB, values in [0, 1]; the network's finest estimate clamped to [0, 1] and, by default,
rounded to 8 bits as a saved PNG would be; PSNR with data range 1.0; SSIM with an 11x11
Gaussian window, sigma 1.5, K1 0.01, K2 0.03, averaged over the three channels and over the
map less the window's 5-pixel border (scikit-image's convention; MATLAB's differs, see
SRN_SPEC.md). The blurry input is scored the same way beside the estimate, so a table shows
what the network added.
"""

from __future__ import annotations

import csv
import json
import logging
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from datamodules.datasets import PairedImageDataset
from datamodules.image_io import quantize, to_uint8, write_rgb
from srn_deblur.inference import deblur, load_network
from srn_deblur.utils import print_config

log = logging.getLogger(__name__)

PROTOCOL = (
    "PSNR/SSIM by torchmetrics on full RGB images in [0, 1] (data range 1.0; SSIM 11x11 Gaussian"
    " window, sigma 1.5, K1 0.01, K2 0.03, mean over channels and the map less its 5-pixel"
    " window border, as scikit-image); no image border cropped for PSNR"
)
_SSIM_BORDER = 5  # (11 - 1) // 2: where the window reaches into padding


@dataclass(frozen=True)
class ImageScore:
    """One test image: the estimate's and the blurry input's scores, and the network's time."""

    sequence: str
    image: str
    height: int
    width: int
    psnr: float
    ssim: float
    input_psnr: float
    input_ssim: float
    seconds: float


def image_scores(estimate: Tensor, sharp: Tensor) -> tuple[float, float]:
    """PSNR (dB) and SSIM of one `(1, C, H, W)` image in [0, 1] against its sharp twin.

    SSIM is averaged over the map without its 5-pixel border, where the 11x11 window would
    reach into padding: scikit-image's convention. torchmetrics' own mean keeps that border
    (reflect-padded); the two agree to ~1e-5 on 720p images but drift apart on small ones.
    """
    height, width = sharp.shape[-2:]
    if min(height, width) <= 2 * _SSIM_BORDER:
        raise ValueError(f"SSIM needs images larger than 11x11 pixels, got {width}x{height}")
    estimate, sharp = estimate.float(), sharp.float()
    psnr = peak_signal_noise_ratio(estimate, sharp, data_range=1.0)
    _, ssim_map = structural_similarity_index_measure(
        estimate, sharp, data_range=1.0, gaussian_kernel=True, kernel_size=11, sigma=1.5, k1=0.01, k2=0.03,
        return_full_image=True,
    )
    b = _SSIM_BORDER
    return float(psnr), float(ssim_map[..., b:-b, b:-b].mean())


def _synchronize(device: torch.device) -> None:
    # CUDA runs asynchronously: without this a timer measures the launch, not the work.
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def resolve_device(device: str) -> torch.device:
    """`auto` picks the GPU when there is one."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def evaluate_dataset(
    net: nn.Module,
    dataset: PairedImageDataset,
    device: torch.device | str = "cpu",
    tile_size: int | None = None,
    tile_overlap: int = 64,
    max_pixels: int | None = None,
    quantize_output: bool = True,
    save_dir: str | Path | None = None,
    limit_images: int | None = None,
    warmup: bool = True,
) -> list[ImageScore]:
    """Deblur and score every image of `dataset` (full images, no crop), in its order.

    Tiling follows `srn_deblur.inference.deblur`: `tile_size` forces tiles, `max_pixels`
    switches to them for larger images. With `save_dir`, each estimate is written as
    `save_dir/<sequence>/<image name>.png`. `warmup` runs the first image once untimed, so
    the runtime excludes one-off costs (cuDNN autotuning, allocator growth).
    """
    if dataset.crop_size is not None:
        raise ValueError("evaluation needs full images: pass a dataset built without crop_size")
    device = torch.device(device)
    net = net.to(device).eval()
    count = len(dataset.pairs) if limit_images is None else min(limit_images, len(dataset.pairs))
    scores = []
    for index in range(count):
        pair = dataset.pairs[index]
        blurry, sharp = (x[None].to(device) for x in dataset[index])  # (1, 3, H, W) each
        if warmup and index == 0:
            deblur(net, blurry, tile_size, tile_overlap, max_pixels)
        _synchronize(device)
        start = time.perf_counter()
        estimate = deblur(net, blurry, tile_size, tile_overlap, max_pixels)  # (1, 3, H, W) in [0, 1]
        _synchronize(device)
        seconds = time.perf_counter() - start
        if quantize_output:
            estimate = quantize(estimate)
        psnr, ssim = image_scores(estimate, sharp)
        input_psnr, input_ssim = image_scores(blurry, sharp)
        score = ImageScore(pair.sequence, pair.blurry.name, blurry.shape[-2], blurry.shape[-1], psnr, ssim, input_psnr, input_ssim, seconds)
        scores.append(score)
        if save_dir is not None:
            write_rgb(Path(save_dir) / pair.sequence / f"{Path(pair.blurry.name).stem}.png", to_uint8(estimate))
        log.info(
            "[%d/%d] %s/%s  PSNR %.2f dB (blurry %.2f)  SSIM %.4f  %.3f s",
            index + 1, count, pair.sequence, pair.blurry.name, psnr, input_psnr, ssim, seconds,
        )
    return scores


def _means(scores: Sequence[ImageScore]) -> dict[str, float]:
    keys = ("psnr", "ssim", "input_psnr", "input_ssim", "seconds")
    means = {k: statistics.fmean(getattr(s, k) for s in scores) for k in keys}
    means["median_seconds"] = statistics.median(s.seconds for s in scores)
    means["images"] = len(scores)
    return means


def summarize(scores: Sequence[ImageScore]) -> dict[str, Any]:
    """Means over all images (as the papers average) and per sequence, in order of appearance."""
    if not scores:
        raise ValueError("no images were scored")
    sequences: dict[str, list[ImageScore]] = {}
    for score in scores:
        sequences.setdefault(score.sequence, []).append(score)
    return {"overall": _means(scores), "sequences": {name: _means(group) for name, group in sequences.items()}}


def markdown_table(summary: Mapping[str, Any], title: str = "Evaluation") -> str:
    """The per-sequence and overall means as a markdown table."""
    lines = [
        f"### {title}",
        "",
        "| sequence | images | blurry PSNR | PSNR | gain | blurry SSIM | SSIM | s / image |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def row(name: str, m: Mapping[str, float]) -> str:
        return (
            f"| {name} | {m['images']} | {m['input_psnr']:.2f} | {m['psnr']:.2f} | {m['psnr'] - m['input_psnr']:+.2f}"
            f" | {m['input_ssim']:.4f} | {m['ssim']:.4f} | {m['seconds']:.3f} |"
        )

    lines += [row(name, m) for name, m in summary["sequences"].items()]
    lines.append(row("**all**", summary["overall"]))
    return "\n".join(lines) + "\n"


def write_csv(scores: Sequence[ImageScore], path: str | Path) -> None:
    """One row per image, the columns of `ImageScore`."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[fl.name for fl in fields(ImageScore)])
        writer.writeheader()
        writer.writerows(asdict(s) for s in scores)


def parameter_count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def evaluate_checkpoint(
    ckpt_path: str | Path,
    datamodule: pl.LightningDataModule,
    output_dir: str | Path,
    net_config: Mapping[str, Any] | None = None,
    device: str = "auto",
    tile_size: int | None = None,
    tile_overlap: int = 64,
    max_pixels: int | None = None,
    quantize_output: bool = True,
    save_images: bool = False,
    limit_images: int | None = None,
    warmup: bool = True,
) -> dict[str, Any]:
    """Evaluate a checkpoint on a datamodule's test split; write the results to `output_dir`.

    Writes `per_image.csv`, `results.md` (the table) and `summary.json` (means, network,
    protocol), plus `images/` when `save_images`. Returns the summary.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device)
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
        quantize_output,
        output_dir / "images" if save_images else None,
        limit_images,
        warmup,
    )
    summary = summarize(scores)
    protocol = PROTOCOL + ("; estimates quantised to 8 bits" if quantize_output else "; estimates not quantised")
    summary.update(
        checkpoint=str(ckpt_path),
        net_config=dict(getattr(net, "config", {})),
        parameters=parameter_count(net),
        device=str(dev) if dev.type != "cuda" else torch.cuda.get_device_name(dev),
        tiling={"tile_size": tile_size, "tile_overlap": tile_overlap, "max_pixels": max_pixels},
        protocol=protocol,
    )
    data_name = Path(getattr(datamodule, "data_dir", "data")).name
    table = markdown_table(summary, title=f"{Path(ckpt_path).name} on the test split of {data_name}")
    table += f"\n{protocol}. Runtime on {summary['device']}, mean over images.\n"
    write_csv(scores, output_dir / "per_image.csv")
    (output_dir / "results.md").write_text(table)
    (output_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    summary["table"] = table
    return summary


def run_evaluation(cfg: DictConfig) -> dict[str, Any]:
    """What `evaluate.py` does: build the data from `cfg.data`, evaluate `cfg.ckpt_path`, print."""
    if cfg.get("print_config", True):
        print_config(cfg)
    datamodule: pl.LightningDataModule = hydra.utils.instantiate(cfg.data)
    # A bare state dict carries no architecture: take it from the model config, if one is chosen.
    model = cfg.get("model")
    net_config = None
    if model is not None and model.get("net") is not None:
        net_config = OmegaConf.to_container(model.net, resolve=True)
        net_config.pop("_target_", None)
    summary = evaluate_checkpoint(
        cfg.ckpt_path,
        datamodule,
        cfg.paths.output_dir,
        net_config=net_config,
        device=cfg.device,
        tile_size=cfg.tile_size,
        tile_overlap=cfg.tile_overlap,
        max_pixels=cfg.max_pixels,
        quantize_output=cfg.quantize,
        save_images=cfg.save_images,
        limit_images=cfg.limit_images,
        warmup=cfg.warmup,
    )
    print(summary["table"])
    print(f"per-image scores: {Path(cfg.paths.output_dir) / 'per_image.csv'}")
    return summary
