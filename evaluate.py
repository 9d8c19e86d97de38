"""Score a checkpoint on full-size test images: `python evaluate.py ckpt_path=... protocol=matlab`."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from srn_deblur.evaluation import run_evaluation


@hydra.main(version_base="1.3", config_path="configs", config_name="eval")
def main(cfg: DictConfig) -> float:
    return run_evaluation(cfg)["overall"]["psnr"]


if __name__ == "__main__":
    main()
