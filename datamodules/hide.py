"""LightningDataModule for HIDE (human-aware motion deblurring; 6,397 training, 2,025 test pairs).

    <data_dir>/train/<name>.png                                  blurry training images
    <data_dir>/test/{test-close-ups,test-long-shot}/<name>.png   blurry test images
    <data_dir>/GT/<name>.png                                     every sharp image, same names

Papers test GOPRO-trained models on it; the per-sequence rows of a table are the two subsets.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from datamodules.paired import PairedDataModule
from datamodules.pairs import HIDE_TEST_SUBSETS, ImagePair, find_hide_pairs


class HIDEDataModule(PairedDataModule):
    """The HIDE layout.

    Args:
        data_dir: the `HIDE_dataset` folder (holding `GT/`, `train/`, `test/`).
        test_subsets: which test folders to read (both by default, as the papers score).
        **kwargs: the `PairedDataModule` arguments (batch size, crops, caches, ...).
    """

    name = "HIDE"

    def __init__(
        self, data_dir: str | Path, test_subsets: Sequence[str] = HIDE_TEST_SUBSETS, **kwargs
    ) -> None:
        super().__init__(data_dir=data_dir, **kwargs)

    def find_pairs(self, split: str) -> list[ImagePair]:
        return find_hide_pairs(self.data_dir, split, list(self.hparams.test_subsets))
