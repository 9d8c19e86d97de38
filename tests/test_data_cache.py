"""The decoded-image caches (memory-mapped on disk, in memory) give the plain loader's samples,
and are reused, rebuilt, repaired or refused as their files demand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules.cache import DecodedPairCache
from datamodules.datasets import PairedImageDataset, paired_augmentations
from datamodules.gopro import GoProDataModule
from datamodules.image_io import read_rgb
from datamodules.pairs import (
    find_gopro_pairs,
)
from tests.conftest import write_png


def test_memory_mapped_cache_gives_the_plain_loaders_samples(gopro: Path, tmp_path: Path):
    pairs = find_gopro_pairs(gopro, "train")
    cache = DecodedPairCache.open_or_build(pairs, tmp_path / "cache")
    for i, pair in enumerate(pairs):  # the very bytes decoding gives
        blurry, sharp = cache.pair(i)
        assert np.array_equal(blurry, read_rgb(pair.blurry)) and np.array_equal(sharp, read_rgb(pair.sharp))
    kwargs = dict(crop_size=16, samples_per_epoch=40, seed=7)
    plain = PairedImageDataset(pairs, augment=paired_augmentations(True, True, True), **kwargs)
    fast = PairedImageDataset(
        pairs, augment=paired_augmentations(True, True, True), decoded_cache=cache, **kwargs
    )
    for i in range(len(plain)):
        for a, b in zip(plain[i], fast[i], strict=True):
            assert torch.equal(a, b)
    full = PairedImageDataset(pairs, decoded_cache=cache)[3]
    assert torch.equal(full[0], PairedImageDataset(pairs)[3][0])


def test_datamodule_fast_path_matches_plain_loader_with_workers(gopro: Path, tmp_path: Path):
    def batches(**kwargs) -> list[torch.Tensor]:
        dm = GoProDataModule(
            gopro, crop_size=16, batch_size=2, train_samples_per_epoch=8, num_workers=2, **kwargs
        )
        dm.prepare_data()
        dm.setup("fit")
        torch.manual_seed(0)  # the dataset's seed and the workers' seeds come from torch
        dm.data_train.seed = 11
        return [torch.cat(b) for b in dm.train_dataloader()]

    plain, fast = batches(), batches(cache_dir=str(tmp_path / "cache"))
    assert len(plain) == 4
    for a, b in zip(plain, fast, strict=True):
        assert torch.equal(a, b)
    assert len(list((tmp_path / "cache").glob("pairs-*.u8"))) == 1  # training split only


def test_cache_is_reused_rebuilt_when_images_change_and_repaired(gopro: Path, tmp_path: Path):
    pairs = find_gopro_pairs(gopro, "train")
    cache = DecodedPairCache.open_or_build(pairs, tmp_path)
    mtime = cache.data_file.stat().st_mtime_ns
    assert DecodedPairCache.open_or_build(pairs, tmp_path).data_file.stat().st_mtime_ns == mtime

    write_png(pairs[0].sharp, np.full((40, 48, 3), 7, np.uint8))  # the dataset changed
    changed = DecodedPairCache.open_or_build(pairs, tmp_path)
    assert changed.data_file != cache.data_file
    assert changed.pair(0)[1].max() == 7

    with open(changed.data_file, "r+b") as f:  # a cut-short file (e.g. a full disk)
        f.truncate(100)
    repaired = DecodedPairCache.open_or_build(pairs, tmp_path)
    assert repaired.data_file.stat().st_size == 2 * 8 * 40 * 48 * 3
    assert repaired.pair(0)[1].max() == 7


def test_cache_of_other_pairs_is_refused(gopro: Path, tmp_path: Path):
    pairs = find_gopro_pairs(gopro, "train")
    cache = DecodedPairCache.open_or_build(pairs[:3], tmp_path)
    with pytest.raises(ValueError, match="holds other pairs"):
        PairedImageDataset(pairs, decoded_cache=cache)
    with pytest.raises(ValueError, match="choose one image cache"):
        GoProDataModule(gopro, cache_images=True, cache_dir=str(tmp_path))


def test_cache_needing_more_disk_than_free_is_refused_before_writing(
    gopro: Path, tmp_path: Path, monkeypatch
):
    from types import SimpleNamespace

    monkeypatch.setattr("datamodules.cache.shutil.disk_usage", lambda path: SimpleNamespace(free=100))
    with pytest.raises(OSError, match=r"needs .* GB but .*cache has 0\.0 GB free; point data.cache_dir"):
        DecodedPairCache.open_or_build(find_gopro_pairs(gopro, "train"), tmp_path / "cache")
    assert not any((tmp_path / "cache").glob("*"))


def test_in_memory_cache_gives_the_plain_loaders_samples_and_reads_each_file_once(gopro: Path):
    pairs = find_gopro_pairs(gopro, "train")
    kwargs = dict(crop_size=16, samples_per_epoch=2 * len(pairs), seed=5)
    plain, cached = PairedImageDataset(pairs, **kwargs), PairedImageDataset(pairs, cache=True, **kwargs)
    first = [cached[i] for i in range(len(cached))]
    for i, (a, b) in enumerate(zip((plain[i] for i in range(len(plain))), first, strict=True)):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]), f"sample {i} differs"
    for pair in pairs:  # the cache holds the decoded pixels: the files are no longer needed
        pair.blurry.unlink()
        pair.sharp.unlink()
    again = PairedImageDataset(pairs, cache=True, **kwargs)
    again.cache = cached.cache
    assert all(torch.equal(again[i][0], first[i][0]) for i in range(len(again)))
    with pytest.raises(OSError, match="cannot read image"):
        plain[0]
