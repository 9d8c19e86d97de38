"""RealBlur and HIDE loaders on trees built here in the datasets' official layouts, through the
configs; the GOPRO blur_gamma warning."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import numpy as np
import pytest

from datamodules.gopro import GoProDataModule
from datamodules.image_io import read_rgb
from datamodules.pairs import DatasetLayoutError
from tests.conftest import compose_config, make_gopro_tree, write_png

REALBLUR_J = "RealBlur-J_ECC_IMCORR_centroid_itensity_ref"
SIZE = (40, 48)


def _image(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, (*SIZE, 3), dtype=np.uint8)


@pytest.fixture
def realblur_root(tmp_path: Path) -> tuple[Path, dict[str, list[tuple[str, str]]]]:
    """RealBlur's layout: list files at the root, `gt_path blur_path` lines relative to it."""
    root, rng = tmp_path / "RealBlur", np.random.default_rng(0)
    lines = {
        "train": [("scene001", 1), ("scene001", 2), ("scene002", 1)],
        "test": [("scene230", 1), ("scene230", 5), ("scene231", 3)],
    }
    pairs = {}
    for split, entries in lines.items():
        pairs[split] = []
        for scene, frame in entries:
            gt, blur = (
                f"{REALBLUR_J}/{scene}/gt/gt_{frame}.png",
                f"{REALBLUR_J}/{scene}/blur/blur_{frame}.png",
            )
            write_png(root / gt, _image(rng))
            write_png(root / blur, _image(rng))
            pairs[split].append((gt, blur))
        text = "\n".join(f"{gt} {blur}" for gt, blur in pairs[split]) + "\n"
        (root / f"RealBlur_J_{split}_list.txt").write_text(text)
    return root, pairs


def _datamodule(name: str, data_dir: Path, tmp_path: Path, *extra: str, config: str = "eval"):
    cfg = compose_config(
        [f"data={name}", f"data.data_dir={data_dir}", "ckpt_path=x", *extra], tmp_path, config
    )
    return hydra.utils.instantiate(cfg.data)


def test_realblur_reads_the_official_list_files_through_the_config(realblur_root, tmp_path: Path):
    root, lines = realblur_root
    data = _datamodule("realblur", root, tmp_path)
    data.setup("test")
    pairs = data.data_test.pairs
    assert [(p.sharp, p.blurry) for p in pairs] == [(root / gt, root / blur) for gt, blur in lines["test"]]
    assert [p.sequence for p in pairs] == ["scene230", "scene230", "scene231"]
    blurry, sharp = data.data_test[1]  # (3, H, W) each, the files' pixels
    assert np.array_equal(
        (sharp.numpy().transpose(1, 2, 0) * 255).round(), read_rgb(root / lines["test"][1][0])
    )
    assert np.array_equal(
        (blurry.numpy().transpose(1, 2, 0) * 255).round(), read_rgb(root / lines["test"][1][1])
    )


def test_realblur_trains_on_its_training_list(realblur_root, tmp_path: Path):
    root, lines = realblur_root
    data = _datamodule("realblur", root, tmp_path, "model=srn_color", "data.crop_size=16", config="train")
    data.setup("fit")
    assert [p.sharp for p in data.data_train.pairs] == [root / gt for gt, _ in lines["train"]]
    assert data.data_val is data.data_test and len(data.data_test.pairs) == 3
    blurry, sharp = data.data_train[0]
    assert blurry.shape == sharp.shape == (3, 16, 16)


def test_realblur_r_and_a_missing_list_file_are_named(realblur_root, tmp_path: Path):
    root, _ = realblur_root
    data = _datamodule("realblur", root, tmp_path, "data.variant=R")
    with pytest.raises(DatasetLayoutError, match="RealBlur_R_test_list.txt does not exist"):
        data.setup("test")
    with pytest.raises(Exception, match="data.variant must be one of"):  # wrapped by Hydra
        _datamodule("realblur", root, tmp_path, "data.variant=X")


@pytest.fixture
def hide_root(tmp_path: Path) -> Path:
    """HIDE's layout: blurry train/ and test/<subset>/, every sharp image in GT/ by name."""
    root, rng = tmp_path / "HIDE_dataset", np.random.default_rng(1)
    names = {
        "train": ["1fromGOPR0950.png", "2fromGOPR0950.png", "7fromGOPR1085.png"],
        "test/test-close-ups": ["3fromGOPR1038.png", "9fromGOPR1038.png"],
        "test/test-long-shot": ["11fromGOPR1081.png"],
    }
    for folder, files in names.items():
        for name in files:
            write_png(root / folder / name, _image(rng))
            write_png(root / "GT" / name, _image(rng))
    return root


def test_hide_pairs_test_subsets_with_gt_by_name_through_the_config(hide_root: Path, tmp_path: Path):
    data = _datamodule("hide", hide_root, tmp_path)
    data.setup("test")
    pairs = data.data_test.pairs
    assert [(p.blurry.relative_to(hide_root), p.sharp.relative_to(hide_root)) for p in pairs] == [
        (Path("test/test-close-ups/3fromGOPR1038.png"), Path("GT/3fromGOPR1038.png")),
        (Path("test/test-close-ups/9fromGOPR1038.png"), Path("GT/9fromGOPR1038.png")),
        (Path("test/test-long-shot/11fromGOPR1081.png"), Path("GT/11fromGOPR1081.png")),
    ]
    assert [p.sequence for p in pairs] == ["test-close-ups", "test-close-ups", "test-long-shot"]
    only = _datamodule("hide", hide_root, tmp_path, "data.test_subsets=[test-long-shot]")
    only.setup("test")
    assert [p.blurry.name for p in only.data_test.pairs] == ["11fromGOPR1081.png"]


def test_hide_trains_with_whole_videos_held_out(hide_root: Path, tmp_path: Path):
    data = _datamodule(
        "hide",
        hide_root,
        tmp_path,
        "model=srn_color",
        "data.crop_size=16",
        "data.val_sequences=[GOPR1085]",
        config="train",
    )
    data.setup("fit")
    assert [p.blurry.name for p in data.data_train.pairs] == ["1fromGOPR0950.png", "2fromGOPR0950.png"]
    assert [p.blurry.name for p in data.data_val.pairs] == ["7fromGOPR1085.png"]


def test_hide_blurry_image_without_its_gt_twin_is_named(hide_root: Path, tmp_path: Path):
    (hide_root / "GT" / "11fromGOPR1081.png").unlink()
    data = _datamodule("hide", hide_root, tmp_path)
    with pytest.raises(DatasetLayoutError, match="11fromGOPR1081.png has no sharp twin .*GT"):
        data.setup("test")


def test_gopro_testing_on_blur_gamma_warns_that_published_numbers_use_blur(tmp_path: Path, caplog):
    root = make_gopro_tree(tmp_path, {"GOPR0384_11_00": 1}, split="test")
    (root / "test" / "GOPR0384_11_00" / "blur").rename(root / "test" / "GOPR0384_11_00" / "blur_gamma")
    with caplog.at_level(logging.WARNING, logger="datamodules.gopro"):
        GoProDataModule(root, blur_dir="blur_gamma").setup("test")
    assert any("published numbers" in r.message and "blur_gamma" in r.message for r in caplog.records)
    caplog.clear()
    (root / "test" / "GOPR0384_11_00" / "blur_gamma").rename(root / "test" / "GOPR0384_11_00" / "blur")
    with caplog.at_level(logging.WARNING, logger="datamodules.gopro"):
        GoProDataModule(root).setup("test")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
