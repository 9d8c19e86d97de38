"""Checkpoint loading (weights_only, clear errors) and tiled inference."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

from srn_deblur.inference import (
    CheckpointError,
    deblur,
    load_network,
    plan_tiles,
    save_network,
)
from srn_deblur.network import SRNDeblurNet
from srn_deblur.tiling import tiles_per_batch

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
    torch.testing.assert_close(
        loaded.state_dict()["nets.0.out_block.conv.weight"], net.state_dict()["nets.0.out_block.conv.weight"]
    )


def test_checkpoint_of_another_architecture_is_rejected_with_details(tmp_path: Path):
    path = _lightning_style_checkpoint(SRNDeblurNet(**SMALL), tmp_path / "lstm.ckpt")
    other = SRNDeblurNet(**{**SMALL, "recurrence": "none", "widths": (4, 8, 16)})
    with pytest.raises(
        CheckpointError,
        match=r"does not fit this network: 2 unexpected .*another shape .*use the model config",
    ):
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
    plan = plan_tiles(h, w, tile_size, overlap)
    tile, tops, lefts = plan.tile, plan.tops, plan.lefts
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
    assert plan_tiles(256, 320, 128, 64).count >= 9
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


# --- the tile plan and batched tiles ----------------------------------------------------------


def test_tile_plan_covers_the_image_on_the_alignment_grid():
    plan = plan_tiles(200, 300, tile_size=128, tile_overlap=64)
    assert (plan.tile, plan.overlap) == (128, 64)
    covered = torch.zeros(200, 300, dtype=torch.int32)
    for top, left in plan.positions:
        assert top % 16 == 0 and left % 16 == 0
        covered[top : top + 128, left : left + 128] += 1
    assert covered.min() >= 1 and plan.count == len(plan.positions) == 12
    # Independently: starts every 64 px until a tile reaches the edge.
    assert plan.tops == (0, 64, 128) and plan.lefts == (0, 64, 128, 192)
    assert plan_tiles(200, 300, tile_size=512).whole and plan_tiles(200, 300, tile_size=512).count == 1
    assert plan_tiles(700, 600, tile_size=256, max_pixels=700 * 600).whole  # not over the limit
    assert not plan_tiles(700, 600, tile_size=256, max_pixels=700 * 600 - 1).whole


def test_batches_group_tiles_of_one_shape_and_respect_the_size():
    plan = plan_tiles(200, 300, tile_size=128, tile_overlap=64)
    # Shapes by position, derived here: rows at 0, 64 are 128 high, the row at 128 is 72; columns
    # at 0..128 are 128 wide, the one at 192 is 108.
    shapes = {(t, s): (128 if t < 128 else 72, 128 if s < 192 else 108) for t, s in plan.positions}
    batches = plan.batches(4)
    assert sorted(p for b in batches for p in b) == sorted(plan.positions)
    for batch in batches:
        assert 1 <= len(batch) <= 4 and len({shapes[p] for p in batch}) == 1
    # 6 full tiles -> 2 batches, 3 of 72x128 -> 1, 2 of 128x108 -> 1, 1 of 72x108 -> 1.
    assert len(batches) == 5
    assert len(plan.batches(4, skip={(0, 0)})) == 5 and sum(map(len, plan.batches(1))) == 12


@pytest.mark.parametrize(
    ("count", "per_tile", "free", "wanted"),
    [(12, 1_000, 10_000, 7), (12, 1_000, 100_000, 12), (12, 1_000, 500, 1), (3, 0, 10, 3)],
)
def test_tiles_per_batch_fills_the_free_memory_with_headroom(count, per_tile, free, wanted):
    assert tiles_per_batch(count, per_tile, free, headroom=0.7) == wanted


def test_batched_tiles_give_the_same_image_in_fewer_passes():
    torch.manual_seed(0)
    net = SRNDeblurNet(**SMALL).eval()
    x = torch.rand(1, 3, 200, 300)
    passes = []
    hook = net.register_forward_hook(lambda m, i, o: passes.append(i[0].shape[0]))
    one = deblur(net, x, tile_size=128, tile_overlap=64, batch_tiles=1)
    assert passes == [1] * 12
    passes.clear()
    progress = []
    four = deblur(
        net, x, tile_size=128, tile_overlap=64, batch_tiles=4, on_tile=lambda d, t: progress.append((d, t))
    )
    hook.remove()
    assert sorted(passes) == [1, 2, 2, 3, 4]  # the batches derived in the test above
    assert [d for d, _ in progress] == list(itertools.accumulate(passes)) and progress[-1] == (12, 12)
    torch.testing.assert_close(four, one, atol=1e-5, rtol=0)


def test_auto_batching_on_the_cpu_runs_one_tile_per_pass():
    net = SRNDeblurNet(**SMALL).eval()
    passes = []
    net.register_forward_hook(lambda m, i, o: passes.append(i[0].shape[0]))
    deblur(net, torch.rand(1, 3, 200, 300), tile_size=128, tile_overlap=64)  # batch_tiles="auto"
    assert passes == [1] * 12
