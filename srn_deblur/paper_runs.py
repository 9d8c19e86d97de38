"""Running the paper's table rows: train each with `train.py`, evaluate each run, gather the table.

Rows are trained by `train.py` itself, one process per row or one Hydra multirun, so a table run
is exactly what a user would launch by hand. Each run folder is then evaluated with
`srn_deblur.evaluation` (full test images, the chosen protocol) and handed to
`srn_deblur.paper_table.table_markdown`.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import OmegaConf, open_dict

from srn_deblur.evaluation import evaluate_checkpoint
from srn_deblur.paper_table import CONFIG_DIR, REPO_ROOT, ROWS, table_markdown
from srn_deblur.protocols import DEFAULT_PROTOCOL, ScoringProtocol

log = logging.getLogger(__name__)

# A budget that trains every row for seconds on a CPU, on the synthetic set in its own folder.
# The machinery is the real one; the numbers only show that it works.
PRESETS: dict[str, list[str]] = {
    "cpu_tiny": [
        "data=synthetic",
        "trainer=cpu",
        "data.data_dir=${paths.data_dir}/synthetic_table",
        "data.train_frames=4",
        "data.test_frames=1",
        "data.max_side=128",
        "data.batch_size=4",
        "data.crop_size=64",
        "data.train_samples_per_epoch=256",  # 2 epochs x 64 steps of 4 crops
        "data.num_workers=0",
        "data.pin_memory=false",
        "model.net.widths=[8,16,16]",
        # Predict blurry + correction: a network that must first learn the identity does not
        # beat its input in a few dozen steps (docs/demo.md).
        "model.net.residual=true",
        "model.optimizer.lr=5e-4",
        "trainer.max_epochs=2",
        "trainer.check_val_every_n_epoch=1",
        "trainer.log_every_n_steps=4",
        "trainer.precision=32-true",
        "~callbacks.rich_progress_bar",
        "~callbacks.model_summary",
        "logger=csv",
        "test=false",
        "+print_config=false",
    ],
}


def train_commands(
    rows: Sequence[str], out_dir: str | Path, overrides: Sequence[str] = (), multirun: bool = False
) -> list[list[str]]:
    """The `train.py` command lines that train `rows` into `out_dir` (one, if `multirun`)."""
    out_dir = Path(out_dir).resolve()
    base = [sys.executable, str(REPO_ROOT / "train.py")]
    if multirun:
        return [[*base, "-m", f"experiment={','.join(rows)}", f"hydra.sweep.dir={out_dir}", *overrides]]
    return [[*base, f"experiment={row}", f"hydra.run.dir={out_dir / row}", *overrides] for row in rows]


def train_rows(
    rows: Sequence[str], out_dir: str | Path, overrides: Sequence[str] = (), multirun: bool = False
) -> None:
    """Train `rows` with `train.py`, stopping at the first failure with its command."""
    for command in train_commands(rows, out_dir, overrides, multirun):
        log.info("running: %s", " ".join(command))
        done = subprocess.run(command)  # from the caller's folder, as if typed there
        if done.returncode != 0:
            raise RuntimeError(f"training failed (exit {done.returncode}): {' '.join(command)}")


def find_runs(folders: Sequence[str | Path]) -> list[Path]:
    """Run folders (those with `.hydra/config.yaml`) in or under `folders`, sorted."""
    runs: set[Path] = set()
    for folder in folders:
        folder = Path(folder)
        if (folder / ".hydra" / "config.yaml").is_file():
            runs.add(folder)
        runs.update(p.parent.parent for p in folder.glob("*/.hydra/config.yaml"))
    if not runs:
        raise FileNotFoundError(
            f"no training runs (folders with .hydra/config.yaml) in {', '.join(map(str, folders))}"
        )
    return sorted(runs)


def run_experiment(run_dir: Path) -> str:
    """The experiment a run folder was trained with (Hydra's recorded choice)."""
    hydra_file = run_dir / ".hydra" / "hydra.yaml"
    if hydra_file.is_file():
        choice = OmegaConf.load(hydra_file).hydra.runtime.choices.get("experiment")
        if choice:
            return str(choice)
    return str(OmegaConf.load(run_dir / ".hydra" / "config.yaml").task_name)


def run_checkpoint(run_dir: Path, which: str = "last") -> Path:
    """`last`: the run's final weights; `best`: the one its ModelCheckpoint rated best."""
    last = run_dir / "checkpoints" / "last.ckpt"
    if not last.is_file():
        raise FileNotFoundError(f"run {run_dir} has no checkpoints/last.ckpt: did its training finish?")
    if which == "last":
        return last
    if which != "best":
        raise ValueError(f"checkpoint must be 'last' or 'best', got {which!r}")
    states = torch.load(last, map_location="cpu", weights_only=True).get("callbacks", {})
    # Only a monitoring callback rates checkpoints (last_checkpoint's "best" is just the latest).
    best = [
        s.get("best_model_path")
        for k, s in states.items()
        if k.startswith("ModelCheckpoint") and s.get("monitor") and s.get("best_model_path")
    ]
    if not best:
        raise FileNotFoundError(f"run {run_dir} recorded no best checkpoint; use checkpoint=last")
    return Path(best[0])


def load_protocol(name: str) -> ScoringProtocol:
    """The scoring protocol `configs/protocol/<name>.yaml` (as `evaluate.py protocol=<name>` takes it)."""
    path = CONFIG_DIR / "protocol" / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in path.parent.glob("*.yaml")))
        raise ValueError(f"unknown scoring protocol {name!r}: no {path}; choose from {known}")
    return hydra.utils.instantiate(OmegaConf.load(path))


def evaluate_run(
    run_dir: Path, checkpoint: str = "last", protocol: ScoringProtocol = DEFAULT_PROTOCOL, **eval_kwargs: Any
) -> dict[str, Any]:
    """Evaluate a run on the test split of the data it was trained on; cached in `<run>/eval/<protocol>/`."""
    out_dir = run_dir / "eval" / protocol.name
    summary_file = out_dir / "summary.json"
    if summary_file.is_file():
        return json.loads(summary_file.read_text())
    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    with open_dict(cfg):
        cfg.paths.output_dir = str(run_dir)  # Hydra's runtime resolver is not available here
        # A relative root (the default `.`) meant the folder the run was launched from.
        root = Path(OmegaConf.select(cfg, "paths.root_dir", default="."))
        hydra_file = run_dir / ".hydra" / "hydra.yaml"
        if not root.is_absolute() and hydra_file.is_file():
            cfg.paths.root_dir = str(Path(OmegaConf.load(hydra_file).hydra.runtime.cwd) / root)
    datamodule = hydra.utils.instantiate(cfg.data)
    ckpt = run_checkpoint(run_dir, checkpoint)
    return evaluate_checkpoint(ckpt, datamodule, out_dir, protocol=protocol, **eval_kwargs)


def gather(
    folders: Sequence[str | Path],
    checkpoint: str = "last",
    protocol: ScoringProtocol = DEFAULT_PROTOCOL,
    **eval_kwargs: Any,
) -> str:
    """Evaluate every run under `folders` (once per protocol; results are kept) and return the table."""
    results = []
    for run_dir in find_runs(folders):
        experiment = run_experiment(run_dir)
        log.info("evaluating %s (%s)", run_dir, experiment)
        results.append((experiment, evaluate_run(run_dir, checkpoint, protocol, **eval_kwargs)))
    order = {name: i for i, name in enumerate(ROWS)}
    results.sort(key=lambda r: order.get(r[0], len(order)))
    return table_markdown(results)
