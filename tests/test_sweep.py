"""Sweeps through Hydra: an Optuna search that a sqlite study lets resume, and a plain grid."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import compose_config
from tests.train_subprocess import column, read_metrics, run_train, tiny_overrides


def _best_val_psnr(job_dir: Path) -> float:
    rows = read_metrics(job_dir / "csv" / "version_0" / "metrics.csv")
    return max(v for _, v in column(rows, "val/psnr"))


def _jobs(sweep_dir: Path) -> list[Path]:
    return sorted(p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit())


def test_search_config_covers_the_issue_space(tmp_path):
    cfg = compose_config(["hparams_search=srn_optuna"], tmp_path)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction == "maximize"
    assert set(sweeper.params) == {
        "model.optimizer.lr", "data.batch_size", "model.net.num_res_blocks", "model.net.recurrence"
    }
    recurrence = sweeper.params["model.net.recurrence"]
    assert "lstm" in recurrence and "gru" in recurrence and "none" in recurrence
    assert cfg.optimized_metric == "val/psnr_best" and cfg.hydra.mode.name == "MULTIRUN"


@pytest.mark.slow
def test_two_trial_optuna_sweep_then_the_sqlite_study_resumes(tmp_path):
    import optuna

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    common = [
        # A batch size on the command line would fix it and take it out of the search.
        *(o for o in tiny_overrides(tmp_path) if not o.startswith("data.batch_size=")),
        "hparams_search=srn_optuna",
        # 16 crops an epoch, so every batch size in the search space gets at least one step.
        "data.train_samples_per_epoch=16",
        "hydra.sweeper.sampler.n_startup_trials=2",
        f"hydra.sweeper.storage={storage}",
        "hydra.sweeper.study_name=tiny",
    ]
    first = tmp_path / "first"
    run_train([*common, "hydra.sweeper.n_trials=2", f"hydra.sweep.dir={first}"], timeout=300, multirun=True)

    jobs = _jobs(first)
    assert [j.name for j in jobs] == ["0", "1"]  # two runs, each in its own folder
    scores = [_best_val_psnr(j) for j in jobs]
    overrides = [yaml.safe_load((j / ".hydra" / "overrides.yaml").read_text()) for j in jobs]
    assert all(any(o.startswith("model.net.recurrence=") for o in job) for job in overrides)
    results = yaml.safe_load((first / "optimization_results.yaml").read_text())
    assert results["best_value"] == pytest.approx(max(scores), abs=1e-4)
    assert set(results["best_params"]) == {
        "model.optimizer.lr", "data.batch_size", "model.net.num_res_blocks", "model.net.recurrence"
    }

    study = optuna.load_study(study_name="tiny", storage=storage)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    assert sorted(t.value for t in study.trials) == pytest.approx(sorted(scores), abs=1e-4)

    # The same command later (e.g. after the sweep was interrupted) adds to the stored study.
    second = tmp_path / "second"
    run_train([*common, "hydra.sweeper.n_trials=1", f"hydra.sweep.dir={second}"], timeout=300, multirun=True)
    study = optuna.load_study(study_name="tiny", storage=storage)
    assert len(study.trials) == 3 and study.trials[2].state.name == "COMPLETE"
    results = yaml.safe_load((second / "optimization_results.yaml").read_text())
    assert results["best_value"] == pytest.approx(max(t.value for t in study.trials), abs=1e-4)


@pytest.mark.slow
def test_grid_multirun_puts_each_run_in_its_own_folder(tmp_path):
    sweep = tmp_path / "grid"
    run_train(
        [*tiny_overrides(tmp_path), "model.net.recurrence=lstm,none", "trainer.max_epochs=1", "test=false",
         f"hydra.sweep.dir={sweep}"],
        timeout=300,
        multirun=True,
    )
    jobs = _jobs(sweep)
    assert [j.name for j in jobs] == ["0", "1"]
    configs = [yaml.safe_load((j / ".hydra" / "config.yaml").read_text()) for j in jobs]
    assert [c["model"]["net"]["recurrence"] for c in configs] == ["lstm", "none"]
    for job in jobs:
        assert (job / "checkpoints" / "last.ckpt").is_file() and _best_val_psnr(job) > 0
