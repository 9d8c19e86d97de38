"""Evaluation: scores equal an independent PSNR/SSIM computation, outputs, tiling, and
checkpoints that are rejected with a clear message."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf, open_dict
from skimage.metrics import structural_similarity

from datamodules.gopro import GoProDataModule
from datamodules.image_io import read_rgb
from datamodules.motion_blur import BlurParams, blur_image
from datamodules.synthetic import load_bundled_image
from srn_deblur.evaluation import evaluate_checkpoint, evaluate_dataset, run_evaluation
from srn_deblur.inference import CheckpointError, deblur, plan_tiles, save_network
from srn_deblur.network import SRNDeblurNet
from srn_deblur.protocols import ScoringProtocol
from srn_deblur.training import train
from tests.conftest import compose_config, write_png

REPO = Path(__file__).resolve().parents[1]
TINY = dict(channels=3, num_scales=2, widths=[4, 8, 8], num_res_blocks=1, kernel_size=3, residual=True)
# Two sequences of photos at sizes the network must pad (not multiples of 16).
TEST_IMAGES = {"seqA": [("chelsea", (45, 61)), ("coffee", (50, 38))], "seqB": [("astronaut", (40, 40))]}


@pytest.fixture(scope="module")
def test_split(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("gopro")
    rng = np.random.default_rng(0)
    for seq, images in TEST_IMAGES.items():
        for frame, (name, (h, w)) in enumerate(images):
            sharp = np.ascontiguousarray(load_bundled_image(name, 96)[:h, :w])
            write_png(root / "test" / seq / "sharp" / f"{frame:06d}.png", sharp)
            write_png(
                root / "test" / seq / "blur" / f"{frame:06d}.png", blur_image(sharp, rng, BlurParams(3, 5))
            )
    return root


def _checkpoint(path: Path, net: SRNDeblurNet, lightning: bool = True) -> Path:
    if lightning:  # as train.py writes: `net.`-prefixed state dict plus the network config
        save_network(net, path)
    else:
        torch.save(net.state_dict(), path)
    return path


def _numpy_psnr(x: np.ndarray, y: np.ndarray) -> float:
    mse = np.mean((x.astype(np.float64) / 255 - y.astype(np.float64) / 255) ** 2)
    return float(10 * np.log10(1.0 / mse))


def _skimage_ssim(x: np.ndarray, y: np.ndarray) -> float:
    return float(
        structural_similarity(
            x.astype(np.float64) / 255,
            y.astype(np.float64) / 255,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            channel_axis=2,
            data_range=1.0,
        )
    )


@pytest.fixture(scope="module")
def evaluated(test_split: Path, tmp_path_factory):
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("eval")
    ckpt = _checkpoint(out / "tiny.ckpt", SRNDeblurNet(**TINY))
    summary = evaluate_checkpoint(
        ckpt, GoProDataModule(test_split), out / "run", save_images=True, device="cpu"
    )
    return summary, out / "run"


def test_scores_equal_an_independent_psnr_and_ssim_of_the_saved_images(evaluated, test_split: Path):
    summary, run = evaluated
    rows = list(csv.DictReader(open(run / "per_image.csv")))
    assert [(r["sequence"], r["image"]) for r in rows] == [
        ("seqA", "000000.png"),
        ("seqA", "000001.png"),
        ("seqB", "000000.png"),
    ]
    for row in rows:
        sharp = read_rgb(test_split / "test" / row["sequence"] / "sharp" / row["image"])
        blurry = read_rgb(test_split / "test" / row["sequence"] / "blur" / row["image"])
        estimate = read_rgb(run / "images" / row["sequence"] / row["image"])  # the 8-bit PNG that was scored
        assert estimate.shape == sharp.shape == (int(row["height"]), int(row["width"]), 3)
        assert float(row["psnr"]) == pytest.approx(_numpy_psnr(estimate, sharp), abs=1e-4)
        assert float(row["ssim"]) == pytest.approx(_skimage_ssim(estimate, sharp), abs=1e-4)
        assert float(row["input_psnr"]) == pytest.approx(_numpy_psnr(blurry, sharp), abs=1e-4)
        assert float(row["input_ssim"]) == pytest.approx(_skimage_ssim(blurry, sharp), abs=1e-4)
        assert float(row["seconds"]) > 0


def test_means_per_sequence_and_overall_and_the_written_table(evaluated):
    summary, run = evaluated
    rows = list(csv.DictReader(open(run / "per_image.csv")))
    psnr = {s: [float(r["psnr"]) for r in rows if r["sequence"] == s] for s in TEST_IMAGES}
    assert summary["sequences"]["seqA"]["psnr"] == pytest.approx(np.mean(psnr["seqA"]))
    assert summary["sequences"]["seqB"]["images"] == 1
    # Overall = mean over images (as the papers average), not the mean of sequence means.
    assert summary["overall"]["psnr"] == pytest.approx(np.mean(psnr["seqA"] + psnr["seqB"]))
    saved = json.loads((run / "summary.json").read_text())
    assert saved["overall"] == pytest.approx(summary["overall"])
    assert saved["parameters"] == sum(p.numel() for p in SRNDeblurNet(**TINY).parameters())
    table = (run / "results.md").read_text()
    assert (
        f"| **all** | 3 | {summary['overall']['input_psnr']:.2f} | {summary['overall']['psnr']:.2f} |"
        in table
    )
    assert "| seqA | 2 |" in table and "Protocol `default`:" in table and "rounded to 8 bits" in table


def _nudged_net() -> SRNDeblurNet:
    torch.manual_seed(0)
    net = SRNDeblurNet(**TINY)
    # A fresh residual net returns its (8-bit) input exactly; nudge its output off the 8-bit grid.
    torch.nn.init.normal_(net.nets[0].out_block.conv.weight, std=0.01)
    return net.eval()


@pytest.mark.parametrize("rounding", ["round", "truncate"])
def test_estimates_are_scored_and_saved_as_the_protocols_8_bit_images(
    test_split: Path, tmp_path: Path, rounding: str
):
    net = _nudged_net()
    data = GoProDataModule(test_split)
    data.setup("test")
    protocol = ScoringProtocol(name=rounding, rounding=rounding)
    score = evaluate_dataset(net, data.data_test, protocol=protocol, save_dir=tmp_path, limit_images=1)[0]
    blurry, sharp = (x[None] for x in data.data_test[0])
    floats = deblur(net, blurry)[0].permute(1, 2, 0).numpy()  # (H, W, 3) float in [0, 1]
    levels = np.clip(floats, 0, 1) * 255
    expected = np.round(levels) if rounding == "round" else levels.astype(np.uint8)  # the release's cast
    saved = read_rgb(tmp_path / "seqA" / "000000.png")
    assert np.array_equal(saved, expected.astype(np.uint8))
    sharp8 = read_rgb(test_split / "test" / "seqA" / "sharp" / "000000.png")
    assert score.psnr == pytest.approx(_numpy_psnr(saved, sharp8), abs=1e-6)
    unquantised = evaluate_dataset(
        net, data.data_test, protocol=ScoringProtocol(rounding=None), limit_images=1
    )[0]
    assert (
        unquantised.psnr != score.psnr and unquantised.input_psnr == score.input_psnr
    )  # inputs are 8-bit already


def test_large_images_are_tiled_automatically_and_score_like_whole_images(tmp_path: Path):
    rng = np.random.default_rng(1)
    photos = [load_bundled_image(name, 400)[:160, :300] for name in ("coffee", "chelsea")]
    sharp = np.ascontiguousarray(np.concatenate(photos, axis=1))  # 160x600: wider than a 512 tile
    write_png(tmp_path / "test" / "s" / "sharp" / "0.png", sharp)
    write_png(tmp_path / "test" / "s" / "blur" / "0.png", blur_image(sharp, rng))
    data = GoProDataModule(tmp_path)
    data.setup("test")
    torch.manual_seed(0)
    net = SRNDeblurNet(**TINY).eval()
    shapes = []
    net.register_forward_hook(lambda m, i, o: shapes.append(tuple(i[0].shape[-2:])))
    tiled = evaluate_dataset(net, data.data_test, max_pixels=128 * 128, warmup=False)[0]
    assert len(shapes) > 1 and max(max(s) for s in shapes) <= 512  # 512-pixel tiles, not the whole image
    shapes.clear()
    tiled_on_demand = evaluate_dataset(net, data.data_test, tile_size=96, tile_overlap=32, warmup=False)[0]
    assert len(shapes) > 1 and max(max(s) for s in shapes) <= 96
    whole = evaluate_dataset(net, data.data_test, warmup=False)[0]
    assert tiled_on_demand.psnr == pytest.approx(whole.psnr, abs=0.05)
    assert tiled.psnr == pytest.approx(whole.psnr, abs=0.05)


def test_tiled_inference_matches_whole_image_at_sizes_that_are_not_multiples_of_16():
    torch.manual_seed(0)
    net = SRNDeblurNet(**{**TINY, "residual": False}).eval()
    x = torch.rand(1, 3, 203, 261)
    plan = plan_tiles(203, 261, 128, 64)
    diff = (deblur(net, x, tile_size=128, tile_overlap=64) - deblur(net, x)).abs()
    assert all(t % 16 == 0 for t in plan.tops + plan.lefts)
    assert diff.mean() < 5e-3  # as for aligned sizes in test_inference.py


# --------------------------------------------------------------------------- evaluate.py and checkpoints


def _eval_cfg(test_split: Path, ckpt: Path, tmp_path: Path, *extra: str):
    return compose_config(
        [
            "data=gopro",
            f"ckpt_path={ckpt}",
            f"data.data_dir={test_split}",
            "device=cpu",
            "warmup=false",
            *extra,
        ],
        tmp_path,
        config_name="eval",
    )


def test_evaluate_entry_loads_a_bare_state_dict_given_its_model(test_split: Path, tmp_path: Path):
    net = SRNDeblurNet(**{**TINY, "residual": False, "recurrence": "none"})
    bare = _checkpoint(tmp_path / "bare.pt", net, lightning=False)
    overrides = [
        "model=srn_color",
        "model.net.num_scales=2",
        "model.net.widths=[4,8,8]",
        "model.net.num_res_blocks=1",
        "model.net.kernel_size=3",
    ]
    summary = run_evaluation(_eval_cfg(test_split, bare, tmp_path, *overrides))
    assert summary["overall"]["images"] == 3
    assert summary["net_config"]["recurrence"] == "none" and summary["net_config"]["channels"] == 3
    assert (tmp_path / "per_image.csv").is_file() and (tmp_path / "results.md").is_file()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda p: _checkpoint(p, SRNDeblurNet(**TINY), lightning=False),
            "bare state dict with no network config",
        ),
        (lambda p: p.write_bytes(b"\x00garbage"), "cannot load checkpoint .*bad.ckpt: the file is corrupt"),
    ],
)
def test_unusable_checkpoints_are_named(test_split: Path, tmp_path: Path, make, message):
    ckpt = tmp_path / "bad.ckpt"
    make(ckpt)
    with pytest.raises(CheckpointError, match=message):
        run_evaluation(_eval_cfg(test_split, ckpt, tmp_path))


def test_checkpoint_of_another_architecture_is_rejected_by_evaluate_py(test_split: Path, tmp_path: Path):
    ckpt = _checkpoint(tmp_path / "lstm.ckpt", SRNDeblurNet(**TINY))
    command = [
        sys.executable,
        "evaluate.py",
        f"ckpt_path={ckpt}",
        "data=gopro",
        f"data.data_dir={test_split}",
        "model=srn_color",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert f"checkpoint {ckpt} does not fit this network" in done.stderr
    assert "use the model config it was trained with" in done.stderr
    assert not (tmp_path / "run" / "per_image.csv").exists()


# ------------------------------------------------------------- train.py's test table = evaluate.py's


@pytest.mark.slow
def test_the_test_table_of_training_equals_evaluate_py_on_the_same_checkpoint(
    tiny_training_overrides, tmp_path: Path
):
    run_dir = tmp_path / "run"
    train_cfg = compose_config([*tiny_training_overrides, "test=true", "test_ckpt=last"], run_dir)
    metrics = train(train_cfg)
    # What test_ckpt=last tests: the most advanced last*.ckpt of the run.
    ckpt = max(run_dir.rglob("last*.ckpt"), key=lambda p: torch.load(p, weights_only=True)["global_step"])
    eval_cfg = compose_config([f"ckpt_path={ckpt}", "device=cpu", "warmup=false"], tmp_path / "eval", "eval")
    with open_dict(eval_cfg):
        eval_cfg.data = OmegaConf.to_container(train_cfg.data, resolve=True)  # the run's own data
        eval_cfg.data.num_workers = 0
    summary = run_evaluation(eval_cfg)
    assert summary["overall"]["images"] > 1
    for key in ("psnr", "ssim", "input_psnr", "input_ssim"):
        assert metrics[f"test/{key}"] == pytest.approx(summary["overall"][key], abs=1e-4), key
    # Not a coincidence of two metrics that agree anyway: scored without rounding, the numbers move.
    unrounded = run_evaluation(_with(eval_cfg, "protocol.rounding", None, tmp_path / "eval_float"))
    assert unrounded["overall"]["psnr"] != pytest.approx(metrics["test/psnr"], abs=1e-4)

    # `run_dir=` finds all of that in the run folder itself, as train.py's Hydra run leaves it.
    (run_dir / ".hydra").mkdir()
    OmegaConf.save(
        OmegaConf.masked_copy(train_cfg, [k for k in train_cfg if k != "hydra"]),
        run_dir / ".hydra/config.yaml",
    )
    by_run = compose_config(
        [f"run_dir={run_dir}", "device=cpu", "warmup=false"], tmp_path / "eval_run", "eval"
    )
    summary_run = run_evaluation(by_run)
    step = torch.load(ckpt, weights_only=True)["global_step"]  # the run's latest state, as tested
    assert torch.load(summary_run["checkpoint"], weights_only=True)["global_step"] == step
    assert summary_run["precision"] == "fp32"
    for key in ("psnr", "ssim", "input_psnr", "input_ssim"):
        assert metrics[f"test/{key}"] == pytest.approx(summary_run["overall"][key], abs=1e-4), key


def test_run_dir_without_a_training_record_says_what_to_pass(tmp_path: Path):
    cfg = compose_config([f"run_dir={tmp_path}", "device=cpu"], tmp_path / "eval", "eval")
    with pytest.raises(FileNotFoundError, match="no .hydra/config.yaml"):
        run_evaluation(cfg)
    with pytest.raises(ValueError, match="ckpt_path=<checkpoint> or run_dir="):
        run_evaluation(compose_config(["device=cpu"], tmp_path / "eval2", "eval"))


def test_lightning_precisions_map_to_the_inference_precision_they_compute_in():
    from srn_deblur.training_runs import inference_precision

    assert [inference_precision(p, "cpu") for p in ("bf16-mixed", "16-mixed", "32-true", "32")] == [
        "bf16",
        "fp16",
        "fp32",
        "fp32",
    ]
    assert inference_precision("auto", "gpu") == "bf16"  # train.py's auto is bf16 on CUDA


def _with(cfg, key: str, value, output_dir: Path):
    cfg = cfg.copy()
    with open_dict(cfg):
        OmegaConf.update(cfg, key, value)
        cfg.paths.output_dir = str(output_dir)
    return cfg
