"""Multi-scale loss, the polynomial LR decay, and ConvLSTM-only gradient clipping."""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F

from srn_deblur.loss import MultiScaleLoss
from srn_deblur.module import SRNLitModule
from srn_deblur.network import SRNDeblurNet
from srn_deblur.schedule import PolynomialDecay


def test_multiscale_loss_is_weighted_sum_of_per_scale_mse():
    sharp = torch.rand(2, 3, 16, 16)
    estimates = [torch.rand(2, 3, 4, 4), torch.rand(2, 3, 8, 8), torch.rand(2, 3, 16, 16)]
    weights = [0.5, 2.0, 1.0]
    expected = sum(
        w * ((e - F.interpolate(sharp, size=e.shape[-2:], mode="bilinear", align_corners=False)) ** 2).mean()
        for w, e in zip(weights, estimates)
    )
    torch.testing.assert_close(MultiScaleLoss(weights)(estimates, sharp), expected)
    default = MultiScaleLoss()(estimates, sharp)
    assert default > 0 and not torch.isclose(default, expected)


def test_loss_rejects_wrong_number_of_scale_weights():
    with pytest.raises(ValueError, match="one weight per scale"):
        MultiScaleLoss([1.0, 1.0])([torch.rand(1, 1, 4, 4)] * 3, torch.rand(1, 1, 4, 4))


def _formula(t: int, lr0: float, lr_end: float, total: int, power: float = 0.3) -> float:
    return (lr0 - lr_end) * (1 - min(t, total) / total) ** power + lr_end


def test_lr_follows_the_polynomial_formula_at_several_steps():
    net = torch.nn.Linear(2, 2)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    total = 50
    sched = torch.optim.lr_scheduler.LambdaLR(opt, PolynomialDecay(1e-4, 1e-6, total, 0.3))
    seen = {}
    for step in range(total + 5):
        seen[step] = opt.param_groups[0]["lr"]
        opt.step()
        sched.step()
    for step in (0, 1, 10, 25, 49, 50, 54):
        assert seen[step] == pytest.approx(_formula(step, 1e-4, 1e-6, total), rel=1e-9)
    assert seen[0] == pytest.approx(1e-4)
    assert seen[50] == pytest.approx(1e-6)


def _module(clip: float | None = 3.0) -> SRNLitModule:
    net = SRNDeblurNet(channels=3, widths=(4, 8, 8), num_res_blocks=1, recurrence="lstm")
    return SRNLitModule(net, functools.partial(torch.optim.Adam, lr=1e-4), recurrent_clip_norm=clip)


def _grads_after_clipping(module: SRNLitModule, scale: float) -> tuple[dict, dict]:
    for p in module.net.parameters():
        p.grad = torch.full_like(p, scale)
    before = {n: p.grad.clone() for n, p in module.net.named_parameters()}
    module.configure_gradient_clipping(torch.optim.Adam(module.parameters()), None, None)
    return before, {n: p.grad.clone() for n, p in module.net.named_parameters()}


def test_clipping_changes_only_convlstm_gradients_when_their_norm_exceeds_3():
    module = _module(3.0)
    before, after = _grads_after_clipping(module, scale=1.0)  # huge norms everywhere
    recurrent = {n for n in before if ".recurrent." in n}
    assert recurrent, "the network should have ConvLSTM parameters"
    for name in before:
        if name in recurrent:
            assert not torch.equal(before[name], after[name])
        else:
            assert torch.equal(before[name], after[name]), name
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(after[n]) for n in recurrent]))
    assert norm == pytest.approx(3.0, rel=1e-4)


def test_clipping_leaves_small_convlstm_gradients_alone_and_can_be_disabled():
    _, after_small = _grads_after_clipping(_module(3.0), scale=1e-6)
    assert all(torch.all(g == 1e-6) for g in after_small.values())
    before, after = _grads_after_clipping(_module(None), scale=1.0)
    assert all(torch.equal(before[n], after[n]) for n in before)
