"""Checkpoint loading (weights_only, clear errors) and tiled inference."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from srn_deblur.inference import CheckpointError, deblur, load_network, save_network, tile_count, tile_grid
from srn_deblur.network import SRNDeblurNet

SMALL = dict(channels=3, num_scales=2, widths=(4, 8, 8), num_res_blocks=1, kernel_size=3, recurrence="lstm")


def _lightning_style_checkpoint(net: SRNDeblurNet, path: Path) -> Path:
    return save_network(net, path)


def test_checkpoint_round_trip_rebuilds_the_network(tmp_path: Path):
    net = SRNDeblurNet(**SMALL)
    loaded = load_network(_lightning_style_checkpoint(net, tmp_path / "a.ckpt"))
    x = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(loaded(x)[-1], net.eval()(x)[-1])
    assert not loaded.training


def test_bare_state_dict_needs_and_accepts_a_config(tmp_path: Path):
    net = SRNDeblurNet(**SMALL)
    torch.save(net.state_dict(), tmp_path / "bare.pt")
    with pytest.raises(CheckpointError, match="bare state dict"):
        load_network(tmp_path / "bare.pt")
    loaded = load_network(tmp_path / "bare.pt", net_config=net.config)
    torch.testing.assert_close(loaded.state_dict()["nets.0.out_block.conv.weight"], net.state_dict()["nets.0.out_block.conv.weight"])


def test_checkpoint_of_another_architecture_is_rejected_with_details(tmp_path: Path):
    path = _lightning_style_checkpoint(SRNDeblurNet(**SMALL), tmp_path / "lstm.ckpt")
    other = SRNDeblurNet(**{**SMALL, "recurrence": "none", "widths": (4, 8, 16)})
    with pytest.raises(CheckpointError, match=r"does not fit this network: 2 unexpected .*another shape .*use the model config"):
        load_network(path, net=other)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04broken zip"])
def test_corrupt_checkpoint_is_named(tmp_path: Path, content: bytes):
    path = tmp_path / "broken.ckpt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="broken.ckpt"):
        load_network(path)


def test_checkpoint_with_arbitrary_objects_is_refused(tmp_path: Path):
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": Path("/etc/passwd")}, path)  # a non-tensor object
    with pytest.raises(CheckpointError, match="not plain weights"):
        load_network(path)


def test_missing_checkpoint_is_named(tmp_path: Path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_network(tmp_path / "nope.ckpt")


def _away_from_tile_edges(h: int, w: int, tile_size: int, overlap: int, margin: int) -> torch.Tensor:
    """Pixels at least `margin` away from every tile edge that lies inside the image."""
    tile, tops, lefts = tile_grid(h, w, tile_size, overlap)
    mask = torch.ones(h, w, dtype=torch.bool)
    for edge in {e for t in tops for e in (t, t + tile)} - {0, h}:
        mask[max(0, edge - margin) : edge + margin, :] = False
    for edge in {e for s in lefts for e in (s, s + tile)} - {0, w}:
        mask[:, max(0, edge - margin) : edge + margin] = False
    return mask


def test_tiled_inference_matches_whole_image_away_from_blending():
    torch.manual_seed(0)
    net = SRNDeblurNet(**SMALL).eval()
    x = torch.rand(1, 3, 256, 320)
    whole = deblur(net, x)
    tiled = deblur(net, x, tile_size=128, tile_overlap=64)
    assert tile_count(256, 320, 128, 64) >= 9
    assert tiled.shape == whole.shape
    interior = _away_from_tile_edges(256, 320, 128, 64, margin=32)
    assert interior.sum() > 2000
    diff = (tiled - whole).abs()[0].amax(0)
    assert diff[interior].max() < 1e-4
    assert diff.mean() < 5e-3  # the blend zones differ a little, but not wildly


def test_tiling_chosen_automatically_above_max_pixels():
    net = SRNDeblurNet(**SMALL).eval()
    calls = []
    net.register_forward_hook(lambda m, i, o: calls.append(i[0].shape))
    deblur(net, torch.rand(1, 3, 700, 600), max_pixels=512 * 512)
    assert len(calls) > 1 and all(s[-1] <= 512 and s[-2] <= 512 for s in calls)
