"""GOPRO loading: list files (the release's format too), sequence-wise validation splits,
augmentation and worker seeding. Paired folders and the caches have their own test files."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from datamodules.datasets import PairedImageDataset, paired_augmentations
from datamodules.gopro import GoProDataModule
from datamodules.image_io import read_rgb
from datamodules.pairs import (
    DatasetLayoutError,
    count_sequences,
    describe,
    find_gopro_pairs,
    read_pair_list,
    split_by_sequence,
)
from tests.conftest import GOPRO_SEQUENCES, make_gopro_tree, write_png


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
    assert count_sequences(pairs) == GOPRO_SEQUENCES
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
        assert sum(p.sequence == seq for p in val) == GOPRO_SEQUENCES[seq]
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
