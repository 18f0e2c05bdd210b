"""Divergence handling of a network fit: per-network good-state snapshots, roll-backs and learning rates.

A step diverges when its loss or gradient is not finite, or its loss is above ``divergence_factor`` times the
network's lowest so far (:class:`reconstruct.fit_config.FitConfig`). The network then returns to its last good
state (parameters and Adam moments) at half its learning rate; one out of roll-backs is frozen at its good state.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from sparsect.reconstruct.fit_config import FitConfig

#: Good-state snapshots are only taken while the loss is within this multiple of the lowest so far.
SNAPSHOT_FACTOR = 4.0


class DivergenceGuard:
    """Divergence handling for each of a fit's ``batch`` networks (network b owns row b of every trained tensor
    when several are stacked). A non-finite or blown-up loss of network b restores b's last good state (its
    parameters and Adam moments) and halves b's learning rate, at most ``max_recoveries`` times; after that b is
    frozen at its good state while the others go on. So a slice or ensemble member that blows up neither drags
    the others back nor hides in their mean loss. A lone network also gets Adam's step count back; stacked ones
    share it, so theirs runs on (its bias correction is close to 1 after the first few hundred steps)."""

    def __init__(self, params: list[torch.Tensor], optimizer: torch.optim.Optimizer, batch: int, config: FitConfig,
                 note: Callable[..., None]) -> None:
        self.params, self.optimizer, self.batch, self.note = params, optimizer, batch, note
        self.every, self.max_recoveries = max(1, int(config.snapshot_every)), config.max_recoveries
        self.factor = float(config.divergence_factor)
        self.largest_ratio = 1.0
        self.good_params = [p.detach().clone() for p in params]
        self.good_moments: list[dict[str, torch.Tensor]] = [{} for _ in params]  # empty: Adam's fresh state
        self.good_iteration = [0] * batch
        self.lr_scale = [1.0] * batch
        self.recoveries = [0] * batch
        self.lowest_loss = [float("inf")] * batch
        self.frozen = [False] * batch

    def _row(self, tensor: torch.Tensor, b: int) -> torch.Tensor:
        return tensor if self.batch == 1 else tensor[b]

    def label(self, b: int) -> str:
        """How notes name network ``b``: nothing for a lone network."""
        return "" if self.batch == 1 else f"network {b + 1} of {self.batch}: "

    @property
    def active(self) -> list[int]:
        """The networks still being fitted (not frozen)."""
        return [b for b in range(self.batch) if not self.frozen[b]]

    def diverged(self, iteration: int, losses: Sequence[float], grad_norms: Sequence[float]) -> list[int]:
        """The active networks whose step of 1-based ``iteration`` diverged (non-finite loss or gradient, or a
        loss above ``divergence_factor`` times their lowest); each is noted and will be :meth:`restore`\\ d."""
        bad = []
        for b in self.active:
            loss = losses[b]
            finite = math.isfinite(loss) and math.isfinite(grad_norms[b])
            if finite and 0 < self.lowest_loss[b] < math.inf:
                self.largest_ratio = max(self.largest_ratio, loss / self.lowest_loss[b])
            if finite and loss <= self.factor * self.lowest_loss[b]:
                continue
            bad.append(b)
            if self.recoveries[b] >= self.max_recoveries:
                self.frozen[b] = True
                self.note(f"{self.label(b)}diverged at iteration {iteration} after {self.recoveries[b]} recoveries; "
                          f"giving up at the state of iteration {self.good_iteration[b]}", warn=True)
                continue
            self.recoveries[b] += 1
            self.lr_scale[b] *= 0.5
            cause = f"loss {loss:.3g} above {self.factor:g}x the lowest so far" if finite \
                else "non-finite loss/gradient"
            self.note(f"{self.label(b)}{cause} at iteration {iteration}: restored the state of iteration "
                      f"{self.good_iteration[b]}, learning rate x{self.lr_scale[b]:g}", warn=True)
        return bad

    def restore(self, networks: Sequence[int]) -> None:
        """Put ``networks`` back to their good state: parameters, Adam moments, and (one network) Adam's step."""
        with torch.no_grad():
            for p, good, moments in zip(self.params, self.good_params, self.good_moments, strict=True):
                state = self.optimizer.state.get(p, {})
                for b in networks:
                    self._row(p, b).copy_(self._row(good, b))
                    for key, value in state.items():
                        saved = moments.get(key)
                        if key == "step":
                            if self.batch == 1 and isinstance(value, torch.Tensor):
                                value.copy_(saved if saved is not None else torch.zeros_like(value))
                        elif saved is not None:
                            self._row(value, b).copy_(self._row(saved, b))
                        elif is_moment(value, p):
                            self._row(value, b).zero_()  # saved before Adam's first step: its fresh state

    def restore_nonfinite(self) -> list[int]:
        """Restore the networks whose parameters are not all finite; returns them."""
        broken = [b for b, ok in enumerate(rows_finite(self.params, self.batch)) if not ok]
        self.restore(broken)
        return broken

    def accept(self, iteration: int, losses: Sequence[float], networks: Sequence[int]) -> None:
        """Record the good ``losses`` of ``networks``, those of the state after ``iteration`` steps (before the
        next is taken); every ``snapshot_every`` iterations that state becomes the good state of those whose loss
        is near their lowest and whose parameters are finite. (A snapshot after a step, before its loss is known,
        can hold the step that blew up: every roll-back would then return to it.)"""
        for b in networks:
            self.lowest_loss[b] = min(self.lowest_loss[b], losses[b])
        if iteration % self.every or not networks:
            return
        finite = rows_finite(self.params, self.batch)
        chosen = [b for b in networks if finite[b] and losses[b] <= SNAPSHOT_FACTOR * self.lowest_loss[b]]
        with torch.no_grad():
            for p, good, moments in zip(self.params, self.good_params, self.good_moments, strict=True):
                state = self.optimizer.state.get(p, {})
                for key, value in state.items():
                    if is_moment(value, p) or (key == "step" and isinstance(value, torch.Tensor)):
                        moments.setdefault(key, torch.zeros_like(value))
                for b in chosen:
                    self._row(good, b).copy_(self._row(p, b))
                    for key, value in state.items():
                        if key == "step":
                            if self.batch == 1 and key in moments:
                                moments[key].copy_(value)
                        elif key in moments:
                            self._row(moments[key], b).copy_(self._row(value, b))
        for b in chosen:
            self.good_iteration[b] = iteration

    def learning_rates(self, lr: float) -> list[float]:
        """Each network's learning rate at base rate ``lr`` (0 for a frozen one)."""
        return [0.0 if self.frozen[b] else lr * self.lr_scale[b] for b in range(self.batch)]

    def scale_step(self, before: list[torch.Tensor], rates: Sequence[float], lr: float) -> None:
        """Make the Adam step just taken at rate ``lr`` one at each network's own rate: Adam's update is
        proportional to the rate and its moments do not depend on it. A frozen network keeps ``before``."""
        with torch.no_grad():
            for p, old in zip(self.params, before, strict=True):
                for b, rate in enumerate(rates):
                    row, old_row = self._row(p, b), self._row(old, b)
                    if rate == 0.0:
                        row.copy_(old_row)
                    elif rate != lr:
                        row.copy_(old_row + (rate / lr) * (row - old_row))


