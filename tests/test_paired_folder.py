"""Paired folders: blur-dataset naming, aligned crops, splits and the errors that say what to fix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules.paired_folder import PairedFolderDataModule
from datamodules.pairs import (
    DatasetLayoutError,
    find_folder_pairs,
)
from tests.conftest import write_png


def _blur_dataset(root: Path, ids=range(5), size=(32, 40)) -> Path:
    """The mobile-photo blur dataset's naming: sharp/<id>_<device>_S, motion_blurred/..._M, ..."""
    rng = np.random.default_rng(1)
    for i in ids:
        sharp = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        write_png(root / "sharp" / f"{i}_IPHONE-SE_S.png", sharp)
        write_png(root / "motion_blurred" / f"{i}_IPHONE-SE_M.png", 255 - sharp)
        write_png(root / "defocused_blurred" / f"{i}_IPHONE-SE_F.png", sharp // 2)
    return root


@pytest.mark.parametrize(("blurred_dir", "tag"), [("motion_blurred", "M"), ("defocused_blurred", "F")])
def test_blur_dataset_pairs_by_name_without_the_type_tag(tmp_path: Path, blurred_dir, tag):
    pairs = find_folder_pairs(_blur_dataset(tmp_path), blurred_dir=blurred_dir)
    assert len(pairs) == 5
    for pair in pairs:
        assert pair.blurry.parent.name == blurred_dir and pair.blurry.stem.endswith(f"_{tag}")
        assert pair.sharp.stem == pair.blurry.stem[:-1] + "S"
        assert pair.sequence == pair.sharp.stem[:-2]


def test_paired_folder_crops_are_aligned_and_split_without_overlap(tmp_path: Path):
    root = _blur_dataset(tmp_path, ids=range(10), size=(48, 56))
    dm = PairedFolderDataModule(
        root, blurred_dir="motion_blurred", crop_size=24, batch_size=4, test_fraction=0.2, val_sequences=2
    )
    dm.setup("fit")
    names = [{p.sharp.name for p in ds.pairs} for ds in (dm.data_train, dm.data_val, dm.data_test)]
    assert [len(n) for n in names] == [6, 2, 2]
    assert not (names[0] & names[1] or names[0] & names[2] or names[1] & names[2])
    blurry, sharp = next(iter(dm.train_dataloader()))
    assert blurry.shape == (4, 3, 24, 24)
    torch.testing.assert_close(blurry, 1.0 - sharp, atol=1e-6, rtol=0)  # same window in both


def test_paired_folder_with_its_own_split(tmp_path: Path):
    for split, ids in (("train", range(3)), ("test", range(3, 5))):
        rng = np.random.default_rng(0)
        for i in ids:
            image = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
            write_png(tmp_path / split / "sharp" / f"img{i}.png", image)
            write_png(tmp_path / split / "blurred" / f"img{i}.png", image)
    dm = PairedFolderDataModule(tmp_path, name_pattern=None, crop_size=8)
    dm.setup("fit")
    assert [p.sequence for p in dm.data_train.pairs] == ["img0", "img1", "img2"]
    assert [p.sequence for p in dm.data_test.pairs] == ["img3", "img4"]


def test_paired_folder_errors_say_what_to_fix(tmp_path: Path):
    root = _blur_dataset(tmp_path)
    with pytest.raises(
        DatasetLayoutError,
        match=r"blurred does not exist \(found: defocused_blurred, motion_blurred, sharp\)",
    ):
        find_folder_pairs(root)
    (root / "sharp" / "2_IPHONE-SE_S.png").unlink()
    with pytest.raises(DatasetLayoutError, match=r"2_IPHONE-SE_M\.png has no sharp twin .*key '2_IPHONE-SE'"):
        find_folder_pairs(root, blurred_dir="motion_blurred")
    write_png(root / "sharp" / "1_IPHONE-SE.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(DatasetLayoutError, match="share the name key '1_IPHONE-SE'"):
        find_folder_pairs(root, blurred_dir="motion_blurred")
