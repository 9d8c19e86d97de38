"""Datasets of (blurry, sharp) image pairs: random paired crops for training, full images
for validation and test."""

from __future__ import annotations

import random
from collections.abc import Sequence

import albumentations as A
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, get_worker_info

from datamodules.cache import DecodedPairCache
from datamodules.image_io import to_tensor
from datamodules.pairs import ImagePair, read_pair


def paired_augmentations(
    hflip: bool = False, vflip: bool = False, rot90: bool = False
) -> list[A.BasicTransform]:
    """Random flips (each with probability 0.5) and a uniformly drawn multiple of 90 degrees.

    The paper trains without any of them; they are here for extensions. `PairedImageDataset`
    applies them to the blurry and the sharp crop alike.
    """
    transforms: list[A.BasicTransform] = []
    if hflip:
        transforms.append(A.HorizontalFlip(p=0.5))
    if vflip:
        transforms.append(A.VerticalFlip(p=0.5))
    if rot90:
        transforms.append(A.RandomRotate90(p=1.0))  # k in {0, 1, 2, 3}: identity included
    return transforms


class PairedCompose(A.Compose):
    """`A.Compose` whose transforms draw from one shared random stream after reseeding.

    albumentations 2.0.8's `set_random_seed` (also run by `Compose(seed=...)`) gives every
    transform its own generator built from the same seed, so two flips with p=0.5 would always
    fire together (a horizontal flip never came alone). Sharing one generator avoids that.
    """

    def set_random_seed(self, seed: int | None) -> None:
        self.seed = seed
        self.set_random_state(np.random.default_rng(seed), random.Random(seed))


class PairedImageDataset(Dataset):
    """(blurry, sharp) tensors from a list of pairs.

    Args:
        pairs: the image pairs.
        crop_size: side of the random paired crop (training); `None` gives full images.
        grey: convert to 1-channel grey after cropping (the release trains its grey models so).
        samples_per_epoch: length of an epoch in crops; `None` = one crop per pair. Small
            datasets use it so an "epoch" is long enough to be a sensible validation interval.
        cache: keep decoded images in memory (per worker) instead of decoding PNGs every time.
        augment: extra albumentations transforms applied identically to both images.
        decoded_cache: the fast path: read pixels from this memory-mapped cache of `pairs`
            instead of decoding image files (same pixels, so the same samples).
        seed: seed of the random crops and augmentations; `None` draws one from torch's
            generator, so `pl.seed_everything` makes runs reproducible. Each DataLoader worker
            reseeds from its own torch seed, so workers never repeat each other's crops.
    """

    def __init__(
        self,
        pairs: Sequence[ImagePair],
        crop_size: int | None = None,
        grey: bool = False,
        samples_per_epoch: int | None = None,
        cache: bool = False,
        augment: Sequence[A.BasicTransform] = (),
        decoded_cache: DecodedPairCache | None = None,
        seed: int | None = None,
    ) -> None:
        if not pairs:
            raise ValueError("PairedImageDataset needs at least one image pair")
        self.pairs = list(pairs)
        if decoded_cache is not None and not decoded_cache.matches(self.pairs):
            raise ValueError(
                f"decoded-image cache {decoded_cache.data_file} holds other pairs than this dataset"
            )
        self.crop_size = crop_size
        self.grey = grey
        self.samples_per_epoch = samples_per_epoch
        self.cache: dict[int, tuple[np.ndarray, np.ndarray]] | None = (
            {} if cache and decoded_cache is None else None
        )
        self.decoded_cache = decoded_cache
        self.seed = int(torch.randint(0, 2**31 - 1, ()).item()) if seed is None else seed
        self._seeded_worker: int | None = None
        transforms = list(augment)
        if crop_size is not None:
            transforms.insert(0, A.RandomCrop(crop_size, crop_size))
        self.transform = (
            PairedCompose(transforms, additional_targets={"sharp": "image"}, seed=self.seed)
            if transforms
            else None
        )

    def __len__(self) -> int:
        return self.samples_per_epoch or len(self.pairs)

    def load_pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Decoded `(H, W, 3)` uint8 blurry and sharp images, checked to have one size."""
        if self.decoded_cache is not None:
            blurry, sharp = self.decoded_cache.pair(index)  # sizes were checked when it was built
        elif self.cache is not None and index in self.cache:
            return self.cache[index]
        else:
            blurry, sharp = read_pair(self.pairs[index])
        if self.crop_size is not None and min(blurry.shape[:2]) < self.crop_size:
            pair = self.pairs[index]
            raise ValueError(
                f"image {pair.blurry} ({blurry.shape[1]}x{blurry.shape[0]}) is smaller than the"
                f" {self.crop_size}x{self.crop_size} crop; lower data.crop_size or remove the image"
            )
        if self.cache is not None:
            self.cache[index] = (blurry, sharp)
        return blurry, sharp

    def _reseed_in_worker(self) -> None:
        # Forked workers inherit one random state: without this, worker k would cut the same
        # crop positions as worker 0. torch gives each worker its own seed (base seed + id).
        info = get_worker_info()
        if info is not None and self._seeded_worker != info.id and self.transform is not None:
            self.transform.set_random_seed((self.seed + info.seed) % 2**32)
            self._seeded_worker = info.id

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        blurry, sharp = self.load_pair(index % len(self.pairs))
        if self.transform is not None:
            self._reseed_in_worker()
            out = self.transform(image=blurry, sharp=sharp)
            blurry, sharp = out["image"], out["sharp"]
        return to_tensor(blurry, self.grey), to_tensor(sharp, self.grey)
