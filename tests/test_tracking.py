"""`logger=wandb` records, offline, the resolved config, the code version, the image grids and the
best checkpoint of a run, ready for `wandb sync`."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from srn_deblur.training import train
from tests.conftest import compose_config
from tests.train_subprocess import tiny_overrides

_BLOCK = 32768  # the LevelDB log framing of a .wandb file: 32 KiB blocks of chunked records
_FULL, _LAST = 1, 4


def read_wandb_records(path: Path) -> list:
    """The protobuf records of an offline run file (what `wandb sync` uploads)."""
    from wandb.proto import wandb_internal_pb2

    raw = path.read_bytes()
    assert raw.startswith(b":W&B"), f"{path} is not a wandb run file"
    records, chunks, pos = [], b"", 7  # 7-byte file header
    while pos + 7 <= len(raw):
        left = _BLOCK - pos % _BLOCK
        if left < 7:  # block trailer padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", raw[pos : pos + 7])
        if length == 0 and kind == 0:
            pos += left
            continue
        chunks += raw[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (_FULL, _LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunks)
            records.append(record)
            chunks = b""
    return records


@pytest.fixture
def wandb_home(tmp_path, monkeypatch):
    # Keep wandb's settings, cache and artifact staging inside the test's folder; no network.
    for name in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "wandb_home"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)  # offline must come from the logger config


def test_offline_wandb_run_holds_config_code_images_and_best_checkpoint(tmp_path, wandb_home):
    run_dir = tmp_path / "run"
    cfg = compose_config([*tiny_overrides(tmp_path), "logger=wandb", "test=false"], run_dir)
    assert cfg.logger.wandb.offline is True
    metrics = train(cfg)
    import wandb

    wandb.teardown()  # what process exit does: wait until the background service has written everything

    (run_file,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    records = read_wandb_records(run_file)
    by_type: dict[str, list] = {}
    for record in records:
        by_type.setdefault(record.WhichOneof("record_type"), []).append(record)

    # The full resolved config, with the code version beside it.
    config = {u.key: json.loads(u.value_json) for r in by_type["config"] for u in r.config.update}
    assert config["model"]["net"]["widths"] == [4, 8, 8]
    assert config["data"]["data_dir"] == str(tmp_path / "data" / "synthetic")  # resolved, not ${...}
    assert config["optimized_metric"] == "val/psnr_best"
    assert set(config["code"]) == {"package_version", "git_commit", "git_dirty"}

    artifacts = {r.artifact.type: r.artifact for r in by_type["artifact"]}
    code = artifacts["code"]
    stored = {entry.path for entry in code.manifest.contents}
    assert {"train.py", "srn_deblur/training.py", "configs/train.yaml"} <= stored
    # The code that runs, not the environment or the tests.
    assert all(name.endswith((".py", ".yaml", ".toml")) for name in stored)
    assert not {name.split("/")[0] for name in stored} & {".venv", "tests", "logs", "data"}

    model = artifacts["model"]
    assert "best" in model.aliases and [e.path for e in model.manifest.contents] == ["best.ckpt"]
    meta = json.loads(model.metadata)
    assert meta["monitor"] == "val/psnr"
    assert meta["score"] == pytest.approx(metrics["val/psnr_best"], abs=1e-4)
    assert (run_dir / "checkpoints" / meta["file"]).is_file()

    # One blurry | deblurred | sharp grid per validation epoch, uploaded as run files.
    uploaded = [f.path for r in by_type["files"] for f in r.files.files]
    grids = [p for p in uploaded if p.startswith("media/images/val/blurry_deblurred_sharp")]
    assert len(grids) == cfg.trainer.max_epochs
    assert all((run_file.parent / "files" / p).is_file() for p in grids)


def test_run_files_callback_needs_no_wandb_without_a_wandb_logger(tmp_path, monkeypatch):
    """A CSV or TensorBoard run must not import wandb (an image without it still trains)."""
    import sys

    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import ModelCheckpoint
    from pytorch_lightning.loggers import CSVLogger

    from callbacks.wandb_run_files import WandbRunFiles

    monkeypatch.setitem(sys.modules, "wandb", None)  # any `import wandb` now raises ImportError
    best = tmp_path / "best.ckpt"
    best.write_bytes(b"x")
    checkpoint = ModelCheckpoint(dirpath=tmp_path, monitor="val/psnr", mode="max")
    checkpoint.best_model_path = str(best)
    trainer = pl.Trainer(logger=CSVLogger(tmp_path), callbacks=[checkpoint], accelerator="cpu")
    callback = WandbRunFiles()
    callback.on_fit_start(trainer, None)
    callback.on_fit_end(trainer, None)
    with pytest.raises(ImportError):
        import wandb  # noqa: F401  (the guard above is what made the two calls pass)
