"""LightningDataModule for RealBlur-J and RealBlur-R, read through the dataset's own list files.

RealBlur ships `RealBlur_{J,R}_{train,test}_list.txt` at its root, one `gt_path blur_path` pair a
line, relative to that root:

    RealBlur-J_ECC_IMCORR_centroid_itensity_ref/scene230/gt/gt_1.png RealBlur-J_.../scene230/blur/blur_1.png

A pair's sequence is its scene. Score it with `protocol=realblur` (the dataset's aligned
evaluation): its sharp and blurry shots come from two cameras and are not pixel-exact.
"""

from __future__ import annotations

from pathlib import Path

from datamodules.paired import PairedDataModule
from datamodules.pairs import ImagePair, read_pair_list

VARIANTS = ("J", "R")


class RealBlurDataModule(PairedDataModule):
    """RealBlur's list files (3,758 training and 980 test pairs per variant).

    Args:
        data_dir: the folder holding the list files and the `RealBlur-*` folders.
        variant: `J` (camera JPEGs) or `R` (developed RAW images).
        train_list, test_list: other list files (absolute, or relative to `data_dir`); `None`
            takes the official `RealBlur_<variant>_<split>_list.txt`.
        **kwargs: the `PairedDataModule` arguments (batch size, crops, caches, ...).
    """

    name = "RealBlur"

    def __init__(
        self,
        data_dir: str | Path,
        variant: str = "J",
        train_list: str | None = None,
        test_list: str | None = None,
        **kwargs,
    ) -> None:
        if variant not in VARIANTS:
            raise ValueError(
                f"data.variant must be one of {VARIANTS} (RealBlur-J or RealBlur-R), got {variant!r}"
            )
        super().__init__(data_dir=data_dir, **kwargs)

    @property
    def source(self) -> str:
        return f"RealBlur-{self.hparams.variant} from {self.data_dir}"

    def list_file(self, split: str) -> Path:
        """The list file of `split`: the configured one, or the official one for the variant."""
        name = self.hparams.get(f"{split}_list") or f"RealBlur_{self.hparams.variant}_{split}_list.txt"
        path = Path(name).expanduser()
        return path if path.is_absolute() else self.data_dir / path

    def find_pairs(self, split: str) -> list[ImagePair]:
        return read_pair_list(self.list_file(split), root=self.data_dir)
