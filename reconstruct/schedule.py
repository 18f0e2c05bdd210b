"""When a network fit steps and when it stops: the learning-rate schedule and the early-stop plateau rule."""

from __future__ import annotations

import math
from collections.abc import Sequence

from sparsect.reconstruct.fit_config import EarlyStop


def lr_at(iteration: int, iterations: int, lr: float, warmup: int, final_lr_factor: float,
          schedule: str = "cosine") -> float:
    """Learning rate of 0-based ``iteration``: linear warm-up over ``warmup`` steps, then cosine or
    exponential decay from ``lr`` to ``final_lr_factor * lr`` at the end of the budget."""
    if warmup > 0 and iteration < warmup:
        return lr * (iteration + 1) / warmup
    span = max(1, iterations - warmup - 1)
    progress = min(1.0, max(0.0, (iteration - warmup) / span))
    if schedule == "cosine":
        return lr * (final_lr_factor + (1 - final_lr_factor) * 0.5 * (1 + math.cos(math.pi * progress)))
    if schedule == "exponential":
        return lr * final_lr_factor ** progress
    raise ValueError(f"unknown schedule {schedule!r}; choose 'cosine' or 'exponential'")


class Plateau:
    """The :class:`EarlyStop` rule over ``batch`` slices: done once every slice has plateaued."""

    def __init__(self, rule: EarlyStop, batch: int) -> None:
        self.rule = rule
        self.best = [float("inf")] * batch
        self.best_iteration = [0] * batch

    def reached(self, iteration: int, slice_losses: Sequence[float]) -> bool:
        """Whether the fit has plateaued after 1-based ``iteration`` with per-slice losses ``slice_losses``."""
        for b, value in enumerate(slice_losses):
            if value < self.best[b] * (1 - self.rule.tolerance):
                self.best[b], self.best_iteration[b] = value, iteration
        plateaued = all(iteration - last >= self.rule.patience for last in self.best_iteration)
        return iteration >= self.rule.min_iterations and plateaued


__all__ = ["Plateau", "lr_at"]
