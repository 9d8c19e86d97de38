"""Which checkpoint and device the app uses, its config and `app.py`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from srn_deblur.checkpoints import newest_checkpoint
from srn_deblur.inference import CheckpointError
from srn_deblur.webapp.checkpoints import resolve_checkpoint
from srn_deblur.webapp.service import resolve_device
from tests.conftest import compose_config
from tests.webapp.helpers import REPO, save_checkpoint

# --- which checkpoint, which device, config and entry point ----------------------------------


def test_newest_demo_checkpoint_is_found(net, tmp_path):
    logs = tmp_path / "logs"
    old = save_checkpoint(net, logs / "demo/runs/2026-01-01_00-00-00/checkpoints/last.ckpt")
    new = save_checkpoint(net, logs / "demo/runs/2026-01-02_00-00-00/checkpoints/last.ckpt")
    best = save_checkpoint(net, logs / "demo/runs/2026-01-02_00-00-00/checkpoints/epoch_0001-psnr_20.00.ckpt")
    save_checkpoint(net, logs / "other/runs/2026-02-01_00-00-00/checkpoints/last.ckpt")  # another task
    os.utime(old, (1_000, 1_000))
    os.utime(best, (2_000, 2_000))
    os.utime(new, (2_000, 2_000))  # same time as the best one: last.ckpt wins
    assert newest_checkpoint(logs, "demo") == new
    os.utime(old, (3_000, 3_000))
    assert resolve_checkpoint(None, logs, "demo") == old
    assert resolve_checkpoint(str(best), logs, "demo") == best


def test_no_checkpoint_says_which_command_makes_one(tmp_path):
    with pytest.raises(
        CheckpointError, match=r"no ckpt_path given.*`python train.py`.*`python app.py ckpt_path="
    ):
        resolve_checkpoint(None, tmp_path / "logs", "demo")
    with pytest.raises(CheckpointError, match=r"ckpt_path=.*missing.ckpt does not exist"):
        resolve_checkpoint(tmp_path / "missing.ckpt", tmp_path / "logs", "demo")


def test_device_choice():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no usable CUDA GPU"):
            resolve_device("cuda")


def test_config_builds_the_app_on_localhost_from_the_newest_training_checkpoint(net, tmp_path, monkeypatch):
    from srn_deblur.webapp import server

    cfg = compose_config(["service.max_queue=3"], tmp_path, config_name="app")
    assert cfg.host == "127.0.0.1" and cfg.ckpt_path is None and cfg.checkpoint_task == "train"
    ckpt = save_checkpoint(
        net, Path(cfg.paths.log_dir) / "train/runs/2026-01-01_00-00-00/checkpoints/last.ckpt"
    )
    calls = {}

    def fake_serve(app, **kwargs):  # waitress would block; record how it was asked to listen
        calls.update(kwargs, app=app)
        assert app.test_client().get("/api/health").get_json()["model"]["checkpoint"] == str(ckpt)

    monkeypatch.setattr(server.waitress, "serve", fake_serve)
    server.serve(cfg)
    assert calls["host"] == "127.0.0.1" and calls["port"] == 8000 and calls["threads"] == cfg.threads
    assert calls["max_request_body_size"] > cfg.limits.max_upload_bytes
    assert calls["app"].config["MAX_CONTENT_LENGTH"] == calls["max_request_body_size"]


@pytest.mark.slow
def test_app_py_without_any_checkpoint_prints_the_command_to_make_one(tmp_path):
    result = subprocess.run(
        [sys.executable, "app.py", f"paths.log_dir={tmp_path / 'logs'}", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "error: no ckpt_path given" in result.stderr and "`python train.py`" in result.stderr
