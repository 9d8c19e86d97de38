"""Which checkpoint the app serves: the one asked for, or the newest that training wrote."""

from __future__ import annotations

from pathlib import Path

from srn_deblur.checkpoints import newest_checkpoint
from srn_deblur.inference import CheckpointError


def resolve_checkpoint(ckpt_path: str | Path | None, log_dir: str | Path, task_name: str = "train") -> Path:
    """`ckpt_path` if given (it must exist), else the newest checkpoint of `task_name`.

    The error for "nothing found" gives the exact commands that make or name a checkpoint.
    """
    if ckpt_path:
        path = Path(ckpt_path).expanduser()
        if not path.is_file():
            raise CheckpointError(
                f"ckpt_path={ckpt_path} does not exist: pass the .ckpt that train.py wrote"
                f" (under <log_dir>/<task_name>/runs/<time>/checkpoints/), or leave ckpt_path out"
                f" to serve the newest demo checkpoint"
            )
        return path
    path = newest_checkpoint(log_dir, task_name)
    if path is None:
        where = Path(log_dir) / task_name / "runs"
        raise CheckpointError(
            f"no ckpt_path given and no checkpoint found under {where}/*/checkpoints/. Train the demo"
            f" model first with `python train.py` (a few CPU minutes; it writes {where}/<time>/checkpoints/"
            "last.ckpt) and run `python app.py` again, or serve another checkpoint with"
            " `python app.py ckpt_path=/path/to/model.ckpt`"
        )
    return path


__all__ = ["resolve_checkpoint"]
