"""benchmarks/bench.py and the MAC count it reports: the count against the layer table, the
script's table rows and its errors. The timings themselves are never checked here."""


import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from srn_deblur.flops import count_macs
from srn_deblur.network import SRNDeblurNet

SMALL = dict(widths=(4, 8, 8), num_res_blocks=1, kernel_size=3)

FP32_TOL = 1e-4
BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench.py"


def _load_bench():
    """benchmarks/bench.py is a script, not a package module: load it by path."""
    if "srn_bench" not in sys.modules:
        spec = importlib.util.spec_from_file_location("srn_bench", BENCH)
        module = importlib.util.module_from_spec(spec)
        sys.modules["srn_bench"] = module  # dataclasses look their module up while the class is built
        spec.loader.exec_module(module)
    return sys.modules["srn_bench"]


def _macs_from_layer_table(channels: int, height: int, width: int) -> int:
    """Conv MACs of the released network, written out from the spec's layer table."""
    per_pixel = (
        2 * channels * 32 * 25  # InBlock conv (full resolution)
        + 6 * 32 * 32 * 25  # 3 ResBlocks x 2 convs at width 32, encoder
        + (32 * 64 * 25 + 6 * 64 * 64 * 25) / 4  # EBlock1 at 1/2 resolution
        + (64 * 128 * 25 + 6 * 128 * 128 * 25) / 16  # EBlock2 at 1/4
        + 256 * 512 * 9 / 16  # ConvLSTM conv
        + (6 * 128 * 128 * 25 + 128 * 64 * 16) / 16  # DBlock1: ResBlocks + deconv over 1/4 inputs
        + (6 * 64 * 64 * 25 + 64 * 32 * 16) / 4  # DBlock2
        + 6 * 32 * 32 * 25
        + 32 * channels * 25  # OutBlock
    )
    planes = 3 // channels  # a grey model runs R, G, B as three planes
    pixels = sum(height * width * 0.25**level for level in range(3))
    return round(per_pixel * pixels * planes)


@pytest.mark.parametrize("channels", [1, 3])
def test_counted_macs_match_the_layer_table(channels: int):
    counted = count_macs(SRNDeblurNet(channels=channels), (1, 3, 720, 1280))
    assert counted == _macs_from_layer_table(channels, 720, 1280)
    # 1.26 TMAC for the colour model: the 1.32 counts transposed convs as dense convs.
    assert 1.25e12 < _macs_from_layer_table(3, 720, 1280) < 1.27e12


def test_benchmark_smoke_run_reports_every_case(tmp_path: Path):
    bench = _load_bench()
    threads = torch.get_num_threads()
    out = tmp_path / "smoke.json"
    try:
        results = bench.main(["--preset", "smoke", "--device", "cpu", "--threads", "1", "--json", str(out)])
    finally:
        torch.set_num_threads(threads)
    saved = json.loads(out.read_text())
    assert saved["phases_done"][-1] == "targets"
    rows = {(r["task"], r["model"], r["path"]): r for r in results["rows"]}
    assert set(rows) == {
        ("infer", "color_lstm", "plain"),
        ("infer", "color_lstm", "channels_last"),
        ("infer", "color_lstm", "bf16_cl"),
        ("infer", "lstm", "plain"),
        ("infer", "lstm", "bf16"),
        ("train", "color_lstm", "plain"),
        ("train", "color_lstm", "bf16_cl"),
        ("tiled", "color_lstm", "plain"),
    }
    for (task, _, _), row in rows.items():
        assert len(row["times_s"]) == (1 if task == "tiled" else 2)  # the smoke preset's repeats
        assert row["median_s"] > 0 and row["peak_mib"] > 0
        assert row["gflops"] == pytest.approx(row["gflop_per_call"] / row["median_s"])
    assert rows[("infer", "color_lstm", "plain")]["speedup_vs_plain"] == 1.0
    assert rows[("infer", "color_lstm", "channels_last")]["agreement"] <= FP32_TOL
    assert rows[("infer", "color_lstm", "bf16_cl")]["agreement"] <= 0.1  # clamped to [0, 1]
    assert rows[("train", "color_lstm", "bf16_cl")]["agreement"] <= 0.02
    # A training step counts as 3 forward passes over the batch.
    train = rows[("train", "color_lstm", "plain")]
    net = SRNDeblurNet(channels=3, widths=(4, 8, 8), num_res_blocks=1)
    assert train["gflop_per_call"] * 1e9 == pytest.approx(6 * count_macs(net, (2, 3, 32, 32)))
    assert results["loader"]["samples_per_s"] > 0
    assert "| infer | color_lstm | plain |" in out.with_suffix(".md").read_text()


def test_benchmark_refuses_unknown_names():
    bench = _load_bench()
    with pytest.raises(SystemExit, match="unknown fast path"):
        bench.main(["--preset", "smoke", "--device", "cpu", "--infer", "color_lstm:plain,turbo"])
    with pytest.raises(SystemExit, match="unknown model"):
        bench.main(["--preset", "smoke", "--device", "cpu", "--train", "resnet:plain"])
