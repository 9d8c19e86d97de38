"""deblur.py on folders and globs: good files come out at their size with the network's pixels,
unreadable ones are named and skipped, nothing is overwritten, and the exit status tells."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from datamodules.image_io import decode_image, read_rgb
from srn_deblur.deblurrer import Deblurrer
from srn_deblur.inference import save_network
from srn_deblur.network import SRNDeblurNet
from srn_deblur.runner import RunOptions, run

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def net() -> SRNDeblurNet:
    torch.manual_seed(0)
    return SRNDeblurNet(channels=3, widths=(4, 8, 8), num_res_blocks=1).eval()


def _pixels(height: int, width: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _direct(net: SRNDeblurNet, pixels: np.ndarray) -> np.ndarray:
    """The network's whole-image estimate as 8-bit, computed here without deblur() or to_uint8."""
    x = torch.from_numpy(pixels.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    with torch.no_grad():
        out = net(x)[-1][0].clamp(0, 1).permute(1, 2, 0).numpy()
    return np.rint(out * 255.0).astype(np.uint8)


def _folder(root: Path) -> dict[str, np.ndarray]:
    """Good photos (RGB PNG, grey JPEG in a sub-folder, RGBA PNG), a broken PNG and a text file."""
    good = {"a.png": _pixels(30, 44, 1), "sub/b.jpg": _pixels(36, 20, 2), "c.png": _pixels(17, 23, 3)}
    (root / "sub").mkdir(parents=True)
    Image.fromarray(good["a.png"]).save(root / "a.png")
    Image.fromarray(good["sub/b.jpg"]).convert("L").save(root / "sub/b.jpg", quality=95)
    Image.fromarray(good["c.png"]).convert("RGBA").save(root / "c.png")
    buffer = io.BytesIO()
    Image.fromarray(_pixels(40, 40, 4)).save(buffer, format="PNG")
    (root / "broken.png").write_bytes(buffer.getvalue()[:300])
    (root / "notes.txt").write_text("not a photo")
    return good


def _hashes(root: Path) -> dict[Path, str]:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}


def test_folder_run_deblurs_good_files_names_bad_ones_and_overwrites_nothing(tmp_path, net):
    inputs = tmp_path / "in"
    _folder(inputs)
    before = _hashes(inputs)
    deblurrer = Deblurrer(net=net, device="cpu", precision="fp32", channels_last=False)
    summary = run(str(inputs), tmp_path / "out", deblurrer, RunOptions(recursive=True, progress=False))
    assert _hashes(inputs) == before
    written = sorted(p.relative_to(tmp_path / "out").as_posix() for p in summary.written)
    assert written == ["a.png", "c.png", "sub/b.png"]
    for name in ("a.png", "c.png", "sub/b.jpg"):
        source = np.asarray(Image.open(inputs / name).convert("RGB"))
        result = read_rgb(tmp_path / "out" / Path(name).with_suffix(".png"))
        assert result.shape == source.shape
        assert np.abs(result.astype(int) - _direct(net, source).astype(int)).max() <= 1
    skipped = {s.path.name: s.reason for s in summary.skipped}
    assert set(skipped) == {"broken.png", "notes.txt"}
    assert "broken.png" in skipped["broken.png"] and "truncated or corrupt" in skipped["broken.png"]
    assert "cannot be read as an image" in skipped["notes.txt"]
    lines = "\n".join(summary.lines())
    assert "3 files written" in lines and "2 skipped" in lines and "broken.png" in lines


def test_results_beside_the_inputs_never_replace_them(tmp_path, net):
    _folder(tmp_path)
    before = _hashes(tmp_path)
    deblurrer = Deblurrer(net=net, device="cpu", precision="fp32")
    summary = run(str(tmp_path / "*.png"), tmp_path, deblurrer, RunOptions(progress=False, side_by_side=True))
    assert all(_hashes(tmp_path)[p] == h for p, h in before.items())
    refused = {s.path.name for s in summary.skipped if "would replace an input" in s.reason}
    assert refused == {"a.png", "c.png", "broken.png"}  # refused before any reading
    assert summary.written == []


def test_side_by_side_shows_input_left_and_result_right(tmp_path, net):
    pixels = _pixels(24, 32, 5)
    Image.fromarray(pixels).save(tmp_path / "p.png")
    deblurrer = Deblurrer(net=net, device="cpu", precision="fp32")
    run(str(tmp_path / "p.png"), tmp_path / "out", deblurrer, RunOptions(progress=False, side_by_side=True))
    pair = read_rgb(tmp_path / "out" / "p_side_by_side.png")
    assert pair.shape == (24, 64, 3)
    assert np.array_equal(pair[:, :32], pixels)
    assert np.array_equal(pair[:, 32:], read_rgb(tmp_path / "out" / "p.png"))


def test_sixteen_bit_grey_is_scaled_not_clipped():
    levels = np.linspace(0, 65535, 5 * 7).reshape(5, 7).astype(np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(levels).save(buffer, format="PNG")  # mode I;16
    pixels = decode_image(buffer.getvalue(), "deep.png").pixels
    assert pixels.shape == (5, 7, 3)
    wanted = np.rint(levels / 257.0).astype(np.uint8)
    assert np.array_equal(pixels[..., 0], wanted) and np.array_equal(pixels[..., 2], wanted)


def test_truncate_rounding_floors_the_levels(tmp_path, net):
    pixels = _pixels(20, 20, 6)
    Image.fromarray(pixels).save(tmp_path / "p.png")
    for rounding in ("round", "truncate"):
        deblurrer = Deblurrer(net=net, device="cpu", precision="fp32", rounding=rounding)
        run(str(tmp_path / "p.png"), tmp_path / rounding, deblurrer, RunOptions(progress=False))
    x = torch.from_numpy(pixels.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    with torch.no_grad():
        levels = net(x)[-1][0].clamp(0, 1).permute(1, 2, 0).numpy() * 255.0
    truncated = read_rgb(tmp_path / "truncate" / "p.png").astype(int)
    rounded = read_rgb(tmp_path / "round" / "p.png").astype(int)
    assert np.abs(truncated - np.floor(levels)).max() <= 1 and np.abs(rounded - np.rint(levels)).max() <= 1
    assert ((rounded - truncated) == 1).mean() > 0.2  # the levels whose fraction is 0.5 or more


@pytest.mark.slow
def test_command_line_prints_the_summary_and_exits_1_when_something_was_skipped(tmp_path, net):
    _folder(tmp_path / "in")
    checkpoint = save_network(net, tmp_path / "tiny.ckpt")
    command = [
        sys.executable,
        "deblur.py",
        f"ckpt_path={checkpoint}",
        f"input={tmp_path / 'in'}",
        f"output={tmp_path / 'out'}",
        "recursive=true",
        "progress=false",
        f"paths.log_dir={tmp_path / 'logs'}",
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    assert "3 files written" in done.stdout and "broken.png" in done.stdout and "notes.txt" in done.stdout
    assert "s per megapixel" in done.stdout
    assert sorted(p.name for p in (tmp_path / "out").rglob("*.png")) == ["a.png", "b.png", "c.png"]
    missing = subprocess.run(
        command[:2] + [f"ckpt_path={tmp_path / 'nope.ckpt'}", "input=x"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert missing.returncode == 2 and "nope.ckpt does not exist" in missing.stderr
