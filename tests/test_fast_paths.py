"""Every fast path reproduces the plain float32 eager network within a stated tolerance.

Tolerances (outputs of tiny random networks, whose estimates reach magnitudes of ~10):
- channels_last, torch.compile, inference_mode: float32 rounding only, max |diff| <= 1e-4
  (inference_mode and channels_last are exact or nearly so);
- bf16 autocast: max |diff| <= 3% of the largest |output| (bf16 keeps 8 mantissa bits; the
  worst seen over seeds and models was 1.5%), the first training loss within 2%;
- CUDA float32 (TF32 convolutions, cudnn autotuning, CUDA graphs): within 1% of the largest |output|.
Speed is measured by benchmarks/bench.py, never here.
"""

from __future__ import annotations

import copy
from functools import partial
from pathlib import Path

import hydra
import pytest
import torch

from srn_deblur.inference import deblur
from srn_deblur.module import SRNLitModule
from srn_deblur.network import SRNDeblurNet
from srn_deblur.recurrence import ConvLSTMCell
from tests.conftest import compose_config

SMALL = dict(widths=(4, 8, 8), num_res_blocks=1, kernel_size=3)
FP32_TOL = 1e-4
BF16_REL_TOL = 0.03
TF32_REL_TOL = 0.01  # CUDA runs float32 convolutions in TF32 (10-bit mantissa) by default
BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench.py"
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _net(channels: int = 3, seed: int = 0, **kwargs) -> SRNDeblurNet:
    torch.manual_seed(seed)
    return SRNDeblurNet(channels=channels, **{**SMALL, **kwargs}).eval()


def _module(net: SRNDeblurNet, **switches) -> SRNLitModule:
    """A module with fast-path switches applied as Lightning applies them (setup)."""
    module = SRNLitModule(copy.deepcopy(net), optimizer=partial(torch.optim.Adam, lr=1e-3), **switches)
    module.setup("fit")
    return module


def _image(batch: int = 2, height: int = 48, width: int = 64, seed: int = 1) -> torch.Tensor:
    return torch.rand(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))


def _assert_scales_close(got: list[torch.Tensor], expected: list[torch.Tensor], atol: float) -> None:
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert g.shape == e.shape
        assert (g.float() - e).abs().max().item() <= atol


def _assert_scales_close_relative(got: list[torch.Tensor], expected: list[torch.Tensor], rel: float) -> None:
    """max |got - expected| within `rel` of the largest |expected| at every scale."""
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert g.shape == e.shape
        assert (g.float().cpu() - e).abs().max().item() <= rel * e.abs().max().item()


def test_channels_last_switch_converts_the_network_and_keeps_its_output():
    net = _net()
    module = _module(net, channels_last=True)
    weight = module.net.nets[0].in_block.conv.weight
    assert weight.is_contiguous(memory_format=torch.channels_last)
    x = _image()
    with torch.no_grad():
        expected = net(x)
        batch = module.on_after_batch_transfer([x, x], 0)
        assert batch[0].is_contiguous(memory_format=torch.channels_last)
        _assert_scales_close(module.net(batch[0]), expected, FP32_TOL)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("seed", [0, 1])
