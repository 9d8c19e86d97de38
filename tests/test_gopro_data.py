"""Real-data loading: list files, sequence-wise validation splits, paired folders, the
memory-mapped fast path (same samples as the plain loader), augmentation and worker seeding."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from datamodules.cache import DecodedPairCache
from datamodules.datasets import PairedImageDataset, paired_augmentations
from datamodules.gopro import GoProDataModule
from datamodules.image_io import read_rgb
from datamodules.paired_folder import PairedFolderDataModule
from datamodules.pairs import (
    DatasetLayoutError,
    count_sequences,
    describe,
    find_folder_pairs,
    find_gopro_pairs,
    read_pair_list,
    split_by_sequence,
)
from tests.conftest import make_gopro_tree, write_png

SEQUENCES = {"GOPR0372_07_00": 3, "GOPR0374_11_00": 2, "GOPR0378_13_00": 2, "GOPR0384_11_01": 1}


@pytest.fixture
def gopro(tmp_path: Path) -> Path:
    make_gopro_tree(tmp_path, SEQUENCES, size=(40, 48))
    make_gopro_tree(tmp_path, {"GOPR0410_11_00": 2}, size=(36, 52), split="test")
    return tmp_path


def _write_release_list(path: Path, pairs, root: Path) -> Path:
    lines = ["# sharp blurry, as in the release's datalist_gopro.txt", ""]
    lines += [f"{p.sharp.relative_to(root)} {p.blurry.relative_to(root)}" for p in pairs]
    path.write_text("\n".join(lines) + "\n")
    return path


# --------------------------------------------------------------------------- list files


def test_list_file_gives_the_same_pairs_as_the_folder_scan(gopro: Path):
    scanned = find_gopro_pairs(gopro, "train")
    list_file = _write_release_list(gopro / "datalist.txt", scanned, gopro / "train")
    listed = read_pair_list(list_file, root=gopro / "train")
    assert listed == scanned  # blurry and sharp not swapped, sequences from the folder names

    dm = GoProDataModule(gopro, train_list=str(list_file), crop_size=16)
    dm.setup("fit")
    assert dm.data_train.pairs == scanned


def test_list_file_errors_name_the_line(gopro: Path):
    bad = gopro / "bad.txt"
    bad.write_text("GOPR0372_07_00/sharp/000000.png GOPR0372_07_00/blur/000000.png\nonly_one_path.png\n")
    with pytest.raises(DatasetLayoutError, match=r"bad\.txt:2: expected 'sharp_path blur_path'"):
        read_pair_list(bad, root=gopro / "train")
    missing = gopro / "missing.txt"
    missing.write_text("GOPR0372_07_00/sharp/000099.png GOPR0372_07_00/blur/000099.png\n")
    with pytest.raises(DatasetLayoutError, match=r"missing\.txt:1: image .*000099\.png does not exist"):
        read_pair_list(missing, root=gopro / "train")
    with pytest.raises(DatasetLayoutError, match="does not exist"):
        read_pair_list(gopro / "nope.txt")


# --------------------------------------------------------------------------- counts and splits


def test_pairs_and_sequences_are_counted_and_reported(gopro: Path, caplog):
    pairs = find_gopro_pairs(gopro, "train")
    assert count_sequences(pairs) == SEQUENCES
    assert describe(pairs) == "8 pairs in 4 sequences"
    with caplog.at_level(logging.INFO, logger="datamodules.gopro"):
        GoProDataModule(gopro, crop_size=16).setup("fit")
    assert "GOPRO train: 8 pairs in 4 sequences" in caplog.text
    assert "GOPRO test: 2 pairs in 1 sequence " in caplog.text


@pytest.mark.parametrize("val_sequences", [1, 2, 0.25, ["GOPR0374_11_00", "GOPR0384_11_01"]])
def test_validation_split_keeps_sequences_whole(gopro: Path, val_sequences):
    pairs = find_gopro_pairs(gopro, "train")
    train, val = split_by_sequence(pairs, val_sequences, seed=3)
    train_seqs, val_seqs = {p.sequence for p in train}, {p.sequence for p in val}
    assert not train_seqs & val_seqs, "a sequence leaked across the split"
    assert sorted(train + val, key=str) == sorted(pairs, key=str)
    for seq in val_seqs:  # every frame of a held-out sequence went to validation
        assert sum(p.sequence == seq for p in val) == SEQUENCES[seq]
    expected = (
        len(val_sequences)
        if isinstance(val_sequences, list)
        else max(1, round(val_sequences * 4))
        if isinstance(val_sequences, float)
        else val_sequences
    )
    assert len(val_seqs) == expected
    assert split_by_sequence(pairs, val_sequences, seed=3) == (train, val)  # reproducible


def test_validation_split_draw_depends_on_the_seed(gopro: Path):
    pairs = find_gopro_pairs(gopro, "train")
    draws = {tuple(sorted({p.sequence for p in split_by_sequence(pairs, 2, seed=s)[1]})) for s in range(12)}
    assert len(draws) > 1


@pytest.mark.parametrize(
    ("val_sequences", "message"),
    [(4, "cannot hold out 4 of 4"), (["GOPR9999"], r"\['GOPR9999'\] are not among"), (1.5, "must be in")],
)
def test_impossible_validation_split_is_refused(gopro: Path, val_sequences, message):
    with pytest.raises(ValueError, match=message):
        split_by_sequence(find_gopro_pairs(gopro, "train"), val_sequences)


def test_datamodule_validates_on_held_out_sequences(gopro: Path):
    dm = GoProDataModule(gopro, crop_size=16, batch_size=2, val_sequences=["GOPR0372_07_00"])
    dm.setup("fit")
    assert {p.sequence for p in dm.data_val.pairs} == {"GOPR0372_07_00"}
    assert "GOPR0372_07_00" not in {p.sequence for p in dm.data_train.pairs}
    assert {p.sequence for p in dm.data_test.pairs} == {"GOPR0410_11_00"}
    blurry, sharp = next(iter(dm.val_dataloader()))
    assert blurry.shape == (1, 3, 40, 48)  # full validation images, not crops
    dm_default = GoProDataModule(gopro, crop_size=16)
    dm_default.setup("fit")
    assert dm_default.data_val is dm_default.data_test  # the release validates on test


def test_hparams_from_hydra_are_plain_so_checkpoints_load_weights_only(gopro: Path, tmp_path: Path):
    cfg = OmegaConf.create(
        {
            "_target_": "datamodules.gopro.GoProDataModule",
            "data_dir": str(gopro),
            "val_sequences": ["GOPR0372_07_00"],
        }
    )
    import hydra

    dm = hydra.utils.instantiate(cfg)
    torch.save({"datamodule_hyper_parameters": dict(dm.hparams)}, tmp_path / "h.ckpt")
    loaded = torch.load(tmp_path / "h.ckpt", weights_only=True)
    assert loaded["datamodule_hyper_parameters"]["val_sequences"] == ["GOPR0372_07_00"]


# --------------------------------------------------------------------------- paired folders


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


# --------------------------------------------------------------------------- the fast path


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


# --------------------------------------------------------------------------- augmentation, seeding


def test_augmentation_is_off_by_default_and_transforms_both_images_alike(gopro: Path, tmp_path: Path):
    dm = GoProDataModule(gopro, crop_size=16)
    dm.setup("fit")
    assert [type(t).__name__ for t in dm.data_train.transform.transforms] == ["RandomCrop"]

    make_gopro_tree(tmp_path / "square", {"seq": 1}, size=(32, 32))
    pair = find_gopro_pairs(tmp_path / "square", "train")
    original = torch.from_numpy(read_rgb(pair[0].sharp).astype(np.float32) / 255).permute(2, 0, 1)
    dihedral = [torch.rot90(o, k, (1, 2)) for o in (original, original.flip(2)) for k in range(4)]
    # Whole images (no crop), so every output must be one of the 8 flips/rotations of the input.
    ds = PairedImageDataset(
        pair, samples_per_epoch=64, augment=paired_augmentations(True, True, True), seed=0
    )
    seen = set()
    for i in range(len(ds)):
        blurry, sharp = ds[i]
        torch.testing.assert_close(blurry, 1.0 - sharp, atol=1e-6, rtol=0)  # same transform on both
        matches = [k for k, d in enumerate(dihedral) if torch.equal(sharp, d)]
        assert len(matches) == 1
        seen.add(matches[0])
    assert len(seen) == 8


def test_loader_workers_cut_different_crops(tmp_path: Path):
    make_gopro_tree(tmp_path, {"seq": 1}, size=(64, 64))
    ds = PairedImageDataset(find_gopro_pairs(tmp_path, "train"), crop_size=8, samples_per_epoch=8)
    loader = DataLoader(ds, batch_size=1, num_workers=2)  # worker 0: even batches, worker 1: odd
    crops = [b[1] for b in loader]
    pairs_of_workers = list(zip(crops[0::2], crops[1::2], strict=False))
    assert not all(torch.equal(a, b) for a, b in pairs_of_workers), "both workers cut the same windows"


# --------------------------------------------------------------------------- release list files, cache


def test_release_list_files_load_both_splits_through_the_config(tmp_path: Path):
    import hydra

    from tests.conftest import compose_config

    root = tmp_path / "GOPRO_Large"
    rng = np.random.default_rng(3)
    written = {}
    for split, seq, frame in (("train", "GOPR0372_07_00", "000047"), ("test", "GOPR0384_11_00", "000001")):
        sharp = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
        blurry = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
        write_png(root / split / seq / "sharp" / f"{frame}.png", sharp)
        write_png(root / split / seq / "blur" / f"{frame}.png", blurry)
        written[split] = (seq, blurry, sharp)
    # Lines exactly as the release's datalist_gopro.txt writes them: sharp first, then blur.
    (tmp_path / "train_list.txt").write_text(
        "GOPR0372_07_00/sharp/000047.png GOPR0372_07_00/blur/000047.png\n"
    )
    (tmp_path / "test_list.txt").write_text(
        "GOPR0384_11_00/sharp/000001.png GOPR0384_11_00/blur/000001.png\n"
    )
    cfg = compose_config(
        [
            "data=gopro",
            f"paths.data_dir={tmp_path}",
            f"data.train_list={tmp_path / 'train_list.txt'}",
            f"data.test_list={tmp_path / 'test_list.txt'}",
            "data.crop_size=32",
            "data.batch_size=1",
            "data.num_workers=0",
        ],
        tmp_path / "run",
    )
    dm = hydra.utils.instantiate(cfg.data)
    dm.setup("fit")
    for split, dataset in (("train", dm.data_train), ("test", dm.data_test)):
        seq, blurry, sharp = written[split]
        (pair,) = dataset.pairs
        assert pair.sequence == seq
        assert pair.blurry.parent.name == "blur" and pair.sharp.parent.name == "sharp"
        got_blurry, got_sharp = dataset.load_pair(0)  # the pixels, so a swapped column would fail
        assert np.array_equal(got_blurry, blurry) and np.array_equal(got_sharp, sharp)


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
