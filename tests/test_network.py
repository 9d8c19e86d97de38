"""The network matches the layer table of docs/architecture.md and behaves as the paper's Eq. (1)-(2)."""

from __future__ import annotations

import dataclasses
import io

import pytest
import torch
import torch.nn.functional as F

from srn_deblur.loss import MultiScaleLoss
from srn_deblur.network import SRNConfig, SRNDeblurNet
from srn_deblur.recurrence import ConvLSTMCell


def _conv(cin: int, cout: int, k: int) -> int:
    return cin * cout * k * k + cout


# Bottleneck convs (all 3x3 over 128 features): ConvLSTM = one conv cat(x, h) -> 4 gates; the
# ablation's plain conv 128 -> 128; none.
_BOTTLENECK = {"lstm": _conv(256, 512, 3), "conv": _conv(128, 128, 3), "none": 0}


def params_from_layer_table(
    channels: int,
    lstm: bool = True,
    kernel: int = 5,
    res_blocks: int = 3,
    bottleneck: str | None = None,
    nets: int = 1,
) -> int:
    """Trainable parameters counted from docs/architecture.md's layer table, independently of the
    code: a ResBlock is two k x k convs whether or not it keeps its skip; `nets` unshared scales."""
    res = lambda c: res_blocks * 2 * _conv(c, c, kernel)  # noqa: E731
    total = _conv(2 * channels, 32, kernel) + res(32)  # InBlock
    total += _conv(32, 64, kernel) + res(64)  # EBlock1
    total += _conv(64, 128, kernel) + res(128)  # EBlock2
    total += _BOTTLENECK[bottleneck or ("lstm" if lstm else "none")]
    total += res(128) + _conv(128, 64, 4)  # DBlock1
    total += res(64) + _conv(64, 32, 4)  # DBlock2
    total += res(32) + _conv(32, channels, kernel)  # OutBlock
    return nets * total


@pytest.mark.parametrize(
    ("kwargs", "channels", "lstm", "published"),
    [
        ({"channels": 1, "recurrence": "lstm"}, 1, True, 8_056_609),
        ({"channels": 3, "recurrence": "none"}, 3, False, 6_881_251),
        ({"channels": 1, "recurrence": "none"}, 1, False, 6_876_449),
    ],
)
def test_parameter_count_matches_layer_table(kwargs, channels, lstm, published):
    net = SRNDeblurNet(**kwargs)
    counted = sum(p.numel() for p in net.parameters() if p.requires_grad)
    assert params_from_layer_table(channels, lstm) == published
    assert counted == published


@pytest.mark.parametrize("size", [(37, 53), (16, 16), (1, 5), (2, 2), (61, 30)])
@pytest.mark.parametrize("channels", [1, 3])
def test_output_shapes_for_odd_sizes(size, channels):
    net = SRNDeblurNet(channels=channels, widths=(4, 8, 8), num_res_blocks=1)
    x = torch.rand(2, channels, *size)
    outs = net(x)
    assert len(outs) == 3
    assert outs[-1].shape == x.shape
    h, w = size
    # The release's rounding, but never an empty scale (1 or 2 pixels round to 0 at a quarter).
    assert outs[0].shape[-2:] == (max(1, round(h / 4)), max(1, round(w / 4)))
    assert outs[1].shape[-2:] == (max(1, round(h / 2)), max(1, round(w / 2)))


def test_images_too_small_for_the_coarse_scales_still_train():
    """A 1x5 image once gave zero-height coarse estimates and a NaN loss; now every scale has
    one pixel at least, and the loss equals per-scale MSEs against targets resized in the test."""
    net = SRNDeblurNet(channels=3, widths=(4, 8, 8), num_res_blocks=1)
    blurry, sharp = torch.rand(2, 1, 3, 1, 5)
    outs = net(blurry)
    assert [tuple(o.shape[-2:]) for o in outs] == [(1, 1), (1, 2), (1, 5)]
    loss = MultiScaleLoss()(outs, sharp)
    expected = sum(F.mse_loss(o, F.interpolate(sharp, o.shape[-2:], mode="bilinear")) for o in outs)
    assert torch.isfinite(loss)
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert torch.isfinite(net.nets[0].in_block.conv.weight.grad).all()


