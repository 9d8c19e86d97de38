"""LightningDataModule for GOPRO: its folder layout or the release's list files."""

from __future__ import annotations

import logging
from pathlib import Path

from pytorch_lightning.utilities import rank_zero_only

from datamodules.paired import PairedDataModule
from datamodules.pairs import ImagePair, find_gopro_pairs, read_pair_list

log = logging.getLogger(__name__)


class GoProDataModule(PairedDataModule):
    """GOPRO_Large: `train/` and `test/` of `<sequence>/{blur,blur_gamma,sharp}/<frame>.png`.

    Args:
        data_dir: folder holding `train/` and `test/` (e.g. `.../GOPRO_Large`).
        blur_dir: `blur` (the release's choice) or `blur_gamma` (about 3 dB harder to score on).
        train_list, test_list: list files of `sharp_path blur_path` lines (the release's
            `datalist_gopro.txt`), paths relative to `data_dir/train` and `data_dir/test`;
            `None` scans the folders instead.
        **kwargs: the `PairedDataModule` arguments (batch size, crops, splits, caches, ...).
    """

    name = "GOPRO"

    def __init__(
        self,
        data_dir: str | Path,
        blur_dir: str = "blur",
        train_list: str | None = None,
        test_list: str | None = None,
        **kwargs,
    ) -> None:
        super().__init__(data_dir=data_dir, **kwargs)

    @property
    def source(self) -> str:
        return f"{self.hparams.blur_dir} from {self.data_dir}"

    def find_pairs(self, split: str) -> list[ImagePair]:
        """The pairs of `split` (`train` or `test`), from its list file or its folders."""
        list_file = self.hparams.get(f"{split}_list")
        if list_file:
            return read_pair_list(list_file, root=self.data_dir / split)
        return find_gopro_pairs(self.data_dir, split, self.hparams.blur_dir)

    @rank_zero_only
    def _report(self, splits: dict[str, list[ImagePair]]) -> None:
        super()._report(splits)
        if "test" in splits and self.hparams.blur_dir == "blur_gamma":
            log.warning(
                "GOPRO test on blur_gamma: the published numbers (the paper, the release) are scored on"
                " blur, and blur_gamma scores about 3 dB lower; set data.blur_dir=blur to compare with them"
            )