def test_bf16_autocast_agrees_with_float32(channels: int, seed: int):
    net = _net(channels, seed)
    x = _image(seed=seed + 10)
    with torch.no_grad():
        expected = net(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = net(x)
    assert got[-1].dtype == torch.bfloat16  # autocast really ran the convolutions in bf16
    _assert_scales_close_relative(got, expected, BF16_REL_TOL)


def test_convlstm_state_stays_float32_under_autocast():
    torch.manual_seed(0)
    cell = ConvLSTMCell(8)
    x = torch.rand(2, 8, 6, 10)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        features, state = cell(x.bfloat16(), None)
        features2, state2 = cell(features, cell.resize_state(state, (6, 10)))
    assert features.dtype == torch.bfloat16  # the decoder gets autocast's dtype
    assert all(s.dtype == torch.float32 for s in (*state, *state2))
    # Same cell in float32: the float32 state keeps the second step within bf16 rounding.
    ref_features, ref_state = cell(x, None)
    ref_features2, _ = cell(ref_features, ref_state)
    assert (features2.float() - ref_features2).abs().max().item() < 0.02


def test_a_network_cast_to_bf16_runs_with_a_float32_lstm_state():
    net = _net(3).to(torch.bfloat16)
    out = net(_image().bfloat16())
    assert out[-1].dtype == torch.bfloat16 and torch.isfinite(out[-1].float()).all()


def test_bf16_training_step_keeps_the_loss_in_float32_and_agrees():
    net = _net(1)
    x = _image()[:, :1]  # grey crops, as 1-channel models train
    sharp = (x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(3))).clamp(0, 1)
    plain, fast = _module(net), _module(net, channels_last=True)
    expected, _ = plain.model_step((x, sharp))
    batch = fast.on_after_batch_transfer([x, sharp], 0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = fast.model_step(batch)
    assert loss.dtype == torch.float32
    assert abs(loss.item() - expected.item()) <= 0.02 * expected.item()
    loss.backward()
    grads = [p.grad for p in fast.net.recurrent_parameters]
    assert all(g is not None and g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)


def test_compile_switch_compiles_in_place_and_agrees():
    net = _net(3, num_scales=2)  # two scales keep the compilation short
    module = _module(net, compile=True)
    # Compiled in place: checkpoints keep the plain parameter names (no `_orig_mod.`).
    assert set(module.net.state_dict()) == set(net.state_dict())
    x = _image()
    with torch.no_grad():
        expected = net(x)
        got = module.net(x)
    _assert_scales_close(got, expected, FP32_TOL)
    assert module.net._compiled_call_impl is not None  # the call really went through torch.compile


@pytest.mark.slow
def test_compiled_training_step_gives_the_eager_gradients():
    net = _net(1, num_scales=1)  # one scale keeps the compilation of forward and backward short
    x = _image(1)[:, :1]
    sharp = x.flip(-1)
    plain, compiled = _module(net), _module(net, compile=True)
    for module in (plain, compiled):
        loss, _ = module.model_step((x, sharp))
        loss.backward()
    for (name, p), q in zip(plain.net.named_parameters(), compiled.net.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, atol=1e-5, rtol=1e-4, msg=name)


def test_unknown_compile_mode_is_refused_by_name():
    with pytest.raises(ValueError, match="compile_mode must be one of .*'fastest'"):
        SRNLitModule(_net(), optimizer=partial(torch.optim.Adam, lr=1e-3), compile_mode="fastest")


def test_inference_mode_deblur_equals_the_plain_forward():
    net = _net(3)
    x = _image()
    with torch.no_grad():
        expected = net(x)[-1].clamp(0, 1)
    got = deblur(net, x)
    assert got.is_inference()
    torch.testing.assert_close(got, expected, atol=0, rtol=0)


def test_tiled_inference_never_runs_the_network_on_more_than_a_tile():
    """Peak memory is set by the tile, not the photo: every network call sees one tile at most."""
    net = _net(1)
    seen = []
    net.register_forward_pre_hook(lambda module, args: seen.append(tuple(args[0].shape[-2:])))
    x = _image(1, 200, 300)
    out = deblur(net, x, tile_size=64, tile_overlap=16)
    assert out.shape == x.shape
    assert len(seen) > 1 and max(h * w for h, w in seen) <= 64 * 64


def test_fast_path_switches_compose_from_config(tmp_path: Path):
    cfg = compose_config(
        [
            "model.channels_last=true",
            "model.compile=true",
            "model.compile_mode=max-autotune-no-cudagraphs",
            "trainer=cpu_bf16",
        ],
        tmp_path,
    )
    assert cfg.trainer.precision == "bf16-mixed"
    module = hydra.utils.instantiate(cfg.model)
    assert module.hparams.compile and module.hparams.channels_last
    assert module.hparams.compile_mode == "max-autotune-no-cudagraphs"
    gpu = compose_config(["trainer=gpu_bf16"], tmp_path)
    assert gpu.trainer.precision == "bf16-mixed" and gpu.trainer.benchmark
    assert gpu.trainer.accelerator == "gpu"


# ----------------------------------------------------------------------------- GPU-only paths


@needs_cuda
@pytest.mark.gpu
@pytest.mark.parametrize("cudnn_benchmark", [False, True])
def test_cudnn_benchmark_and_bf16_on_cuda_agree(cudnn_benchmark: bool):
    net = _net(3).cuda()
    x = _image().cuda()
    torch.backends.cudnn.benchmark = cudnn_benchmark
    try:
        with torch.no_grad():
            expected = _net(3)(x.cpu())
            _assert_scales_close_relative(net(x), expected, TF32_REL_TOL)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                _assert_scales_close_relative(net(x), expected, BF16_REL_TOL)
    finally:
        torch.backends.cudnn.benchmark = False


@needs_cuda
@pytest.mark.gpu
def test_cuda_graphs_compile_mode_agrees():
    net = _net(3)
    module = _module(net, compile=True, compile_mode="reduce-overhead", channels_last=True).cuda()
    x = _image()
    with torch.no_grad():
        expected = net(x)
    with torch.inference_mode():
        for _ in range(3):  # recorded on the first calls, replayed after
            x_cuda = x.cuda().contiguous(memory_format=torch.channels_last)
            got = [g.clone().cpu() for g in module.net(x_cuda)]
    _assert_scales_close_relative(got, expected, TF32_REL_TOL)


# --- the inference fast path (precision, channels-last) -----------------------------------------


def test_precision_auto_resolves_from_the_cpus_bf16_units():
    from srn_deblur.devices import resolve_precision

    # Derived here from the kernel's own flag list, not from the code under test.
    flags = next(
        (
            line.split(":", 1)[1].split()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("flags")
        ),
        [],
    )
    native = "amx_bf16" in flags or "avx512_bf16" in flags
    assert resolve_precision("auto", torch.device("cpu")) == ("bf16" if native else "fp32")
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"
    assert resolve_precision("fp16", torch.device("cpu")) == "fp16"
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("int8", torch.device("cpu"))


@pytest.mark.parametrize("tile_size", [None, 32])
def test_deblur_fast_path_matches_fp32(tile_size):
    net = _net()
    x = _image(batch=1)
    expected = deblur(copy.deepcopy(net), x, tile_size=tile_size, tile_overlap=16)
    fast = deblur(copy.deepcopy(net), x, tile_size=tile_size, tile_overlap=16, channels_last=True)
    assert (fast - expected).abs().max().item() <= FP32_TOL
    bf16 = deblur(
        copy.deepcopy(net), x, tile_size=tile_size, tile_overlap=16, precision="bf16", channels_last=True
    )
    assert bf16.dtype == torch.float32
    with torch.no_grad():  # the module's tolerance is relative to the unclamped output's scale
        scale = net(x)[-1].abs().max().item()
    assert (bf16 - expected).abs().max().item() <= BF16_REL_TOL * scale
    assert (bf16 - expected).abs().max().item() > 0  # it did run in bf16