def test_grey_network_runs_rgb_channels_as_separate_samples():
    net = SRNDeblurNet(channels=1, widths=(4, 8, 8), num_res_blocks=1).eval()
    rgb = torch.rand(2, 3, 20, 24)
    out = net(rgb)[-1]
    assert out.shape == rgb.shape
    green_alone = net(rgb[:, 1:2])[-1]
    torch.testing.assert_close(out[:, 1:2], green_alone, atol=1e-5, rtol=1e-5)


def test_wrong_channel_count_is_rejected_with_a_clear_message():
    net = SRNDeblurNet(channels=3, widths=(4, 8, 8), num_res_blocks=1)
    with pytest.raises(ValueError, match="3-channel images but got 2 channels"):
        net(torch.rand(1, 2, 16, 16))


def test_scales_share_weights():
    shared = SRNDeblurNet(channels=3, widths=(4, 8, 8), num_res_blocks=1)
    cascade = SRNDeblurNet(channels=3, widths=(4, 8, 8), num_res_blocks=1, shared_weights=False)
    assert len(shared.nets) == 1 and len(cascade.nets) == 3
    n_shared = sum(p.numel() for p in shared.parameters())
    assert sum(p.numel() for p in cascade.parameters()) == 3 * n_shared
    # Every scale's estimate depends on the one shared set of weights: a loss on the coarsest
    # estimate alone and one on the finest alone both reach the same InBlock conv.
    x = torch.rand(1, 3, 32, 32)
    for index in (0, 2):
        shared.zero_grad()
        shared(x)[index].sum().backward()
        assert shared.nets[0].in_block.conv.weight.grad.abs().sum() > 0
    # Without sharing, the coarsest loss reaches only the first (coarsest) network.
    cascade(x)[0].sum().backward()
    assert cascade.nets[0].in_block.conv.weight.grad.abs().sum() > 0
    assert cascade.nets[2].in_block.conv.weight.grad is None


def test_previous_estimate_carries_no_gradient():
    """The upsampled coarse estimate is an input (stop_gradient): the finest loss reaches the
    coarse scale only through the recurrent state, never through the image path."""
    net = SRNDeblurNet(
        channels=3, widths=(4, 8, 8), num_res_blocks=1, recurrence="none", shared_weights=False
    )
    net(torch.rand(1, 3, 32, 32))[-1].sum().backward()
    assert net.nets[0].in_block.conv.weight.grad is None
    assert net.nets[2].in_block.conv.weight.grad is not None


def test_recurrent_state_flows_between_scales():
    net = SRNDeblurNet(
        channels=3, widths=(4, 8, 8), num_res_blocks=1, recurrence="lstm", shared_weights=False
    )
    net(torch.rand(1, 3, 32, 32))[-1].sum().backward()
    assert net.nets[0].in_block.conv.weight.grad.abs().sum() > 0


def test_conv_lstm_matches_release_equations():
    torch.manual_seed(0)
    cell = ConvLSTMCell(channels=2, kernel_size=3, forget_bias=1.0)
    x, c, h = torch.randn(3, 1, 2, 5, 5)
    new_h, (new_c, new_h2) = cell(x, (c, h))
    gates = cell.conv(torch.cat([x, h], 1))
    i, j, f, o = gates[:, 0:2], gates[:, 2:4], gates[:, 4:6], gates[:, 6:8]
    expected_c = c * torch.sigmoid(f + 1.0) + torch.sigmoid(i) * torch.tanh(j)
    torch.testing.assert_close(new_c, expected_c)
    torch.testing.assert_close(new_h, torch.tanh(expected_c) * torch.sigmoid(o))
    assert new_h2 is new_h


