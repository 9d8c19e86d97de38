"""LightningDataModule for any `sharp/` + `blurred/` folder pair matched by file name.

Covers the mobile-photo "blur dataset" (`sharp/`, `motion_blurred/`, `defocused_blurred/`, files
`<id>_<device>_<S|M|F>.<ext>`): choose the blurred folder with `blurred_dir`. Its triplets are
hand-held shots of one scene, not pixel-aligned, so PSNR/SSIM on it measure alignment as much
as sharpness; use it for training data or visual checks rather than for scores.
"""

from __future__ import annotations

from pathlib import Path

from datamodules.paired import PairedDataModule
from datamodules.pairs import DatasetLayoutError, ImagePair, find_folder_pairs, split_by_sequence


class PairedFolderDataModule(PairedDataModule):
    """Paired folders, in one of two layouts:

        <data_dir>/{train,test}/{sharp_dir,blurred_dir}/<name>   (a fixed split), or
        <data_dir>/{sharp_dir,blurred_dir}/<name>                (test_fraction held out)

    Args:
        sharp_dir, blurred_dir: the two folder names.
        name_pattern: regular expression whose first group, matched against a file's stem, is
            the key pairing it with its twin (see `find_folder_pairs`); `None` = the stem.
        test_fraction: share of the pairs held out for testing when there is no `test/`
            folder, drawn with `split_seed`. Every pair is its own "sequence", so
            `val_sequences` holds out pairs too.
        **kwargs: the `PairedDataModule` arguments (batch size, crops, caches, ...).
    """

    name = "paired folder"

    def __init__(
        self,
        data_dir: str | Path,
        sharp_dir: str = "sharp",
        blurred_dir: str = "blurred",
        name_pattern: str | None = r"(.+?)(?:_[SMF])?",
        test_fraction: float = 0.2,
        **kwargs,
    ) -> None:
        super().__init__(data_dir=data_dir, **kwargs)

    @property
    def source(self) -> str:
        return f"{self.hparams.blurred_dir} from {self.data_dir}"

    def find_pairs(self, split: str) -> list[ImagePair]:
        hp = self.hparams
        if (self.data_dir / "train").is_dir() or (self.data_dir / "test").is_dir():
            if not (self.data_dir / split).is_dir():
                raise DatasetLayoutError(
                    f"{self.data_dir} has a train/ or test/ folder but no {split}/ folder; give it"
                    f" both, or neither (then data.test_fraction of the pairs are held out)"
                )
            return find_folder_pairs(self.data_dir / split, hp.sharp_dir, hp.blurred_dir, hp.name_pattern)
        pairs = find_folder_pairs(self.data_dir, hp.sharp_dir, hp.blurred_dir, hp.name_pattern)
        train, test = split_by_sequence(pairs, float(hp.test_fraction), hp.split_seed)
        return train if split == "train" else test
