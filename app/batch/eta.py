"""A batch's time: each unit's estimate before it starts (:func:`unit_estimates`) and the time left from the first
unit on: the estimate of the units still to do, scaled by how long the finished units took against their estimate
(which also covers workers running side by side)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.progress import ProgressColumn, Task, TimeRemainingColumn
from rich.text import Text

from sparsect.app.batch.plan import BatchSettings, Unit
from sparsect.app.estimates import seconds_by_method
from sparsect.app.settings import MethodSettings
from sparsect.reconstruct import registry
from sparsect.reconstruct.calibration import machine_calibration


def unit_estimates(units: Sequence[Unit], series: Sequence[Any], settings: BatchSettings, device: str
                   ) -> tuple[dict[str, float], str]:
    """Each unit's estimated seconds on this machine (unit id -> seconds, its slices one after another, on its
    series' grid or ``settings.size``) and the device they were estimated for (``device`` when it is a CUDA device
    this machine has, else "cpu"). Measures this machine's calibration if it has none."""
    import torch

    target = device if device.startswith("cuda") and torch.cuda.is_available() else "cpu"
    chosen = MethodSettings(iterations=settings.iterations, preset=settings.preset, device=target,
                            variant=settings.variant)
    rates = machine_calibration(target, [(m, settings.preset) for m in settings.methods
                                         if registry.method(m).is_network])

    def grid(unit: Unit) -> tuple[str, tuple[int, ...], int]:
        shape = series[unit.series_index].shape[1:] if settings.size is None else (settings.size,) * 2
        return unit.method, tuple(shape), unit.views

    per_slice = {key: seconds_by_method({key[0]: chosen}, key[1], key[2], rates)[key[0]]
                 for key in dict.fromkeys(grid(u) for u in units)}
    return {u.id: per_slice[grid(u)] * len(u.slices) for u in units}, target


def seconds_left(total: float, done: float, elapsed: float, elapsed_at_done: float) -> float:
    """Seconds left of a batch estimated at ``total`` seconds, ``done`` of which are the estimates of the finished
    units, ``elapsed`` seconds after its start and ``elapsed_at_done`` after it when the last unit finished. Before
    any unit finished: the estimate less the time elapsed; after: the estimate left times the time taken per
    estimated second so far, less the time since the last unit finished (never below 0)."""
    if done <= 0:
        return max(0.0, total - elapsed)
    return max(0.0, elapsed_at_done / done * (total - done) - (elapsed - elapsed_at_done))


def clock_text(seconds: float) -> str:
    """``h:mm:ss``."""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


class TimeLeftColumn(ProgressColumn):
    """The time left of a task with the fields ``estimate`` (seconds of all its units, None: unknown),
    ``estimate_done`` and ``elapsed_at_done`` (see :func:`seconds_left`); rich's rate-based
    :class:`TimeRemainingColumn` without an estimate."""

    def __init__(self) -> None:
        super().__init__()
        self.fallback = TimeRemainingColumn()

    def render(self, task: Task) -> Text:
        total = task.fields.get("estimate")
        if total is None:
            return self.fallback.render(task)
        left = 0.0 if task.finished else seconds_left(total, task.fields.get("estimate_done", 0.0),
                                                      task.elapsed or 0.0, task.fields.get("elapsed_at_done", 0.0))
        return Text(clock_text(left), style="progress.remaining")


__all__ = ["TimeLeftColumn", "clock_text", "seconds_left", "unit_estimates"]
