"""The paper's polynomial learning-rate decay."""

from __future__ import annotations


class PolynomialDecay:
    """Multiplier for `LambdaLR`: `lr(t) = (lr0 - lr_end) * (1 - t/T)^power + lr_end`.

    A callable object rather than a lambda so `LambdaLR.state_dict()` keeps it and a resumed
    run continues on the same curve. Past `T` the rate stays at `lr_end`.
    """

    def __init__(self, lr0: float, lr_end: float, total_steps: int, power: float = 0.3) -> None:
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        if lr0 <= 0 or lr_end < 0 or lr_end > lr0:
            raise ValueError(f"need 0 <= lr_end <= lr0 and lr0 > 0, got lr0={lr0}, lr_end={lr_end}")
        self.lr0 = lr0
        self.lr_end = lr_end
        self.total_steps = total_steps
        self.power = power

    def lr(self, step: int) -> float:
        return self.at_progress(step / self.total_steps)

    def at_progress(self, progress: float) -> float:
        """The rate a fraction `progress` of the way through the decay (clamped to [0, 1])."""
        progress = min(max(progress, 0.0), 1.0)
        return (self.lr0 - self.lr_end) * (1.0 - progress) ** self.power + self.lr_end

    def __call__(self, step: int) -> float:
        return self.lr(step) / self.lr0
