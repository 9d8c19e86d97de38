"""Datasets of (blurry, sharp) image pairs: random paired crops for training, full images
for validation and test."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from datamodules.pairs import ImagePair

# ITU-R BT.601 luma weights, as TF's rgb_to_grayscale used by the release.
_GREY_WEIGHTS = np.array([0.2989, 0.5870, 0.1140], dtype=np.float32)


class ImageReadError(OSError):
    """An image file could not be decoded."""


def read_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as `(H, W, 3)` uint8 RGB; grey files are replicated to 3 channels."""
    data = np.fromfile(str(path), dtype=np.uint8) if Path(path).is_file() else None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data is not None and data.size else None
    if image is None:
        raise ImageReadError(
            f"cannot read image {path}: the file is missing, empty, truncated or not an image."
            " Replace it or remove it (and its twin) from the dataset."
        )
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def to_tensor(image: np.ndarray, grey: bool = False) -> Tensor:
    """`(H, W, 3)` uint8 -> `(C, H, W)` float32 in [0, 1]; C = 1 if `grey` else 3."""
    x = image.astype(np.float32) / 255.0
    if grey:
        x = (x @ _GREY_WEIGHTS)[..., None]  # (H, W, 1)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


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
    """

    def __init__(
        self,
        pairs: Sequence[ImagePair],
        crop_size: int | None = None,
        grey: bool = False,
        samples_per_epoch: int | None = None,
        cache: bool = False,
        augment: Sequence[A.BasicTransform] = (),
    ) -> None:
        if not pairs:
            raise ValueError("PairedImageDataset needs at least one image pair")
        self.pairs = list(pairs)
        self.crop_size = crop_size
        self.grey = grey
        self.samples_per_epoch = samples_per_epoch
        self.cache: dict[int, tuple[np.ndarray, np.ndarray]] | None = {} if cache else None
        transforms = list(augment)
        if crop_size is not None:
            transforms.insert(0, A.RandomCrop(crop_size, crop_size))
        self.transform = A.Compose(transforms, additional_targets={"sharp": "image"}) if transforms else None

    def __len__(self) -> int:
        return self.samples_per_epoch or len(self.pairs)

    def load_pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Decoded `(H, W, 3)` uint8 blurry and sharp images, checked to have one size."""
        if self.cache is not None and index in self.cache:
            return self.cache[index]
        pair = self.pairs[index]
        blurry, sharp = read_rgb(pair.blurry), read_rgb(pair.sharp)
        if blurry.shape != sharp.shape:
            raise ValueError(
                f"blurry image {pair.blurry} is {blurry.shape[1]}x{blurry.shape[0]} but its sharp"
                f" twin {pair.sharp} is {sharp.shape[1]}x{sharp.shape[0]}; a pair must have one size"
            )
        if self.crop_size is not None and min(blurry.shape[:2]) < self.crop_size:
            raise ValueError(
                f"image {pair.blurry} ({blurry.shape[1]}x{blurry.shape[0]}) is smaller than the"
                f" {self.crop_size}x{self.crop_size} crop; lower data.crop_size or remove the image"
            )
        if self.cache is not None:
            self.cache[index] = (blurry, sharp)
        return blurry, sharp

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        blurry, sharp = self.load_pair(index % len(self.pairs))
        if self.transform is not None:
            out = self.transform(image=blurry, sharp=sharp)
            blurry, sharp = out["image"], out["sharp"]
        return to_tensor(blurry, self.grey), to_tensor(sharp, self.grey)
