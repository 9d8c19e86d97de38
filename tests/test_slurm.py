"""The SLURM launcher without a cluster: its config, the sbatch script it writes, Lightning's
reading of SLURM's rank variables, and a requeued job resuming in its own folder."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import time
from pathlib import Path

import hydra
import pytest
import torch
from lightning_utilities.core.rank_zero import rank_zero_only as utils_rank_zero_only
from pytorch_lightning.plugins.environments import SLURMEnvironment
from pytorch_lightning.utilities.rank_zero import rank_zero_only
from submitit.core.utils import FailedJobError

from srn_deblur.training import check_launch, per_device_batch_size
from tests.conftest import compose_config
from tests.train_subprocess import (
    REPO,
    column,
    read_metrics,
    tiny_overrides,
    train_command,
    train_env,
    wait_for_saved_step,
)

SLURM_OVERRIDES = [
    "hydra/launcher=submitit_slurm",
    "trainer=ddp",
    "trainer.devices=4",
    "trainer.num_nodes=2",
    "hydra.launcher.partition=gpu",
]


def test_slurm_launcher_takes_its_resources_from_the_trainer(tmp_path):
    cfg = compose_config(SLURM_OVERRIDES, tmp_path)
    launcher = hydra.utils.instantiate(cfg.hydra.launcher)
    assert type(launcher).__name__ == "SlurmLauncher"
    params = launcher.params
    assert (params["nodes"], params["tasks_per_node"], params["gpus_per_node"]) == (2, 4, 4)
    assert params["partition"] == "gpu" and params["timeout_min"] == 1440
    assert params["signal_delay_s"] > 0 and params["max_num_timeout"] > 0  # requeue on time limit
    assert params["submitit_folder"].startswith(str(tmp_path / "logs"))


def _stand_in_slurm_binaries(folder: Path) -> None:
    # submitit checks that `srun` exists before it writes anything; this machine's `sbatch`
    # refuses, the way a login node without an allocation would. Neither ever runs a job.
    folder.mkdir()
    (folder / "srun").write_text("#!/bin/sh\nexit 1\n")
    (folder / "sbatch").write_text('#!/bin/sh\necho "sbatch: error: no SLURM on this machine" >&2\nexit 1\n')
    for name in ("srun", "sbatch"):
        (folder / name).chmod(0o755)


def test_sbatch_script_requests_the_resources_and_the_requeue_signal(tmp_path, monkeypatch):
    _stand_in_slurm_binaries(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    cfg = compose_config(SLURM_OVERRIDES, tmp_path)
    launcher = hydra.utils.instantiate(cfg.hydra.launcher)
    launcher.setup(hydra_context=None, task_function=print, config=cfg)
    with pytest.raises(FailedJobError, match="no SLURM"):
        launcher.launch([["model.net.recurrence=gru"]], initial_job_idx=0)  # the plugin's own code path

    sweep_dir = Path(str(cfg.hydra.sweep.dir))
    (script,) = sweep_dir.glob(".submitit/.submission_file_*.sh")
    text = script.read_text()
    for line in (
        "#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=4", "#SBATCH --gpus-per-node=4",
        "#SBATCH --partition=gpu", "#SBATCH --time=1440", "#SBATCH --signal=USR2@120",
    ):
        assert line in text
    assert "srun" in text and "submitit.core._submit" in text

    # A requeued job reloads this pickle later: its run folder must not move with the clock.
    time.sleep(1.1)
    (pickled,) = sweep_dir.glob(".submitit/*.pkl")
    with open(pickled, "rb") as handle:
        submission = pickle.load(handle)
    assert Path(str(submission.function.config.hydra.sweep.dir)) == sweep_dir


def test_lightning_reads_the_ranks_from_slurm_and_does_not_relaunch(tmp_path, monkeypatch):
    # Building the trainer sets Lightning's process-wide rank (to 5 here); restore it afterwards so
    # later tests in this process are rank zero again.
    for holder in (rank_zero_only, utils_rank_zero_only):
        monkeypatch.setattr(holder, "rank", getattr(holder, "rank", 0), raising=False)
    # The variables srun sets for task 5 of 8 (node 1, local task 1).
    for name, value in {
        "SLURM_NTASKS": "8", "SLURM_NTASKS_PER_NODE": "4", "SLURM_PROCID": "5", "SLURM_LOCALID": "1",
        "SLURM_NODEID": "1", "SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "demo", "SLURM_NODELIST": "node[1-2]",
    }.items():
        monkeypatch.setenv(name, value)
    cfg = compose_config([*SLURM_OVERRIDES, "trainer.accelerator=cpu"], tmp_path)
    trainer = hydra.utils.instantiate(cfg.trainer, logger=False)
    assert isinstance(trainer.strategy.cluster_environment, SLURMEnvironment)
    assert (trainer.global_rank, trainer.local_rank, trainer.node_rank, trainer.world_size) == (5, 1, 1, 8)
    assert trainer.strategy.cluster_environment.creates_processes_externally  # srun started every rank
    check_launch(trainer, multirun=True)  # so a sweep of multi-GPU jobs is allowed
    assert per_device_batch_size(cfg.data.batch_size, trainer.world_size) == cfg.data.batch_size // 8


def _task_pids(marker: str) -> list[int]:
    """Processes running submitit's job entry point for a folder containing `marker`."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if "submitit.core._submit" in cmdline and marker in cmdline:
                pids.append(int(proc.name))
    return pids


