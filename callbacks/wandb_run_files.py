"""Files a wandb run keeps beside its metrics: the code it ran and the best checkpoint it made."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.loggers import WandbLogger

from srn_deblur.checkpoints import rating_checkpoint_callback

# What defines a run's behaviour: the packages, the configs and the entry points.
CODE_DIRS = ("srn_deblur", "datamodules", "callbacks", "configs")
CODE_SUFFIXES = (".py", ".yaml")


def code_files(root: str | Path) -> Iterator[tuple[Path, str]]:
    """(file, name inside the artifact) for the entry points and `CODE_DIRS` under `root`."""
    root = Path(root)
    for path in sorted(root.glob("*.py")):
        yield path, path.name
    for directory in CODE_DIRS:
        for path in sorted((root / directory).rglob("*")):
            if path.suffix in CODE_SUFFIXES and "__pycache__" not in path.parts:
                yield path, path.relative_to(root).as_posix()
    if (root / "pyproject.toml").is_file():
        yield root / "pyproject.toml", "pyproject.toml"


class WandbRunFiles(pl.Callback):
    """With a `WandbLogger`, logs the source snapshot at fit start and the best checkpoint at fit end.

    The git commit sits in the run's config (`code.*`, from `train()`), but uncommitted edits do
    not: the `code` artifact holds the files as they ran. The best checkpoint goes up as a `model`
    artifact with alias `best` and its score. WandbLogger's own `log_model` is left off on purpose:
    it uploads the checkpoints of whichever ModelCheckpoint saved last, which with the mid-epoch
    `step_checkpoint` is not the one that tracks the best validation PSNR. Does nothing without
    a WandbLogger; only rank zero uploads. Offline runs keep both artifacts for `wandb sync`.

    Args:
        code_root: folder holding `train.py` and the packages; the repository root by default.
    """

    def __init__(self, code_root: str | Path | None = None) -> None:
        self.code_root = Path(code_root) if code_root is not None else Path(__file__).resolve().parents[1]

    @staticmethod
    def _runs(trainer: pl.Trainer) -> list:
        if not trainer.is_global_zero:
            return []
        return [logger.experiment for logger in trainer.loggers if isinstance(logger, WandbLogger)]

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        runs = self._runs(trainer)
        if not runs:  # no wandb logger: wandb need not even be installed
            return
        import wandb

        for run in runs:
            artifact = wandb.Artifact(f"code-{run.id}", type="code")
            for path, name in code_files(self.code_root):
                artifact.add_file(str(path), name=name)
            run.log_artifact(artifact)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        runs = self._runs(trainer)
        callback = rating_checkpoint_callback(trainer)
        best = getattr(callback, "best_model_path", "")
        if not runs or not best or not Path(best).is_file():
            return
        import wandb

        score = callback.best_model_score
        for run in runs:
            artifact = wandb.Artifact(
                f"model-{run.id}",
                type="model",
                metadata={
                    "monitor": callback.monitor,
                    "score": None if score is None else float(score),
                    "file": Path(best).name,
                },
            )
            artifact.add_file(best, name="best.ckpt")
            run.log_artifact(artifact, aliases=["best"])
