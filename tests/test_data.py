"""Pair discovery, aligned paired crops, grey conversion, synthetic data, and clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules.datasets import PairedImageDataset
from datamodules.depth_of_field import defocus_regions, disk_kernel
from datamodules.gopro import GoProDataModule
from datamodules.image_io import ImageReadError, read_rgb
from datamodules.motion_blur import BlurParams, blur_image
from datamodules.pairs import DatasetLayoutError, find_gopro_pairs
from datamodules.synthetic import build_synthetic_dataset, load_bundled_image
from tests.conftest import make_gopro_tree, write_png


def test_pairs_found_in_gopro_layout(tmp_path: Path):
    make_gopro_tree(tmp_path, {"GOPR0001": 3, "GOPR0002": 2})
    pairs = find_gopro_pairs(tmp_path, "train")
    assert len(pairs) == 5
    assert [p.sequence for p in pairs] == ["GOPR0001"] * 3 + ["GOPR0002"] * 2
    assert all(p.blurry.name == p.sharp.name and p.blurry.parent.name == "blur" for p in pairs)


def test_paired_crop_is_aligned(tmp_path: Path):
    make_gopro_tree(tmp_path, {"seq": 2}, size=(64, 80))
    ds = PairedImageDataset(find_gopro_pairs(tmp_path, "train"), crop_size=24, samples_per_epoch=20)
    crops = set()
    for i in range(len(ds)):
        blurry, sharp = ds[i]
        assert blurry.shape == sharp.shape == (3, 24, 24)
        # The tree's blurry image is 255 - sharp pixel by pixel: holds only if the crops align.
        torch.testing.assert_close(blurry, 1.0 - sharp, atol=1e-6, rtol=0)
        crops.add(float(sharp.sum()))
    assert len(crops) > 5, "crops should be random"


def test_grey_crops_use_bt601_luma(tmp_path: Path):
    make_gopro_tree(tmp_path, {"seq": 1}, size=(32, 32))
    pair = find_gopro_pairs(tmp_path, "train")
    blurry, sharp = PairedImageDataset(pair, crop_size=None, grey=True)[0]
    rgb = read_rgb(pair[0].sharp).astype(np.float32) / 255.0
    expected = rgb @ np.array([0.2989, 0.5870, 0.1140], dtype=np.float32)
    assert sharp.shape == (1, 32, 32)
    np.testing.assert_allclose(sharp[0].numpy(), expected, atol=1e-6)


def test_datamodule_gives_crops_for_training_and_full_images_for_test(tmp_path: Path):
    make_gopro_tree(tmp_path, {"a": 2, "b": 2}, size=(40, 48))
    make_gopro_tree(tmp_path, {"c": 1}, size=(36, 52), split="test")
    dm = GoProDataModule(tmp_path, batch_size=2, crop_size=16, train_channels=1)
    dm.setup("fit")
    blurry, sharp = next(iter(dm.train_dataloader()))
    assert blurry.shape == (2, 1, 16, 16)
    blurry, sharp = next(iter(dm.val_dataloader()))
    assert blurry.shape == (1, 3, 36, 52)
    dm_fold = GoProDataModule(tmp_path, batch_size=2, crop_size=16, train_channels=1, fold_rgb=True)
    dm_fold.setup("fit")
    assert next(iter(dm_fold.train_dataloader()))[0].shape == (2, 3, 16, 16)


def test_missing_data_folder_is_named(tmp_path: Path):
    with pytest.raises(DatasetLayoutError, match=str(tmp_path / "nowhere" / "train")):
        find_gopro_pairs(tmp_path / "nowhere", "train")


def test_folder_without_pairs_is_reported(tmp_path: Path):
    (tmp_path / "train").mkdir()
    with pytest.raises(DatasetLayoutError, match="no image pairs found"):
        find_gopro_pairs(tmp_path, "train")


def test_sequence_without_blur_folder_suggests_blur_dir(tmp_path: Path):
    make_gopro_tree(tmp_path, {"seq": 1})
    with pytest.raises(DatasetLayoutError, match="blur_gamma"):
        find_gopro_pairs(tmp_path, "train", blur_dir="blur_gamma")


def test_blurry_image_without_sharp_twin_is_named(tmp_path: Path):
    make_gopro_tree(tmp_path, {"seq": 2})
    (tmp_path / "train" / "seq" / "sharp" / "000001.png").unlink()
    with pytest.raises(DatasetLayoutError, match=r"000001\.png has no sharp twin"):
        find_gopro_pairs(tmp_path, "train")


def test_pair_of_different_sizes_is_named(tmp_path: Path):
    make_gopro_tree(tmp_path, {"seq": 1}, size=(32, 32))
    write_png(tmp_path / "train" / "seq" / "sharp" / "000000.png", np.zeros((30, 32, 3), np.uint8))
    ds = PairedImageDataset(find_gopro_pairs(tmp_path, "train"))
    with pytest.raises(ValueError, match=r"blur/000000\.png is 32x32 but its sharp twin .* is 32x30"):
        ds[0]


def test_unreadable_image_is_named(tmp_path: Path):
    make_gopro_tree(tmp_path, {"seq": 1})
    broken = tmp_path / "train" / "seq" / "blur" / "000000.png"
    broken.write_bytes(broken.read_bytes()[:40])  # truncated PNG
    ds = PairedImageDataset(find_gopro_pairs(tmp_path, "train"))
    with pytest.raises(ImageReadError, match=str(broken)):
        ds[0]


def test_image_smaller_than_crop_is_reported(tmp_path: Path):
    make_gopro_tree(tmp_path, {"seq": 1}, size=(20, 20))
    ds = PairedImageDataset(find_gopro_pairs(tmp_path, "train"), crop_size=32)
    with pytest.raises(ValueError, match="smaller than the 32x32 crop"):
        ds[0]


def test_motion_blur_is_deterministic_and_blurs():
    rng = np.random.default_rng(3)
    sharp = (rng.random((48, 64, 3)) * 255).astype(np.uint8)
    a = blur_image(sharp, np.random.default_rng(7), BlurParams(min_length=6, max_length=8))
    b = blur_image(sharp, np.random.default_rng(7), BlurParams(min_length=6, max_length=8))
    c = blur_image(sharp, np.random.default_rng(8), BlurParams(min_length=6, max_length=8))
    assert np.array_equal(a, b) and not np.array_equal(a, c)

    # Blur removes high frequencies: neighbouring pixels become much more alike.
    def roughness(x):
        return np.abs(np.diff(x.astype(float), axis=1)).mean()

    assert roughness(a) < 0.5 * roughness(sharp)


def test_synthetic_dataset_layout_is_deterministic_and_reused(tmp_path: Path):
    kwargs = dict(train_images=["coins"], test_images=["camera"], train_frames=2, max_side=64, seed=5)
    root = build_synthetic_dataset(tmp_path / "a", **kwargs)
    build_synthetic_dataset(tmp_path / "b", **kwargs)
    pairs = find_gopro_pairs(root, "train")
    assert len(pairs) == 2 and len(find_gopro_pairs(root, "test")) == 2  # test_frames defaults to 2
    for pair in pairs:
        twin = tmp_path / "b" / pair.blurry.relative_to(root)
        assert np.array_equal(read_rgb(pair.blurry), read_rgb(twin))
    mtime = pairs[0].blurry.stat().st_mtime_ns
    build_synthetic_dataset(root, **kwargs)
    assert pairs[0].blurry.stat().st_mtime_ns == mtime  # same manifest: reused, not rewritten


def test_synthetic_generator_never_overwrites_foreign_data(tmp_path: Path):
    (tmp_path / "mine.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="not empty"):
        build_synthetic_dataset(tmp_path, train_images=["coins"], test_images=["camera"], max_side=32)
    assert (tmp_path / "mine.txt").read_text() == "precious"


def test_train_and_test_images_must_not_overlap(tmp_path: Path):
    with pytest.raises(ValueError, match="both the train and test"):
        build_synthetic_dataset(tmp_path, train_images=["coins"], test_images=["coins"])


def _roughness(x: np.ndarray) -> float:
    return float(np.abs(np.diff(x.astype(float), axis=1)).mean())


def test_disk_kernel_is_a_normalised_round_spread():
    k = disk_kernel(3.0)
    assert k.shape == (7, 7) and np.isclose(k.sum(), 1.0)
    assert np.allclose(k, k.T) and np.allclose(k, k[::-1, ::-1])
    assert k[3, 0] > 0 and k[0, 0] == 0  # reaches the rim on the axes, not the corners


def test_defocus_softens_some_regions_and_leaves_the_rest_in_focus():
    sharp = (np.random.default_rng(0).random((128, 160, 3)) * 255).astype(np.uint8)
    out = defocus_regions(sharp, np.random.default_rng(4), min_radius=3.0, max_radius=3.0)
    assert np.array_equal(out, defocus_regions(sharp, np.random.default_rng(4), 3.0, 3.0))
    blocks = [(y, x) for y in range(0, 128, 16) for x in range(0, 160, 16)]
    ratios = [
        _roughness(out[y : y + 16, x : x + 16]) / _roughness(sharp[y : y + 16, x : x + 16]) for y, x in blocks
    ]
    assert min(ratios) < 0.3  # out of focus somewhere...
    assert max(ratios) > 0.95  # ...and in focus elsewhere


def test_defocus_prob_changes_only_training_targets(tmp_path: Path):
    kwargs = dict(train_images=["coins"], test_images=["camera"], train_frames=1, test_frames=1, max_side=64)
    plain = build_synthetic_dataset(tmp_path / "plain", **kwargs)
    soft = build_synthetic_dataset(tmp_path / "soft", defocus_prob=1.0, **kwargs)
    # Each frame has its own random stream and draws its view before the defocus, so the two
    # sharp targets show the same view.
    train_plain = read_rgb(plain / "train/coins/sharp/000000.png")
    train_soft = read_rgb(soft / "train/coins/sharp/000000.png")
    assert _roughness(train_soft) < 0.95 * _roughness(train_plain)
    photo = load_bundled_image("camera", 64)
    for root in (plain, soft):
        assert np.array_equal(read_rgb(root / "test/camera/sharp/000000.png"), photo)
    # Another defocus setting is another dataset: the folder is rebuilt, not reused.
    build_synthetic_dataset(tmp_path / "plain", defocus_prob=1.0, **kwargs)
    assert np.array_equal(read_rgb(plain / "train/coins/sharp/000000.png"), train_soft)


def test_test_frames_do_not_depend_on_the_training_settings(tmp_path: Path):
    small = dict(train_images=["coins"], test_images=["camera"], train_frames=1, test_frames=1, max_side=64)
    a = build_synthetic_dataset(tmp_path / "a", **small)
    b = build_synthetic_dataset(
        tmp_path / "b",
        train_images=["coins", "brick"],
        test_images=["camera"],
        train_frames=3,
        test_frames=2,
        max_side=64,
        defocus_prob=1.0,
    )
    blurry = read_rgb(a / "test/camera/blur/000000.png")
    assert np.array_equal(blurry, read_rgb(b / "test/camera/blur/000000.png"))
    assert not np.array_equal(blurry, read_rgb(b / "test/camera/blur/000001.png"))  # frames differ
    c = build_synthetic_dataset(tmp_path / "c", **small, seed=1)
    assert not np.array_equal(blurry, read_rgb(c / "test/camera/blur/000000.png"))  # the seed matters


def _build_in_subprocess(root: str, barrier, delay: float) -> None:
    import time

    barrier.wait()
    time.sleep(delay)  # the later ones arrive while the first is writing
    build_synthetic_dataset(
        root,
        train_images=["coins", "brick"],
        test_images=["camera"],
        train_frames=12,
        test_frames=2,
        max_side=256,
    )


@pytest.mark.slow
def test_runs_started_together_share_one_generated_folder(tmp_path: Path):
    """A parallel sweep's runs all build the same folder: none may fail or see a half-written one."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(3)
    root = tmp_path / "shared"
    workers = [
        context.Process(target=_build_in_subprocess, args=(str(root), barrier, 0.3 * i)) for i in range(3)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [worker.exitcode for worker in workers] == [0, 0, 0]
    assert len(find_gopro_pairs(root, "train")) == 24 and len(find_gopro_pairs(root, "test")) == 2