def is_moment(value: object, param: torch.Tensor) -> bool:
    """Whether an optimiser state entry is a per-element moment of ``param`` (Adam's exp_avg, exp_avg_sq)."""
    return isinstance(value, torch.Tensor) and value.shape == param.shape


def rows_finite(params: Sequence[torch.Tensor], batch: int) -> list[bool]:
    """Per network (row b of every tensor when ``batch`` > 1): whether all its parameters are finite."""
    if not params:
        return [True] * batch
    rows = torch.stack([torch.isfinite(p.detach().reshape(batch, -1)).all(dim=1) for p in params])
    return rows.all(dim=0).tolist()


def all_finite(model: nn.Module) -> bool:
    """Whether every parameter of ``model`` is finite."""
    params = [p.detach() for p in model.parameters()]
    if not params:
        return True
    return bool(torch.stack([torch.isfinite(p).all() for p in params]).all())


def gradient_norms(params: Sequence[torch.Tensor], batch: int, device: torch.device) -> torch.Tensor:
    """(B,): each network's summed gradient norms over ``params`` (row b of every trained tensor when ``batch``
    networks are stacked; a TGV field is laid out the same way); zeros when no parameter has a gradient."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(batch, device=device)
    if batch == 1:
        return torch.stack(torch._foreach_norm(grads)).sum().reshape(1)
    return torch.stack([g.reshape(batch, -1).norm(dim=1) for g in grads]).sum(dim=0)


__all__ = ["SNAPSHOT_FACTOR", "DivergenceGuard", "all_finite", "gradient_norms", "is_moment", "rows_finite"]