@pytest.mark.parametrize("recurrence", ["lstm", "gru", "rnn", "none"])
def test_every_recurrence_and_variant_knob_builds_and_runs(recurrence):
    net = SRNDeblurNet(
        channels=3,
        num_scales=2,
        widths=(4, 8, 12),
        num_res_blocks=2,
        kernel_size=3,
        deconv_kernel_size=5,
        recurrence=recurrence,
        recurrent_kernel_size=5,
        residual=True,
    )
    out = net(torch.rand(1, 3, 30, 22))
    assert len(out) == 2 and out[-1].shape == (1, 3, 30, 22)


def test_initialisation_is_xavier_uniform_with_zero_bias():
    net = SRNDeblurNet(channels=3)
    conv = net.nets[0].eblock2.conv  # 64 -> 128, 5x5
    bound = (6.0 / (64 * 25 + 128 * 25)) ** 0.5
    assert conv.weight.abs().max() <= bound
    assert conv.weight.abs().max() > 0.9 * bound
    assert torch.count_nonzero(conv.bias) == 0


def test_residual_output_of_untrained_zero_net_is_the_input():
    net = SRNDeblurNet(channels=3, widths=(4, 8, 8), num_res_blocks=1, residual=True)
    for p in net.parameters():
        torch.nn.init.zeros_(p)
    x = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(net(x)[-1], x)


def test_fresh_residual_network_starts_as_the_identity_and_can_learn():
    net = SRNDeblurNet(channels=3, widths=(4, 8, 8), num_res_blocks=1, residual=True)
    x = torch.rand(2, 3, 32, 32)
    for estimate in net(x):  # every scale returns its own (resized) input
        torch.testing.assert_close(
            estimate, torch.nn.functional.interpolate(x, estimate.shape[-2:], mode="bilinear")
        )
    # Only the output conv is zero: the rest keeps the paper's Xavier init, so gradients flow
    # into the output conv at once and through it after the first step.
    assert torch.count_nonzero(net.nets[0].out_block.conv.weight) == 0
    assert torch.count_nonzero(net.nets[0].in_block.conv.weight) > 0
    net(x)[-1].sub(x.flip(-1)).square().mean().backward()
    assert net.nets[0].out_block.conv.weight.grad.abs().sum() > 0
    # Without the residual path the output conv keeps its Xavier weights.
    plain = SRNDeblurNet(channels=3, widths=(4, 8, 8), num_res_blocks=1)
    assert torch.count_nonzero(plain.nets[0].out_block.conv.weight) > 0