@pytest.mark.slow
def test_a_signalled_job_is_requeued_and_resumes_from_its_last_checkpoint(tmp_path):
    """The same path as a SLURM preemption or time limit, run by submitit's local executor: USR2
    reaches the job, submitit requeues the same call, and the job continues in its folder."""
    if not Path("/proc").is_dir():
        pytest.skip("finding the job's process needs /proc")
    sweep = tmp_path / "sweep"
    steps_per_epoch, epochs, save_every = 60, 2, 7
    overrides = [
        *tiny_overrides(tmp_path),
        "hydra/launcher=submitit_local",
        f"hydra.sweep.dir={sweep}",
        "resume=auto",
        f"data.train_samples_per_epoch={2 * steps_per_epoch}",
        f"trainer.max_epochs={epochs}",
        f"callbacks.step_checkpoint.every_n_train_steps={save_every}",
        "callbacks.step_checkpoint.train_time_interval=null",
        "test=false",
    ]
    step_ckpt = sweep / "0" / "checkpoints" / "steps" / "last.ckpt"
    with open(tmp_path / "sweep.out", "wb") as sink:
        sweeper = subprocess.Popen(
            train_command(overrides, multirun=True),
            cwd=REPO,
            env=train_env(),
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_saved_step(step_ckpt, 3 * save_every, sweeper, tmp_path / "sweep.out")
        (pid,) = _task_pids(str(sweep))
        os.kill(pid, signal.SIGUSR2)  # what SLURM sends before the time limit (--signal=USR2@...)
        assert sweeper.wait(timeout=240) == 0, (tmp_path / "sweep.out").read_text()[-3000:]
    finally:
        if sweeper.poll() is None:
            sweeper.kill()

    logs = "".join(p.read_text() for p in sweep.glob(".submitit/*/*_log.*"))
    assert "Requeued job" in logs  # submitit's requeue, not a crash
    versions = sorted((sweep / "0" / "csv").glob("version_*/metrics.csv"))
    assert len(versions) == 2  # two attempts, one folder
    first_attempt = max(step for step, _ in column(read_metrics(versions[0]), "train/loss_step"))
    resumed_from = min(step for step, _ in column(read_metrics(versions[1]), "train/loss_step"))
    # From the step checkpoint (or the epoch-end one, had the signal come just after it).
    assert 0 < resumed_from <= first_attempt + 1
    assert resumed_from % save_every == 0 or resumed_from % steps_per_epoch == 0
    last = torch.load(sweep / "0" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == epochs * steps_per_epoch
