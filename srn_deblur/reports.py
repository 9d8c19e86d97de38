"""Per-image scores and what is made of them: means as the papers average, a markdown table, a CSV."""

from __future__ import annotations

import csv
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any


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


def _means(scores: Sequence[ImageScore]) -> dict[str, float]:
    keys = ("psnr", "ssim", "input_psnr", "input_ssim", "seconds")
    means: dict[str, Any] = {k: statistics.fmean(getattr(s, k) for s in scores) for k in keys}
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
    return {
        "overall": _means(scores),
        "sequences": {name: _means(group) for name, group in sequences.items()},
    }


def markdown_table(summary: Mapping[str, Any], title: str = "Evaluation", protocol: str = "") -> str:
    """The per-sequence and overall means as a markdown table, the protocol's sentence below it."""
    lines = [
        f"### {title}",
        "",
        "| sequence | images | blurry PSNR | PSNR | gain | blurry SSIM | SSIM | s / image |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def row(name: str, m: Mapping[str, float]) -> str:
        return (
            f"| {name} | {m['images']} | {m['input_psnr']:.2f} | {m['psnr']:.2f}"
            f" | {m['psnr'] - m['input_psnr']:+.2f} | {m['input_ssim']:.4f} | {m['ssim']:.4f}"
            f" | {m['seconds']:.3f} |"
        )

    lines += [row(name, m) for name, m in summary["sequences"].items()]
    lines.append(row("**all**", summary["overall"]))
    if protocol:
        lines += ["", protocol]
    return "\n".join(lines) + "\n"


def write_csv(scores: Sequence[ImageScore], path: str | Path) -> None:
    """One row per image, the columns of `ImageScore`."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[fl.name for fl in fields(ImageScore)])
        writer.writeheader()
        writer.writerows(asdict(s) for s in scores)


__all__ = ["ImageScore", "markdown_table", "summarize", "write_csv"]
