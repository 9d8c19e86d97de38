"""Two DDP processes (CPU, gloo) train like one process with the same global batch; the global
batch is split over ranks, and every rank draws its own random crops."""

from __future__ import annotations

from pathlib import Path

import hydra
import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.strategies import DDPStrategy
from torch.utils.data import DataLoader

from callbacks.rank_seed import RankSeededAugmentation, rank_seed, reseed_augmentation
from datamodules.datasets import PairedImageDataset
from datamodules.pairs import find_gopro_pairs
from srn_deblur.training import check_launch, per_device_batch_size
from tests.conftest import compose_config, make_gopro_tree
from tests.train_subprocess import column, read_metrics, run_train, tiny_overrides

EPOCHS = 4


def _overrides(tmp_path: Path, run: str, *extra: str) -> list[str]:
    # Square 32x32 training photos cropped at 32x32: every crop is the whole image, and one epoch
    # is one step over all 4 training pairs. The averaged gradient of 2 ranks x 2 pairs then equals
    # the gradient of 1 process x 4 pairs, so the two runs may differ only by float rounding.
    return [
        *tiny_overrides(tmp_path),
        f"hydra.run.dir={tmp_path / run}",
        "data.train_images=[astronaut,brick]",  # square photos
        "data.max_side=32",
        "data.crop_size=32",
        "data.train_frames=2",
        "data.defocus_prob=0.0",  # 32-pixel photos: no room for out-of-focus regions
        "data.test_frames=2",  # an even number of validation images: none padded in by the sampler
        "data.batch_size=4",
        "data.train_samples_per_epoch=4",
        "model.optimizer.lr=3e-3",
        "model.net.num_res_blocks=1",  # the demo's blocks have none: too little to learn in 4 steps
        f"trainer.max_epochs={EPOCHS}",
        "test=false",
        *extra,
    ]


def _epoch_metrics(run_dir: Path) -> dict[str, list[float]]:
    rows = read_metrics(run_dir / "csv" / "version_0" / "metrics.csv")
    return {name: [v for _, v in column(rows, name)] for name in ("train/loss_epoch", "val/psnr", "val/ssim")}


@pytest.mark.slow
def test_two_cpu_processes_match_one_process_with_the_same_global_batch(tmp_path):
    single = run_train(_overrides(tmp_path, "single"), timeout=300)
    ddp = run_train(_overrides(tmp_path, "ddp", "trainer=ddp_cpu"), timeout=300)

    output = ddp.stdout + ddp.stderr
    assert "global batch 4 = 2 processes x 2" in output
    assert "MEMBER: 2/2" in output  # Lightning's line from the second rank
    assert "global batch" not in single.stdout + single.stderr

    one, two = _epoch_metrics(tmp_path / "single"), _epoch_metrics(tmp_path / "ddp")
    assert len(one["val/psnr"]) == len(two["val/psnr"]) == EPOCHS
    # Training moved the weights well beyond the tolerance used below...
    assert one["train/loss_epoch"][-1] < 0.9 * one["train/loss_epoch"][0]
    # (a residual net starts as the identity, so an untrained one would move val/psnr by 0.0)
    assert abs(one["val/psnr"][-1] - one["val/psnr"][0]) > 0.02
    # ...and the two-process run followed the same path.
    assert two["train/loss_epoch"] == pytest.approx(one["train/loss_epoch"], rel=1e-4)
    assert two["val/psnr"] == pytest.approx(one["val/psnr"], abs=2e-3)
    assert two["val/ssim"] == pytest.approx(one["val/ssim"], abs=1e-4)

    last_one, last_two = (
        torch.load(tmp_path / run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
        for run in ("single", "ddp")
    )
    assert last_one["global_step"] == last_two["global_step"] == EPOCHS  # same steps, so same LR schedule
    for name, weight in last_one["state_dict"].items():
        assert torch.allclose(last_two["state_dict"][name], weight, rtol=1e-3, atol=1e-5), name

    # Only rank zero wrote: one log version, no second copy of any checkpoint, one grid per epoch.
    run = tmp_path / "ddp"
    assert [p.name for p in (run / "csv").iterdir()] == ["version_0"]
    assert not list(run.glob("checkpoints/**/*-v1.ckpt"))
    assert len(list((run / "images").glob("*.png"))) == EPOCHS


def test_global_batch_is_split_over_processes():
    assert per_device_batch_size(16, 1) == 16
    assert per_device_batch_size(16, 4) == 4
    with pytest.raises(ValueError, match=r"data.batch_size=6 .* 4 training processes"):
        per_device_batch_size(6, 4)


def test_ddp_configs_compose_into_a_two_process_trainer(tmp_path):
    cfg = compose_config(["trainer=ddp_cpu"], tmp_path)
    trainer = hydra.utils.instantiate(cfg.trainer, logger=False)  # builds, launches nothing
    assert isinstance(trainer.strategy, DDPStrategy) and trainer.world_size == 2
    assert trainer.strategy.process_group_backend in (None, "gloo")  # gloo is chosen for CPUs
    check_launch(trainer, multirun=False)
    with pytest.raises(ValueError, match="hydra/launcher=submitit_slurm"):
        check_launch(trainer, multirun=True)  # relaunched ranks would each start the sweep again
    cfg = compose_config(["trainer=ddp", "trainer.devices=8", "trainer.num_nodes=2"], tmp_path)
    assert (cfg.trainer.strategy, cfg.trainer.accelerator, cfg.trainer.devices * cfg.trainer.num_nodes) == (
        "ddp", "gpu", 16
    )


def _crops(dataset: PairedImageDataset, n: int) -> list[bytes]:
    return [dataset[0][1].numpy().tobytes() for _ in range(n)]


def _one_pair(tmp_path: Path):
    return find_gopro_pairs(make_gopro_tree(tmp_path, {"seq": 1}, size=(64, 64)), "train", "blur")


def test_every_rank_draws_its_own_reproducible_crops(tmp_path):
    pairs = _one_pair(tmp_path)

    def crops(rank: int, step: int = 0) -> list[bytes]:
        dataset = PairedImageDataset(pairs, crop_size=16)
        assert reseed_augmentation(dataset, rank_seed(12345, rank, step))
        return _crops(dataset, 8)

    assert crops(0) == crops(0)  # reproducible from the run's seed
    assert crops(0) != crops(1)  # ranks differ
    assert crops(0, step=0) != crops(0, step=120)  # a resumed run does not replay the first crops


class _RecordFirstBatch(pl.LightningModule):
    def __init__(self, dataset: PairedImageDataset) -> None:
        super().__init__()
        self.dataset = dataset
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.seen: list[bytes] = []

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.dataset, batch_size=4)

    def training_step(self, batch, batch_idx):
        self.seen = [sharp.numpy().tobytes() for sharp in batch[1]]
        return (self.weight - 1) ** 2

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_the_callback_reseeds_before_the_first_training_batch(tmp_path):
    pairs = _one_pair(tmp_path)
    module = _RecordFirstBatch(PairedImageDataset(pairs, crop_size=16, samples_per_epoch=4))
    trainer = pl.Trainer(
        max_steps=1, callbacks=[RankSeededAugmentation(7)], logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )
    trainer.fit(module)
    expected = PairedImageDataset(pairs, crop_size=16)
    reseed_augmentation(expected, rank_seed(7, rank=0, step=0))
    assert module.seen == _crops(expected, 4)
