"""`init_weights`: a new training run starts from a checkpoint's weights with a fresh optimizer."""

from __future__ import annotations

import hydra
import pytest
import torch

from srn_deblur.inference import save_network
from srn_deblur.training import load_initial_weights, train
from tests.conftest import compose_config


def test_a_run_starts_from_the_given_weights_with_a_fresh_optimizer(tiny_training_overrides, tmp_path):
    source = hydra.utils.instantiate(compose_config(tiny_training_overrides, tmp_path / "src").model.net)
    with torch.no_grad():
        for p in source.parameters():
            p.uniform_(-0.1, 0.1)  # unlike any seeded initialisation
    start = save_network(source, tmp_path / "start.ckpt")
    # Adam's steps are about lr in size: at 1e-20 they vanish, so the saved weights must be the ones
    # the run started from (up to the float32 rounding of the demo's weight averaging).
    overrides = [f"init_weights={start}", "model.optimizer.lr=1e-20", "model.lr_end=0.0", "test=false"]
    train(compose_config([*tiny_training_overrides, *overrides], tmp_path / "run"))

    last = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    for key, value in source.state_dict().items():
        torch.testing.assert_close(last["state_dict"][f"net.{key}"], value, rtol=0, atol=1e-6)
    steps = {int(s["step"]) for s in last["optimizer_states"][0]["state"].values()}
    assert steps == {last["global_step"]} and last["global_step"] == 4  # this run's 2 x 2 steps only


def test_init_weights_and_resume_are_exclusive(tiny_training_overrides, tmp_path):
    model = hydra.utils.instantiate(compose_config(tiny_training_overrides, tmp_path).model)
    with pytest.raises(ValueError, match="init_weights=a.ckpt and ckpt_path=b.ckpt are both set"):
        load_initial_weights(model, "a.ckpt", resume_from="b.ckpt")


def test_init_weights_leaves_the_network_in_training_mode(tiny_training_overrides, tmp_path):
    # Lightning keeps each module's mode at fit start, so a network left in eval mode would train
    # with dropout off and batch norm frozen in any architecture that has them.
    model = hydra.utils.instantiate(compose_config(tiny_training_overrides, tmp_path).model)
    start = save_network(model.net, tmp_path / "start.ckpt")
    load_initial_weights(model, str(start))
    assert all(m.training for m in model.modules())
