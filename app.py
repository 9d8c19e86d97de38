"""Serve the deblurring web app. `python app.py [ckpt_path=...]`; see docs/webapp.md."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from srn_deblur.inference import CheckpointError
from srn_deblur.webapp.server import serve


@hydra.main(version_base="1.3", config_path="configs", config_name="app")
def main(cfg: DictConfig) -> None:
    try:
        serve(cfg)
    except CheckpointError as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
