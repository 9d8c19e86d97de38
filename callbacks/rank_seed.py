"""Distinct, reproducible random crops on every rank of a distributed run."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytorch_lightning as pl
from lightning_utilities.core.apply_func import apply_to_collection
from torch.utils.data import DataLoader


def rank_seed(seed: int, rank: int, step: int = 0) -> int:
    """A 32-bit seed mixed from the run's seed, the process rank and the global step.

    SeedSequence decorrelates neighbouring inputs, so rank 0 and rank 1 (or step 0 and a resumed
    step 1200) get unrelated streams rather than shifted copies of one.
    """
    return int(np.random.SeedSequence([seed, rank, step]).generate_state(1)[0])


def reseed_augmentation(dataset: Any, seed: int) -> bool:
    """Reseed a dataset's albumentations pipeline (`dataset.transform`) and its `seed` attribute,
    from which DataLoader workers derive their own; returns False if it has neither."""
    reseeded = False
    transform = getattr(dataset, "transform", None)
    if hasattr(transform, "set_random_seed"):
        transform.set_random_seed(seed)
        reseeded = True
    if isinstance(getattr(dataset, "seed", None), int):
        dataset.seed = seed
        reseeded = True
    return reseeded


class RankSeededAugmentation(pl.Callback):
    """Gives each rank of a (DDP) run its own stream of random training crops.

    `seed_everything(seed)` puts the same seed on every rank, as it must (same initial weights,
    one sampler permutation split between ranks). The crops, however, come from albumentations'
    own generator, and identical generators would cut identical windows on every rank. At the
    start of fitting this reseeds the training dataset from `rank_seed(seed, rank, step)`:
    distinct per rank, reproducible per run, and fresh after a resume instead of replaying the
    first epoch's crops. A single-process run is rank 0 of the same scheme. With `seed=None`
    (an unseeded run) it does nothing.
    """

    def __init__(self, seed: int | None) -> None:
        self.seed = seed

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Runs after the loaders are built and before the first training batch is drawn
        # (and before any training worker starts), so every crop of the run is covered.
        if self.seed is None:  # an unseeded run keeps whatever streams it drew
            return
        seed = rank_seed(self.seed, trainer.global_rank, trainer.global_step)
        datasets: list[Any] = []
        apply_to_collection(trainer.train_dataloader, DataLoader, lambda dl: datasets.append(dl.dataset))
        for dataset in datasets:
            reseed_augmentation(dataset, seed)
