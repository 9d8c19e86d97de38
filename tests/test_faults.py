"""A run killed with SIGKILL mid-epoch and started again with the same command (`resume=auto`)
continues from its saved step, LR and optimizer state, and keeps everything it had saved."""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint

from srn_deblur.checkpoints import latest_checkpoint
from srn_deblur.schedule import PolynomialDecay
from srn_deblur.training import resume_checkpoint
from tests.train_subprocess import (
    REPO,
    column,
    read_metrics,
    run_train,
    saved_step,
    tiny_overrides,
    train_command,
    train_env,
    wait_for_saved_step,
)

STEPS_PER_EPOCH = 60  # 120 crops per epoch / batch 2
EPOCHS = 2
SAVE_EVERY = 7  # mid-epoch step checkpoints, never on an epoch boundary before step 60


def _load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _snapshot(run_dir: Path) -> dict[Path, bytes]:
    """Every saved file but the `last*.ckpt` ones, which are meant to be superseded by progress."""
    return {
        p: p.read_bytes()
        for p in run_dir.rglob("*")
        if p.is_file() and not re.match(r"last(-v\d+)?\.ckpt$", p.name)
    }


def _kill_mid_second_epoch(command: list[str], step_ckpt: Path, output: Path) -> None:
    """Start the run and SIGKILL it once a step checkpoint of the second epoch exists."""
    with open(output, "wb") as sink:
        process = subprocess.Popen(command, cwd=REPO, env=train_env(), stdout=sink, stderr=subprocess.STDOUT)
    try:
        wait_for_saved_step(step_ckpt, STEPS_PER_EPOCH + SAVE_EVERY + 1, process, output)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.slow
def test_sigkill_mid_epoch_then_same_command_resumes_step_lr_and_optimizer(tmp_path):
    run_dir = tmp_path / "run"
    overrides = [
        *tiny_overrides(tmp_path),
        f"hydra.run.dir={run_dir}",
        "resume=auto",
        f"data.train_samples_per_epoch={2 * STEPS_PER_EPOCH}",
        f"trainer.max_epochs={EPOCHS}",
        f"callbacks.step_checkpoint.every_n_train_steps={SAVE_EVERY}",
        "callbacks.step_checkpoint.train_time_interval=null",
        "callbacks.model_checkpoint.save_top_k=-1",
        "test=false",
    ]
    _kill_mid_second_epoch(
        train_command(overrides), run_dir / "checkpoints" / "steps" / "last.ckpt", tmp_path / "killed.out"
    )

    saved = {p: saved_step(p) for p in run_dir.glob("checkpoints/**/last*.ckpt")}
    resume_step = max(s for s in saved.values() if s is not None)
    assert STEPS_PER_EPOCH < resume_step < EPOCHS * STEPS_PER_EPOCH and resume_step % STEPS_PER_EPOCH
    before = _snapshot(run_dir)
    assert any(p.match("checkpoints/epoch_0000-*.ckpt") for p in before)  # the first epoch's save exists
    resumable = [p for p, s in saved.items() if s == resume_step]
    killed_state = _load(max(resumable, key=lambda p: p.stat().st_mtime))

    done = run_train(overrides, timeout=180)  # the same command again
    output = done.stdout + done.stderr
    assert f"(step {resume_step})" in output and "resume=auto: continuing from" in output

    # Continued from the saved step: the total is one uninterrupted run's, not more.
    total = EPOCHS * STEPS_PER_EPOCH
    last = _load(run_dir / "checkpoints" / "last.ckpt")
    assert last["global_step"] == total and last["epoch"] == EPOCHS - 1
    # Optimizer state carried over: a fresh Adam would count only the steps after the restart.
    adam = last["optimizer_states"][0]
    assert {float(s["step"]) for s in adam["state"].values()} == {float(total)}
    killed_adam = killed_state["optimizer_states"][0]
    assert {float(s["step"]) for s in killed_adam["state"].values()} == {float(resume_step)}

    # The restarted process logged from the saved step on, at the schedule's LR for that step.
    versions = sorted((run_dir / "csv").glob("version_*/metrics.csv"))
    assert len(versions) == 2  # the killed attempt's log is kept beside the new one
    resumed = read_metrics(versions[1])
    assert min(step for step, _ in column(resumed, "train/loss_step")) == resume_step
    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    decay = PolynomialDecay(cfg.model.optimizer.lr, cfg.model.lr_end, total, cfg.model.lr_power)
    first_lr_step, first_lr = min(column(resumed, "lr-Adam"))
    assert first_lr_step == resume_step and first_lr == pytest.approx(decay.lr(resume_step), rel=1e-6)
    assert adam["param_groups"][0]["lr"] == pytest.approx(decay.lr(total), abs=1e-12)

    # Nothing already saved was lost: every earlier file is still there, unchanged or appended to.
    for path, content in before.items():
        assert path.is_file(), f"{path} was lost"
        assert path.read_bytes().startswith(content), f"{path} was rewritten"


def _trainer(tmp_path: Path) -> pl.Trainer:
    callbacks = [
        ModelCheckpoint(dirpath=tmp_path / "checkpoints", save_last=True),
        ModelCheckpoint(
            dirpath=tmp_path / "checkpoints" / "steps", save_last=True, save_top_k=0, every_n_train_steps=5
        ),
    ]
    return pl.Trainer(
        callbacks=callbacks, logger=False, enable_progress_bar=False, enable_model_summary=False
    )


def test_resume_auto_picks_the_most_advanced_last_checkpoint(tmp_path):
    trainer = _trainer(tmp_path)
    cfg = OmegaConf.create({"resume": "auto", "ckpt_path": "pretrained.ckpt"})
    assert resume_checkpoint(cfg, trainer) == "pretrained.ckpt"  # nothing saved yet: fall back

    (tmp_path / "checkpoints" / "steps").mkdir(parents=True)
    torch.save({"global_step": 100}, tmp_path / "checkpoints" / "last.ckpt")
    torch.save({"global_step": 135}, tmp_path / "checkpoints" / "steps" / "last.ckpt")
    torch.save({"global_step": 120}, tmp_path / "checkpoints" / "epoch_0001.ckpt")  # not a last
    assert latest_checkpoint(trainer) == (tmp_path / "checkpoints" / "steps" / "last.ckpt", 135)
    assert resume_checkpoint(cfg, trainer) == str(tmp_path / "checkpoints" / "steps" / "last.ckpt")

    (tmp_path / "checkpoints" / "steps" / "last.ckpt").write_bytes(b"cut short")  # skipped, named
    assert resume_checkpoint(cfg, trainer) == str(tmp_path / "checkpoints" / "last.ckpt")
    # Without resume=auto the saved files are ignored.
    assert resume_checkpoint(OmegaConf.create({"resume": None, "ckpt_path": None}), trainer) is None


def test_resume_auto_refuses_to_overwrite_only_unreadable_checkpoints(tmp_path):
    trainer = _trainer(tmp_path)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"\x00" * 10)
    with pytest.raises(RuntimeError, match="last.ckpt"):
        resume_checkpoint(OmegaConf.create({"resume": "auto"}), trainer)


def test_resume_rejects_unknown_modes(tmp_path):
    with pytest.raises(ValueError, match="'always'"):
        resume_checkpoint(OmegaConf.create({"resume": "always"}), _trainer(tmp_path))
