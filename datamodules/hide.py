"""LightningDataModule for HIDE (human-aware motion deblurring; 6,397 training, 2,025 test pairs).

    <data_dir>/train/<name>.png                                  blurry training images
    <data_dir>/test/{test-close-ups,test-long-shot}/<name>.png   blurry test images
    <data_dir>/GT/<name>.png                                     every sharp image, same names

Papers test GOPRO-trained models on it; the per-sequence rows of a table are the two subsets.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from datamodules.gopro import GoProDataModule
from datamodules.pairs import HIDE_TEST_SUBSETS, ImagePair, find_hide_pairs


class HIDEDataModule(GoProDataModule):
    """`GoProDataModule` over the HIDE layout.

    Args:
        data_dir: the `HIDE_dataset` folder (holding `GT/`, `train/`, `test/`).
        test_subsets: which test folders to read (both by default, as the papers score).
        **kwargs: the other `GoProDataModule` arguments (batch size, crops, caches, ...).
    """

    name = "HIDE"

    def __init__(
        self, data_dir: str | Path, test_subsets: Sequence[str] = HIDE_TEST_SUBSETS, **kwargs
    ) -> None:
        for key in ("train_list", "test_list", "blur_dir"):
            if kwargs.get(key) not in (None, "blur"):
                raise ValueError(
                    f"{key} is a GOPRO option; HIDE is read from its folders (data.test_subsets)"
                )
            kwargs.pop(key, None)
        super().__init__(data_dir=data_dir, blur_dir="HIDE", **kwargs)

    def find_pairs(self, split: str) -> list[ImagePair]:
        return find_hide_pairs(self.data_dir, split, list(self.hparams.test_subsets))
