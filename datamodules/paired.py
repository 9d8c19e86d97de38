"""The base of every DataModule here: paired crops for training, full images for val and test.

A dataset only says where its pairs are (`find_pairs`); splitting, caching, augmentation,
grey conversion and the loaders are the same for GOPRO, the synthetic set, RealBlur, HIDE and
paired folders.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pytorch_lightning as pl
from omegaconf import DictConfig, ListConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only
from torch.utils.data import DataLoader

from datamodules.cache import DecodedPairCache
from datamodules.datasets import PairedImageDataset, paired_augmentations
from datamodules.pairs import ImagePair, describe, split_by_sequence


class PairedDataModule(pl.LightningDataModule):
    """Random paired crops of the training pairs; full images of the test pairs for val and test.

    Args:
        data_dir: the dataset's root folder.
        batch_size: training crops per optimizer step (16 in the paper).
        crop_size: side of the random paired crop (256 in the paper).
        train_channels: channels of the network being trained. With 1 the training crops are
            converted to grey, as the release trains its grey models, unless `fold_rgb`.
            `None` (the configs' default) is filled in from the network by `train.py`; outside
            training it means RGB.
        fold_rgb: give a 1-channel network RGB crops (it runs R, G, B as separate samples).
        train_samples_per_epoch: crops per epoch; `None` = one per training pair.
        cache_images: keep decoded images in memory, per loader process (small datasets).
        num_workers: loader processes.
        val_sequences: `None` validates on the test split (the release has no validation
            split). Otherwise whole training sequences are held out for validation: a list of
            names, a count, or a fraction of the sequences, drawn with `split_seed`.
        split_seed: seed of the validation sequences' draw.
        hflip, vflip, rot90: paired random flips and 90-degree rotations of the training
            crops (off in the paper).
        cache_dir: the loader's fast path: decode every training image once into a
            memory-mapped file under this folder and cut crops from it (same samples).
            `None` decodes image files for every crop.
    """

    name = "paired data"

    def __init__(
        self,
        data_dir: str | Path,
        batch_size: int = 16,
        crop_size: int = 256,
        train_channels: int | None = None,
        fold_rgb: bool = False,
        train_samples_per_epoch: int | None = None,
        cache_images: bool = False,
        num_workers: int = 0,
        pin_memory: bool = False,
        val_sequences: int | float | Sequence[str] | None = None,
        split_seed: int = 0,
        hflip: bool = False,
        vflip: bool = False,
        rot90: bool = False,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__()
        if train_channels not in (None, 1, 3):
            raise ValueError(
                f"train_channels must be 1, 3 or null (follow the network), got {train_channels}"
            )
        if cache_images and cache_dir:
            raise ValueError(
                "choose one image cache: data.cache_images (in memory) or data.cache_dir (memory-mapped)"
            )
        # Subclasses' arguments too: Lightning collects the whole constructor call's frame.
        self.save_hyperparameters(logger=False)
        # Hydra hands lists over as ListConfig. Lightning stores these values in every
        # checkpoint, which must load with weights_only=True.
        for key, value in self.hparams.items():
            if isinstance(value, (DictConfig, ListConfig)):
                self.hparams[key] = OmegaConf.to_container(value, resolve=True)
        self.data_train: PairedImageDataset | None = None
        self.data_val: PairedImageDataset | None = None
        self.data_test: PairedImageDataset | None = None

    @property
    def data_dir(self) -> Path:
        return Path(self.hparams.data_dir).expanduser()

    @property
    def source(self) -> str:
        """Where the pairs come from, for the log."""
        return str(self.data_dir)

    def find_pairs(self, split: str) -> list[ImagePair]:
        """The pairs of `split` (`train` or `test`)."""
        raise NotImplementedError(f"{type(self).__name__} must say where its {split} pairs are")

    def split_pairs(self) -> dict[str, list[ImagePair]]:
        """Pairs of the train, val and test splits; val is test unless `val_sequences` is set."""
        hp = self.hparams
        train, test = self.find_pairs("train"), self.find_pairs("test")
        val = test
        if hp.val_sequences is not None:
            train, val = split_by_sequence(train, hp.val_sequences, hp.split_seed)
        return {"train": train, "val": val, "test": test}

    def prepare_data(self) -> None:
        # Once per node, before any worker or rank reads: decode into the fast-path cache.
        if self.hparams.cache_dir:
            DecodedPairCache.open_or_build(self.split_pairs()["train"], self.hparams.cache_dir)

    def _dataset(self, pairs: list[ImagePair], train: bool) -> PairedImageDataset:
        hp = self.hparams
        if not train:
            # Full images, read once per validation: decoding them is not the bottleneck.
            return PairedImageDataset(pairs, cache=hp.cache_images)
        decoded = DecodedPairCache.open_or_build(pairs, hp.cache_dir) if hp.cache_dir else None
        return PairedImageDataset(
            pairs,
            crop_size=hp.crop_size,
            grey=hp.train_channels == 1 and not hp.fold_rgb,
            samples_per_epoch=hp.train_samples_per_epoch,
            cache=hp.cache_images,
            augment=paired_augmentations(hp.hflip, hp.vflip, hp.rot90),
            decoded_cache=decoded,
        )

    def setup(self, stage: str | None = None) -> None:
        if stage in ("test", "predict"):  # evaluation reads the test split only
            if self.data_test is None:
                test = self.find_pairs("test")
                self._report({"test": test})
                self.data_test = self._dataset(test, train=False)
            return
        if self.data_train is not None:
            return
        splits = self.split_pairs()
        self._report(splits)
        self.data_train = self._dataset(splits["train"], train=True)
        if self.data_test is None:
            self.data_test = self._dataset(splits["test"], train=False)
        same = splits["val"] is splits["test"]
        self.data_val = self.data_test if same else self._dataset(splits["val"], train=False)

    @rank_zero_only
    def _report(self, splits: dict[str, list[ImagePair]]) -> None:
        log = logging.getLogger(type(self).__module__)  # each dataset logs under its own module
        for split, pairs in splits.items():
            if split == "val" and pairs is splits["test"]:
                log.info(
                    "%s val: the test split (set data.val_sequences to hold out training sequences)",
                    self.name,
                )
            else:
                log.info("%s %s: %s (%s)", self.name, split, describe(pairs), self.source)

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
        return self._loader(self.data_val, 1, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.data_test, 1, shuffle=False)
