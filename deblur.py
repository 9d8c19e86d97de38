"""Deblur your own photos and videos: `python deblur.py input=... [output=...] [ckpt_path=...]`.

See docs/deblur.md. Exit status 0 when every file was deblurred, 1 when some were skipped
(named in the summary), 2 when nothing could start (no checkpoint, no input).
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from srn_deblur.inference import CheckpointError
from srn_deblur.runner import RunOptions, run
from srn_deblur.video import Selection
from srn_deblur.webapp.checkpoints import resolve_checkpoint


@hydra.main(version_base="1.3", config_path="configs", config_name="deblur")
def main(cfg: DictConfig) -> None:
    try:
        checkpoint = resolve_checkpoint(cfg.get("ckpt_path"), cfg.paths.log_dir, cfg.checkpoint_task)
        deblurrer = hydra.utils.instantiate(cfg.deblurrer, checkpoint=checkpoint)
        options = RunOptions(
            recursive=cfg.recursive,
            side_by_side=cfg.side_by_side,
            stills=cfg.stills,
            video=cfg.video,
            selection=Selection(cfg.start, cfg.end, cfg.every),
            max_pixels=cfg.max_pixels,
            progress=cfg.progress,
        )
        print(f"deblurring with {checkpoint} on {deblurrer.device} ({deblurrer.precision})", file=sys.stderr)
        summary = run(str(cfg.input), cfg.output, deblurrer, options)
    except (CheckpointError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    print("\n".join(summary.lines()))
    sys.exit(1 if summary.skipped else 0)


if __name__ == "__main__":
    main()
