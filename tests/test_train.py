"""Hydra composition of every experiment, a short training run, and resuming it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException, MissingConfigException

from srn_deblur.schedule import PolynomialDecay
from srn_deblur.training import train
from tests.conftest import CONFIG_DIR, compose_config

EXPERIMENTS = sorted(p.stem for p in (Path(CONFIG_DIR) / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_instantiates(experiment, tmp_path):
    import hydra

    cfg = compose_config([f"experiment={experiment}"], tmp_path)
    assert cfg.model.net._target_ == "srn_deblur.network.SRNDeblurNet"
    net = hydra.utils.instantiate(cfg.model.net)
    assert net.channels == cfg.data.train_channels
    hydra.utils.instantiate(cfg.data)  # constructing a DataModule touches no files


def test_gopro_full_is_the_papers_recipe(tmp_path):
    cfg = compose_config(["experiment=gopro_full"], tmp_path)
    assert cfg.data._target_ == "datamodules.gopro.GoProDataModule"
    assert (cfg.data.batch_size, cfg.data.crop_size, cfg.data.blur_dir) == (16, 256, "blur")
    assert cfg.trainer.max_epochs == 2000 and cfg.trainer.accelerator == "gpu"
    assert cfg.trainer.precision == "32-true" and cfg.trainer.gradient_clip_val is None
    assert cfg.model.optimizer.lr == 1e-4 and cfg.model.lr_end == 1e-6
    assert cfg.model.recurrent_clip_norm == 3.0 and cfg.model.lr_power == 0.3
    assert list(cfg.model.optimizer.betas) == [0.9, 0.999] and cfg.model.optimizer.eps == 1e-8
    assert cfg.model.net.recurrence == "lstm" and cfg.model.net.channels == 1


def test_default_config_is_the_demo(tmp_path):
    assert compose_config([], tmp_path).task_name == "demo"


@pytest.mark.parametrize(
    ("override", "error"),
    [
        ("model=srn_lsmt", MissingConfigException),
        ("model.net.recurence=gru", ConfigCompositionException),
        ("experiment=gopro_ful", MissingConfigException),
    ],
)
def test_config_typos_are_rejected_with_the_available_options(override, error, tmp_path):
    with pytest.raises(error) as info:
        compose_config([override], tmp_path)
    message = str(info.value) + str(getattr(info.value, "__cause__", ""))
    assert override.split("=")[0].split(".")[-1] in message or "Available options" in message


def test_typo_in_value_names_the_value(tmp_path):
    import hydra

    cfg = compose_config(["model.net.recurrence=lsmt"], tmp_path)
    with pytest.raises(Exception, match="lsmt"):
        hydra.utils.instantiate(cfg.model)


def _load(path: Path) -> dict:
    # Checkpoints must load without unpickling arbitrary objects.
    return torch.load(path, map_location="cpu", weights_only=True)


def test_short_training_run_then_resume_continues_step_lr_and_optimizer(tiny_training_overrides, tmp_path):
    first = tmp_path / "first"
    cfg = compose_config([*tiny_training_overrides, "callbacks.model_checkpoint.save_top_k=-1"], first)
    metrics = train(cfg)
    assert {"val/psnr", "test/psnr", "test/input_psnr", "train/loss_epoch"} <= set(metrics)
    assert metrics["test/input_psnr"] > 10  # the blurry input scored against its sharp twin
    ckpts = sorted((first / "checkpoints").glob("epoch_*.ckpt"))
    assert len(ckpts) == 2
    steps_per_epoch = 4 // 2  # train_samples_per_epoch / batch_size
    total = 2 * steps_per_epoch

    mid = _load(ckpts[0])
    assert mid["global_step"] == steps_per_epoch
    assert mid["net_config"]["widths"] == [4, 8, 8]
    assert mid["lr_schedulers"][0]["last_epoch"] == steps_per_epoch
    adam_steps = {float(s["step"]) for s in mid["optimizer_states"][0]["state"].values()}
    assert adam_steps == {float(steps_per_epoch)}

    second = tmp_path / "second"
    cfg = compose_config([*tiny_training_overrides, f"ckpt_path={ckpts[0]}"], second)
    train(cfg)
    last = _load(second / "checkpoints" / "last.ckpt")
    assert last["global_step"] == total  # continued, not restarted and not repeated
    assert last["epoch"] == 1
    assert {float(s["step"]) for s in last["optimizer_states"][0]["state"].values()} == {float(total)}
    decay = PolynomialDecay(cfg.model.optimizer.lr, cfg.model.lr_end, total, cfg.model.lr_power)
    lr = last["optimizer_states"][0]["param_groups"][0]["lr"]
    assert lr == pytest.approx(decay.lr(total), rel=1e-6)


def test_last_checkpoint_is_the_final_state_even_when_the_best_is_older(tiny_training_overrides, tmp_path):
    # "Best" is pinned to epoch 0 (lowest epoch), so the best checkpoint is never rewritten after
    # it: Lightning 2.6's save_last would then leave last.ckpt at epoch 0 as well.
    overrides = [
        *tiny_training_overrides,
        "trainer.max_epochs=3",
        "callbacks.model_checkpoint.monitor=epoch",
        "callbacks.model_checkpoint.mode=min",
        "callbacks.model_checkpoint.filename=best",
        "test_ckpt=last",
    ]
    cfg = compose_config(overrides, tmp_path)
    train(cfg)
    steps_per_epoch = 4 // 2
    best = sorted((tmp_path / "checkpoints").glob("best*.ckpt"))
    assert [_load(p)["global_step"] for p in best] == [steps_per_epoch]
    last = _load(tmp_path / "checkpoints" / "last.ckpt")
    assert (last["global_step"], last["epoch"]) == (3 * steps_per_epoch, 2)


def test_demo_checkpoints_hold_the_weight_average_that_inference_loads(tiny_training_overrides, tmp_path):
    from srn_deblur.inference import load_network

    cfg = compose_config(tiny_training_overrides, tmp_path)
    assert cfg.callbacks.ema._target_.endswith("EMAWeightAveraging")
    train(cfg)
    ckpt = _load(tmp_path / "checkpoints" / "last.ckpt")
    averaged, current = ckpt["state_dict"], ckpt["current_model_state"]
    assert averaged.keys() == current.keys()
    moved = [k for k in averaged if not torch.equal(averaged[k], current[k])]
    assert moved  # the average lags the raw weights after a few Adam steps
    net = load_network(tmp_path / "checkpoints" / "last.ckpt")
    key = moved[0]
    torch.testing.assert_close(net.state_dict()[key.removeprefix("net.")], averaged[key])
