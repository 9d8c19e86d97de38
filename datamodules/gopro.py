"""LightningDataModule for data in the GOPRO folder layout (GOPRO itself or the synthetic set)."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
from torch.utils.data import DataLoader

from datamodules.datasets import PairedImageDataset
from datamodules.pairs import find_gopro_pairs


class GoProDataModule(pl.LightningDataModule):
    """Random paired crops of `train/` for training; full images of `test/` for val and test.

    Args:
        data_dir: folder holding `train/` and `test/` (e.g. `.../GOPRO_Large`).
        blur_dir: `blur` (the release's choice) or `blur_gamma` (costs ~3 dB, see the spec).
        batch_size: training crops per optimizer step (16 in the paper).
        crop_size: side of the random paired crop (256 in the paper).
        train_channels: channels of the network being trained. With 1 the training crops are
            converted to grey, as the release trains its grey models, unless `fold_rgb`.
        fold_rgb: give a 1-channel network RGB crops (it runs R, G, B as separate samples).
        train_samples_per_epoch: crops per epoch; `None` = one per training pair.
        cache_images: keep decoded images in memory (small datasets).
        num_workers: loader processes.
    """

    def __init__(
        self,
        data_dir: str | Path,
        blur_dir: str = "blur",
        batch_size: int = 16,
        crop_size: int = 256,
        train_channels: int = 3,
        fold_rgb: bool = False,
        train_samples_per_epoch: int | None = None,
        cache_images: bool = False,
        num_workers: int = 0,
        pin_memory: bool = False,
    ) -> None:
        super().__init__()
        if train_channels not in (1, 3):
            raise ValueError(f"train_channels must be 1 or 3, got {train_channels}")
        self.save_hyperparameters(logger=False)
        self.data_train: PairedImageDataset | None = None
        self.data_test: PairedImageDataset | None = None

    @property
    def data_dir(self) -> Path:
        return Path(self.hparams.data_dir).expanduser()

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        if stage in (None, "fit") and self.data_train is None:
            self.data_train = PairedImageDataset(
                find_gopro_pairs(self.data_dir, "train", hp.blur_dir),
                crop_size=hp.crop_size,
                grey=hp.train_channels == 1 and not hp.fold_rgb,
                samples_per_epoch=hp.train_samples_per_epoch,
                cache=hp.cache_images,
            )
        if self.data_test is None:
            self.data_test = PairedImageDataset(
                find_gopro_pairs(self.data_dir, "test", hp.blur_dir), cache=hp.cache_images
            )

    def _loader(self, dataset: PairedImageDataset, batch_size: int, shuffle: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            drop_last=shuffle,
            num_workers=self.hparams.num_workers,
            pin_memory=self.hparams.pin_memory,
            persistent_workers=self.hparams.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.data_train, self.hparams.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        # Full images of different sizes: one per batch.
        return self._loader(self.data_test, 1, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.data_test, 1, shuffle=False)
