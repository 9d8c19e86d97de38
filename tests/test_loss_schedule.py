"""Multi-scale loss, the polynomial LR decay, and ConvLSTM-only gradient clipping."""

from __future__ import annotations

import functools
from datetime import timedelta

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.callbacks import Timer

from callbacks.max_time_decay import DecayWithinMaxTime
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
        for w, e in zip(weights, estimates, strict=True)
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


class _StepClock(Timer):
    """A Timer whose clock reads 1 second per optimizer step: time progress without sleeping."""

    def time_elapsed(self, stage: str = "train") -> float:
        return float(self._trainer.global_step) if stage == "train" else 0.0

    def on_fit_start(self, trainer, *args, **kwargs) -> None:
        self._trainer = trainer
        super().on_fit_start(trainer, *args, **kwargs)


class _RecordLR(pl.Callback):
    def __init__(self) -> None:
        self.lrs: list[float] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.lrs.append(optimizer.param_groups[0]["lr"])


def _fit_with_clock(seconds: float | None, planned_steps: int) -> tuple[list[float], int]:
    module = _module()
    data = torch.utils.data.TensorDataset(
        torch.rand(planned_steps, 3, 16, 16), torch.rand(planned_steps, 3, 16, 16)
    )
    record = _RecordLR()
    callbacks = [record, DecayWithinMaxTime()]
    if seconds is not None:
        callbacks.append(_StepClock(duration=timedelta(seconds=seconds), interval="step"))
    trainer = pl.Trainer(
        max_epochs=1,
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        accelerator="cpu",
    )
    trainer.fit(module, torch.utils.data.DataLoader(data, batch_size=1))
    return record.lrs, trainer.global_step


def test_decay_finishes_when_max_time_runs_out_before_the_last_step():
    lr0, lr_end, planned = 1e-4, 1e-6, 20
    # The clock runs out after 5 of 20 planned steps: the decay must follow time, not steps.
    lrs, steps = _fit_with_clock(5.0, planned)
    assert steps == 5
    expected = [_formula(0, lr0, lr_end, planned)] + [
        (lr0 - lr_end) * (1 - k / 5) ** 0.3 + lr_end for k in range(1, 5)
    ]
    assert lrs == pytest.approx(expected, rel=1e-9)
    assert lrs[-1] < 0.7 * lr0  # by steps alone it would still be 0.98 * lr0
    # A clock that never runs out leaves the step-driven decay as it is.
    lrs, steps = _fit_with_clock(1000.0, planned)
    assert steps == planned
    assert lrs == pytest.approx([_formula(k, lr0, lr_end, planned) for k in range(planned)], rel=1e-9)
    lrs_no_timer, _ = _fit_with_clock(None, planned)
    assert lrs_no_timer == pytest.approx(lrs, rel=1e-12)
