"""The paper's tables: which rows there are, what the paper reports for each, the markdown table.

A row is an experiment config (`configs/experiment/<row>.yaml`); `srn_deblur.paper_runs` trains
and evaluates rows, and `table_markdown` sets the results beside the paper's numbers. Only
numbers checked against the paper or the release (docs/architecture.md) are shown as published;
the other cells stay empty rather than quote unverified figures. The paper's Table 1 parameter
counts are given to 0.01M; the layer table reproduces each of them (tests/test_paper_table.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from srn_deblur.network import parameter_count

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO_ROOT / "configs"


@dataclass(frozen=True)
class TableRow:
    """One row of the paper's tables and what the paper (or release) reports for it."""

    experiment: str
    label: str
    paper_psnr: float | None = None
    paper_ssim: float | None = None
    paper_params: float | None = None
    source: str = ""


ROWS: dict[str, TableRow] = {
    row.experiment: row
    for row in (
        TableRow("ablation_single_scale", "SS (single scale)", paper_params=2.73e6, source="paper Table 1"),
        TableRow(
            "ablation_scale_cascade",
            "SC (scale cascade, no sharing)",
            paper_params=8.19e6,
            source="paper Table 1",
        ),
        TableRow(
            "ablation_no_recurrence", "w/o R (no state passed)", paper_params=2.73e6, source="paper Table 1"
        ),
        TableRow("ablation_rnn", "RNN", source="paper Table 1"),
        TableRow("ablation_gru", "GRU"),
        TableRow("ablation_lstm", "LSTM = SR-EDRB3", paper_params=3.76e6, source="paper Table 1"),
        TableRow(
            "ablation_no_resblocks", "SR-ED (no ResBlock skips)", paper_params=3.76e6, source="paper Table 1"
        ),
        TableRow("ablation_resblocks1", "SR-EDRB1", paper_params=2.21e6, source="paper Table 1"),
        TableRow("ablation_resblocks2", "SR-EDRB2", paper_params=2.99e6, source="paper Table 1"),
        TableRow("gopro_full", "SRN-DeblurNet (paper recipe)", 30.26, 0.9342, source="paper Table 2"),
        TableRow("gopro_release_lstm", "release `lstm`", 30.19, 0.9334, 8_056_609, "release README"),
        TableRow("gopro_release_color", "release `color`", 30.25, None, 6_881_251, "a user of the release"),
        TableRow("gopro_release_gray", "release `gray`", None, None, 6_876_449, "release code"),
    )
}

ROW_SETS = {
    "ablation": [r for r in ROWS if r.startswith("ablation_")],
    "release": [r for r in ROWS if r.startswith("gopro_release_")],
    "all": list(ROWS),
}


def resolve_rows(names: Sequence[str]) -> list[str]:
    """Row names, with the sets `ablation`, `release` and `all` expanded; unknown names refused."""
    rows: list[str] = []
    for name in names:
        for row in ROW_SETS.get(name, [name]):
            if row not in ROWS:
                raise ValueError(
                    f"unknown table row {row!r}; choose from {', '.join(ROWS)} or {', '.join(ROW_SETS)}"
                )
            if row not in rows:
                rows.append(row)
    return rows


def compose_row(row: str, overrides: Sequence[str] = ()) -> DictConfig:
    """The training config of a row, composed as `train.py experiment=<row> ...` would."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            return compose(config_name="train", overrides=[f"experiment={row}", *overrides])
    finally:
        GlobalHydra.instance().clear()


def full_size_parameters(row: str) -> int:
    """Parameters of the row's network as the experiment defines it (no budget overrides)."""
    return parameter_count(hydra.utils.instantiate(compose_row(row).model.net))


def _fmt(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def _millions(count: float | None) -> str:
    return "" if count is None else f"{count / 1e6:.2f}M"


def table_markdown(
    results: Sequence[tuple[str, Mapping[str, Any]]], title: str = "SRN-DeblurNet: paper vs ours"
) -> str:
    """One row per (experiment, evaluation summary): the paper's numbers, then ours."""
    lines = [
        f"### {title}",
        "",
        "| row | experiment | paper PSNR | paper SSIM | paper params | params (row as defined) |"
        " blurry PSNR | our PSNR | our SSIM | params (as trained) | s / image |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    sources = []
    for experiment, summary in results:
        row = ROWS.get(experiment, TableRow(experiment, experiment))
        overall = summary["overall"]
        as_defined = _millions(full_size_parameters(experiment)) if experiment in ROWS else ""
        lines.append(
            f"| {row.label} | `{experiment}` | {_fmt(row.paper_psnr, '.2f')} | {_fmt(row.paper_ssim, '.4f')}"
            f" | {_millions(row.paper_params)} | {as_defined}"
            f" | {overall['input_psnr']:.2f} | {overall['psnr']:.2f} | {overall['ssim']:.4f}"
            f" | {_millions(summary['parameters'])} | {overall['seconds']:.3f} |"
        )
        if row.source and (row.paper_psnr or row.paper_ssim or row.paper_params):
            sources.append(f"{row.label}: {row.source}")
    protocol = results[0][1].get("protocol", "") if results else ""
    lines += ["", f"Ours. {protocol} Runtime on {results[0][1].get('device', '?') if results else '?'}."]
    if sources:
        lines.append(f"Published numbers: {'; '.join(sources)}. Empty cells: not given, or not verified.")
    return "\n".join(lines) + "\n"
