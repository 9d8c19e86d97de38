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


def release_parameter_count(
    channels: int, lstm: bool, blocks: int = 3, widths: tuple[int, int, int] = (32, 64, 128), k: int = 5
) -> int:
    """Trainable parameters of the release's network, counted from its layer table: 5x5 convs,
    4x4 transposed convs, `blocks` ResBlocks of two convs in each of the 6 blocks, 3x3 ConvLSTM."""
    w1, w2, w3 = widths

    def conv(kh: int, cin: int, cout: int) -> int:
        return kh * kh * cin * cout + cout

    def res(c: int) -> int:
        return blocks * 2 * conv(k, c, c)

    total = conv(k, 2 * channels, w1) + res(w1) + conv(k, w1, w2) + res(w2) + conv(k, w2, w3) + res(w3)
    total += conv(3, 2 * w3, 4 * w3) if lstm else 0
    total += res(w3) + conv(4, w3, w2) + res(w2) + conv(4, w2, w1) + res(w1) + conv(k, w1, channels)
    return total


def _count(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_instantiates(experiment, tmp_path):
    import hydra

    cfg = compose_config([f"experiment={experiment}"], tmp_path)
    assert cfg.model.net._target_ == "srn_deblur.network.SRNDeblurNet"
    assert cfg.task_name == experiment  # each recipe files its runs under its own name
    hydra.utils.instantiate(cfg.model.net)
    hydra.utils.instantiate(cfg.data)  # constructing a DataModule touches no files


@pytest.mark.parametrize(
    ("overrides", "channels", "lstm"),
    [
        (["model=srn_color", "data=gopro", "paths.data_dir=/nonexistent"], 3, False),
        (["model=srn_gray", "data=paired_folder", "paths.data_dir=/nonexistent"], 1, False),
        (["model=srn_lstm"], 1, True),
        (["experiment=gopro_release_color"], 3, False),
    ],
)
def test_choosing_a_model_gives_the_released_network_whatever_else_is_chosen(
    overrides, channels, lstm, tmp_path
):
    import hydra

    cfg = compose_config(overrides, tmp_path)
    assert _count(hydra.utils.instantiate(cfg.model.net)) == release_parameter_count(channels, lstm)
    assert cfg.task_name != "demo"


def test_released_parameter_counts_match_the_papers_table():
    # The release's README figures, as a check on the layer-table count above.
    assert (
        release_parameter_count(1, True),
        release_parameter_count(3, False),
        release_parameter_count(1, False),
    ) == (8_056_609, 6_881_251, 6_876_449)


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


def test_default_config_is_the_cpu_demo(tmp_path):
    import hydra

    cfg = compose_config([], tmp_path)
    net = hydra.utils.instantiate(cfg.model.net)
    # Widths 16/32/64, no ResBlocks, colour, ConvLSTM, residual output starting at the identity.
    assert (net.channels, net.residual) == (3, True)
    assert _count(net) == release_parameter_count(3, True, blocks=0, widths=(16, 32, 64))
    assert cfg.data._target_ == "datamodules.synthetic.SyntheticDataModule"
    assert cfg.trainer.accelerator == "cpu" and cfg.trainer.precision == "auto"
    assert cfg.trainer.max_time == "00:00:09:00" and cfg.test_ckpt == "last"
    assert {"ema", "max_time_decay"} <= set(cfg.callbacks)


def test_debug_configs_compose_as_named(tmp_path):
    assert compose_config(["debug=fdr"], tmp_path).trainer.fast_dev_run is True
    overfit = compose_config(["debug=overfit"], tmp_path).trainer
    assert overfit.overfit_batches == 1 and overfit.max_time is None
    limit = compose_config(["debug=limit"], tmp_path).trainer
    assert (limit.limit_train_batches, limit.limit_val_batches, limit.max_epochs) == (3, 2, 2)
    assert compose_config(["debug=profiler"], tmp_path).trainer.profiler == "simple"


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


@pytest.mark.parametrize(
    ("overrides", "grey"), [(["model=srn_lstm"], True), ([], False), (["model=srn_color"], False)]
)
def test_training_crops_follow_the_network_and_data_configs_stand_alone(overrides, grey, tmp_path):
    import hydra

    from srn_deblur.training import _instantiate_datamodule, data_channels

    cfg = compose_config([*overrides, "data=gopro"], tmp_path)
    assert cfg.data.train_channels is None  # no reference into the model config
    dm = _instantiate_datamodule(cfg.data, 1, data_channels(cfg.data, cfg.model.net))
    assert dm.hparams.train_channels == (1 if grey else 3)
    # Evaluation composes data without any model: the same data config builds on its own.
    alone = compose_config(["data=gopro", "ckpt_path=x.ckpt"], tmp_path, config_name="eval")
    assert hydra.utils.instantiate(alone.data).hparams.train_channels is None


def test_auto_trainer_precision_is_bf16_only_where_the_cpu_multiplies_bf16():
    from omegaconf import OmegaConf

    from srn_deblur.training import trainer_precision

    flags = next(
        (line.split(":", 1)[1].split() for line in open("/proc/cpuinfo") if line.startswith("flags")), []
    )
    native = bool({"amx_bf16", "avx512_bf16"} & set(flags))
    assert trainer_precision(OmegaConf.create({"accelerator": "cpu"})) == (
        "bf16-mixed" if native else "32-true"
    )
