"""Train SRN-DeblurNet. `python train.py` runs the CPU demo; see README for the rest."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from srn_deblur.training import train


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    metrics = train(cfg)
    # Sweeps (hparams_search) minimise or maximise this value.
    return metrics.get(cfg.get("optimized_metric")) if cfg.get("optimized_metric") else None


if __name__ == "__main__":
    main()
