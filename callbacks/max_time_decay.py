"""Finish the learning-rate decay when `trainer.max_time` runs out, not only at the last step.

The polynomial decay is planned over the run's optimizer steps. With a time guard
(`trainer.max_time`) a slow or busy machine stops before the last step, in the middle of the
decay, at a high rate. This callback moves the decay along whichever clock is further ahead,
steps or training time, so the rate reaches `lr_end` when the time is up, on a fast machine
and on a slow one alike.
Without a `max_time` it does nothing.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Timer
from torch.optim.lr_scheduler import LambdaLR

from srn_deblur.schedule import PolynomialDecay


def _timer(trainer: pl.Trainer) -> Timer | None:
    for callback in trainer.callbacks:
        if isinstance(callback, Timer) and callback.time_remaining("train") is not None:
            return callback  # the one with a duration (max_time installs it)
    return None


class DecayWithinMaxTime(pl.Callback):
    """Sets each `PolynomialDecay`-driven rate to its value at `max(step, time)` progress.

    Time progress is the trainer's training time (Lightning's `Timer`, which `max_time`
    installs and which checkpoints keep, so a resumed run goes on from its elapsed time) over
    `max_time`. Under DDP rank 0's clock is broadcast, so every rank steps with one rate.
    """

    def time_progress(self, trainer: pl.Trainer) -> float | None:
        timer = _timer(trainer)
        if timer is None:
            return None
        elapsed = timer.time_elapsed("train")
        progress = elapsed / max(elapsed + timer.time_remaining("train"), 1e-9)  # over max_time
        return float(trainer.strategy.broadcast(progress, src=0))

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        # After Lightning's scheduler step: the rate set here is the one the next step uses.
        progress = self.time_progress(trainer)
        if progress is None:
            return
        for config in trainer.lr_scheduler_configs:
            scheduler = config.scheduler
            if not isinstance(scheduler, LambdaLR):
                continue
            for group, decay in zip(scheduler.optimizer.param_groups, scheduler.lr_lambdas, strict=True):
                if not isinstance(decay, PolynomialDecay):
                    continue
                step_progress = scheduler.last_epoch / decay.total_steps
                if progress > step_progress:
                    group["lr"] = group["initial_lr"] * decay.at_progress(progress) / decay.lr0
