"""The paper's table rows as configs, and the table built from real (tiny) training runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import hydra
import pytest
from omegaconf import OmegaConf

from srn_deblur.inference import save_network
from srn_deblur.network import SRNDeblurNet, parameter_count
from srn_deblur.paper_runs import PRESETS, find_runs, gather, load_protocol, run_experiment, train_commands
from srn_deblur.paper_table import ROWS, compose_row, resolve_rows
from srn_deblur.training import data_channels, train
from tests.conftest import CONFIG_DIR, compose_config, make_gopro_tree

REPO = Path(__file__).resolve().parents[1]

# What each ablation row changes in the paper's network (all with the study's 3x3 kernels).
ABLATION_KNOBS = {
    "ablation_single_scale": {"num_scales": 1, "recurrence": "conv"},
    "ablation_scale_cascade": {"shared_weights": False, "recurrence": "conv"},
    "ablation_no_recurrence": {"recurrence": "conv"},
    "ablation_rnn": {"recurrence": "rnn"},
    "ablation_gru": {"recurrence": "gru"},
    "ablation_lstm": {"recurrence": "lstm", "num_res_blocks": 3},
    "ablation_no_resblocks": {"res_skip": False},
    "ablation_resblocks1": {"num_res_blocks": 1},
    "ablation_resblocks2": {"num_res_blocks": 2},
}
PAPER_NET = {
    "num_scales": 3,
    "shared_weights": True,
    "recurrence": "lstm",
    "num_res_blocks": 3,
    "res_skip": True,
    "channels": 1,
}


def test_every_row_is_an_experiment_and_every_experiment_but_the_demo_is_a_row():
    experiments = {p.stem for p in Path(CONFIG_DIR, "experiment").glob("*.yaml")}
    assert experiments - {"demo"} == set(ROWS)
    assert (
        resolve_rows(["ablation", "gopro_full", "ablation_rnn"])[-1] == "gopro_full"
    )  # sets expand, no repeats
    with pytest.raises(ValueError, match="unknown table row 'ablation_lsmt'"):
        resolve_rows(["ablation_lsmt"])


@pytest.mark.parametrize("row", sorted(ABLATION_KNOBS))
def test_ablation_rows_change_only_their_knobs_of_the_papers_network(row):
    net = compose_row(row).model.net
    assert net.kernel_size == 3
    expected = {**PAPER_NET, **ABLATION_KNOBS[row]}
    assert {k: net[k] for k in expected} == expected


@pytest.mark.parametrize(
    ("row", "channels", "recurrence", "params"),
    [
        ("gopro_release_lstm", 1, "lstm", 8_056_609),
        ("gopro_release_color", 3, "none", 6_881_251),
        ("gopro_release_gray", 1, "none", 6_876_449),
    ],
)
def test_release_rows_are_the_releases_recipe_and_models(row, channels, recurrence, params):
    cfg = compose_row(row)
    assert (cfg.model.net.channels, cfg.model.net.recurrence, cfg.model.net.kernel_size) == (
        channels,
        recurrence,
        5,
    )
    # The colour model trains on RGB crops, the others on grey.
    assert data_channels(cfg.data, cfg.model.net) == channels
    assert (
        cfg.trainer.max_epochs == 4000 and cfg.model.lr_end == 0.0 and cfg.model.recurrent_clip_norm is None
    )
    assert cfg.model.optimizer.lr == 1e-4 and cfg.model.lr_power == 0.3
    assert (cfg.data.batch_size, cfg.data.crop_size, cfg.data.blur_dir) == (16, 256, "blur")
    assert parameter_count(hydra.utils.instantiate(cfg.model.net)) == params == ROWS[row].paper_params


def test_train_commands_sequential_and_multirun(tmp_path: Path):
    rows = ["ablation_rnn", "ablation_gru"]
    sequential = train_commands(rows, tmp_path, ["trainer=cpu"])
    assert [c[2:] for c in sequential] == [
        ["experiment=ablation_rnn", f"hydra.run.dir={tmp_path / 'ablation_rnn'}", "trainer=cpu"],
        ["experiment=ablation_gru", f"hydra.run.dir={tmp_path / 'ablation_gru'}", "trainer=cpu"],
    ]
    (multirun,) = train_commands(rows, tmp_path, ["trainer=cpu"], multirun=True)
    assert multirun[2:] == [
        "-m",
        "experiment=ablation_rnn,ablation_gru",
        f"hydra.sweep.dir={tmp_path}",
        "trainer=cpu",
    ]


# A budget even smaller than cpu_tiny: seconds per run.
MICRO = [
    *PRESETS["cpu_tiny"],
    "+data.train_images=[astronaut,coins]",
    "+data.test_images=[chelsea]",
    "data.val_sequences=null",  # two training photos: validate on the test split
    "data.train_frames=2",
    "data.max_side=64",
    "data.batch_size=2",
    "data.crop_size=32",
    "data.train_samples_per_epoch=4",
    "model.net.widths=[4,8,8]",
    "trainer.max_epochs=1",
    "~callbacks.val_images",
]


def _train_like_hydra(row: str, run_dir: Path, data_dir: Path) -> None:
    """Train in-process and leave the `.hydra/` record that `train.py` would leave."""
    cfg = compose_config([f"experiment={row}", *MICRO, f"paths.data_dir={data_dir}"], run_dir)
    train(cfg)
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    OmegaConf.save(
        OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), run_dir / ".hydra" / "config.yaml"
    )
    OmegaConf.save(OmegaConf.masked_copy(cfg, ["hydra"]), run_dir / ".hydra" / "hydra.yaml")


def test_gather_evaluates_runs_and_sets_them_beside_the_paper(tmp_path: Path):
    for row in ("gopro_release_lstm", "ablation_no_recurrence"):
        _train_like_hydra(row, tmp_path / "runs" / row, tmp_path / "data")
    assert [run_experiment(r) for r in find_runs([tmp_path / "runs"])] == [
        "ablation_no_recurrence",
        "gopro_release_lstm",
    ]
    table = gather([tmp_path / "runs"], device="cpu")
    lines = table.splitlines()
    ablation = next(line for line in lines if "`ablation_no_recurrence`" in line)
    release = next(line for line in lines if "`gopro_release_lstm`" in line)
    assert lines.index(ablation) < lines.index(release)  # the paper's order, not the folders'
    # Our numbers are the runs' own evaluations; the release's published ones sit beside them.
    evaluated = tmp_path / "runs" / "gopro_release_lstm" / "eval" / "default"  # <run>/eval/<protocol>/
    summary = json.loads((evaluated / "summary.json").read_text())
    cells = [c.strip() for c in release.split("|")[1:-1]]
    assert cells[2:6] == ["30.19", "0.9334", "8.06M", "8.06M"]
    assert cells[7] == f"{summary['overall']['psnr']:.2f}" and cells[8] == f"{summary['overall']['ssim']:.4f}"
    assert cells[9] == f"{summary['parameters'] / 1e6:.2f}M"  # the small network actually trained
    # Table 1's w/o R: the paper's 2.73M beside the row's own network (tests/test_network.py counts it).
    assert [c.strip() for c in ablation.split("|")[1:-1]][2:6] == ["", "", "2.73M", "2.73M"]
    assert "release `lstm`: release README" in table


@pytest.mark.slow
def test_table_command_end_to_end_as_a_hydra_multirun(tmp_path: Path):
    command = [
        sys.executable,
        "scripts/paper_table.py",
        "run",
        "--rows",
        "ablation_rnn,gopro_full",
        "--multirun",
        "--preset",
        "cpu_tiny",
        "--out",
        str(tmp_path / "table"),
        "--device",
        "cpu",
        "--",
        *MICRO[len(PRESETS["cpu_tiny"]) :],
        f"paths.data_dir={tmp_path / 'data'}",
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    table = (tmp_path / "table" / "table.md").read_text()
    assert (
        "`ablation_rnn`" in table
        and "| SRN-DeblurNet (paper recipe) | `gopro_full` | 30.26 | 0.9342 |" in table
    )
    assert len(find_runs([tmp_path / "table"])) == 2  # multirun folders 0/ and 1/


def test_gather_scores_runs_with_the_chosen_protocol_and_names_it(tmp_path: Path):
    data = make_gopro_tree(tmp_path / "data", {"s": 2}, size=(32, 48), split="test")
    run = tmp_path / "runs" / "mine"
    (run / ".hydra").mkdir(parents=True)
    config = {
        "task_name": "mine",
        "paths": {"root_dir": str(tmp_path), "output_dir": str(run)},
        "data": {"_target_": "datamodules.gopro.GoProDataModule", "data_dir": str(data)},
    }
    OmegaConf.save(OmegaConf.create(config), run / ".hydra" / "config.yaml")
    (run / "checkpoints").mkdir()
    net = SRNDeblurNet(channels=3, num_scales=2, widths=[4, 8, 8], num_res_blocks=1, kernel_size=3)
    save_network(net, run / "checkpoints" / "last.ckpt")
    tables = {
        name: gather([tmp_path / "runs"], protocol=load_protocol(name), device="cpu")
        for name in ("default", "release")
    }
    for name, table in tables.items():
        assert f"Protocol `{name}`" in table
        summary = json.loads((run / "eval" / name / "summary.json").read_text())  # one cache per protocol
        assert summary["protocol_name"] == name
    assert "truncated to 8 bits" in tables["release"] and "rounded to 8 bits" in tables["default"]
    with pytest.raises(ValueError, match="unknown scoring protocol 'matlba'.*matlab"):
        load_protocol("matlba")