@pytest.mark.parametrize(
    "bad", [{"channels": 2}, {"recurrence": "lsmt"}, {"widths": (8, 8)}, {"scale_factor": 1.5}]
)
def test_bad_constructor_values_are_named(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        SRNDeblurNet(**bad)


def test_settings_are_one_dataclass_that_checkpoints_store_as_plain_values():
    config = SRNConfig(channels=3, widths=[4, 8, 8], num_res_blocks=1, recurrence="conv", res_skip=False)
    assert config.widths == (4, 8, 8)  # Hydra's lists become the frozen config's tuple
    net = SRNDeblurNet(config)
    assert net.cfg == config and SRNDeblurNet(**net.config).cfg == config
    assert SRNDeblurNet(config, residual=True).cfg == dataclasses.replace(config, residual=True)
    buffer = io.BytesIO()
    torch.save({"net_config": net.config}, buffer)
    buffer.seek(0)
    stored = torch.load(buffer, weights_only=True)["net_config"]
    assert stored == {f.name: getattr(config, f.name) for f in dataclasses.fields(SRNConfig)} | {
        "widths": [4, 8, 8]
    }
    # A checkpoint written before a setting existed rebuilds with that setting's default.
    old = {k: v for k, v in stored.items() if k != "res_skip"}
    assert SRNDeblurNet(**old).cfg.res_skip is True
    with pytest.raises(TypeError, match="unknown_knob"):
        SRNDeblurNet(unknown_knob=1)


def test_resblock_without_skip_is_two_plain_conv_relu_layers():
    net = SRNDeblurNet(channels=3, widths=(4, 8, 8), num_res_blocks=1, kernel_size=3, res_skip=False)
    block = net.nets[0].in_block.res_blocks[0]
    x = torch.randn(2, 4, 9, 11)
    c1, c2 = block.conv1, block.conv2
    expected = F.relu(
        F.conv2d(F.relu(F.conv2d(x, c1.weight, c1.bias, padding=1)), c2.weight, c2.bias, padding=1)
    )
    torch.testing.assert_close(block(x), expected)
    skip = (
        SRNDeblurNet(channels=3, widths=(4, 8, 8), num_res_blocks=1, kernel_size=3)
        .nets[0]
        .in_block.res_blocks[0]
    )
    skip.load_state_dict(block.state_dict())
    torch.testing.assert_close(
        skip(x),
        x + F.conv2d(F.relu(F.conv2d(x, c1.weight, c1.bias, padding=1)), c2.weight, c2.bias, padding=1),
    )


def test_conv_bottleneck_is_one_conv_relu_and_passes_no_state():
    net = SRNDeblurNet(
        channels=3, widths=(4, 8, 8), num_res_blocks=1, recurrence="conv", shared_weights=False
    )
    cell = net.nets[0].recurrent
    x = torch.randn(1, 8, 5, 6)
    out, state = cell(x, None)
    torch.testing.assert_close(out, F.relu(F.conv2d(x, cell.conv.weight, cell.conv.bias, padding=1)))
    assert state is None
    # No state crosses scales: the finest loss reaches no coarser scale's weights (the image path
    # is stop-gradient), unlike the ConvLSTM's (test_recurrent_state_flows_between_scales).
    net(torch.rand(1, 3, 32, 32))[-1].sum().backward()
    assert (
        net.nets[0].recurrent.conv.weight.grad is None and net.nets[2].recurrent.conv.weight.grad is not None
    )
    assert net.recurrent_parameters == []  # an ordinary layer: the paper clips only recurrent cells


# The paper's Table 1 (3x3 kernels, grey, 3 scales unless said): parameters in millions as
# published, and the layer-table reading that gives them.
TABLE1 = {
    "ablation_single_scale": (2.73, {"bottleneck": "conv"}, 1),  # SS: one scale
    "ablation_scale_cascade": (8.19, {"bottleneck": "conv", "nets": 3}, 3),  # SC: 3 unshared SS
    "ablation_no_recurrence": (2.73, {"bottleneck": "conv"}, 3),  # w/o R: SS shared over 3 scales
    "ablation_no_resblocks": (3.76, {"bottleneck": "lstm"}, 3),  # SR-ED: two plain convs per block
    "ablation_resblocks1": (2.21, {"res_blocks": 1}, 3),  # SR-EDRB1
    "ablation_resblocks2": (2.99, {"res_blocks": 2}, 3),  # SR-EDRB2
    "ablation_lstm": (3.76, {}, 3),  # SR-EDRB3 = LSTM
}


@pytest.mark.parametrize("row", sorted(TABLE1))
def test_table1_rows_have_the_papers_parameter_counts_and_run(row):
    import hydra

    from srn_deblur.paper_table import ROWS, compose_row

    paper, reading, scales = TABLE1[row]
    expected = params_from_layer_table(1, kernel=3, **reading)
    assert round(expected / 1e6, 2) == paper == ROWS[row].paper_params / 1e6
    net = hydra.utils.instantiate(compose_row(row).model.net)
    assert sum(p.numel() for p in net.parameters() if p.requires_grad) == expected
    with torch.no_grad():
        outs = net(torch.rand(1, 1, 20, 24))
    assert len(outs) == scales and outs[-1].shape == (1, 1, 20, 24) and torch.isfinite(outs[-1]).all()
