"""The time each method of a run will take on this machine, in the settings the app parsed
(:class:`sparsect.app.settings.MethodSettings`), for ``sparsect reconstruct``, the page and batch jobs: what
:mod:`sparsect.reconstruct.estimate` says, priced with this machine's calibration (measured at first use).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sparsect.app.settings import MethodSettings
from sparsect.reconstruct import estimate
from sparsect.reconstruct.calibration import Calibration, machine_calibration


def seconds_by_method(settings: Mapping[str, MethodSettings], shape: Sequence[int], views: int,
                      calibration: Calibration | None = None) -> dict[str, float]:
    """Seconds of each method of ``settings`` (method -> its settings) on an (H, W) ``shape`` working grid from
    ``views`` views; ``calibration`` None: this machine's on the first settings' device."""
    items = {method: estimate.work(method, tuple(shape), views, chosen.iterations, chosen.preset, chosen.variant)
             for method, chosen in settings.items()}
    if calibration is None:
        device = next(iter(settings.values())).device if settings else "cpu"
        networks = dict.fromkeys(n for work in items.values() for n in estimate.networks_in(work))
        calibration = machine_calibration(device, list(networks))
    return {method: estimate.price(work, calibration) for method, work in items.items()}


def estimate_line(seconds: Mapping[str, float]) -> str:
    """``estimated: fbp <1 s, tv ~8 s, lrnn ~1 min 40 s`` (on this machine)."""
    return "estimated: " + ", ".join(f"{method} {estimate.format_duration(s)}" for method, s in seconds.items())


__all__ = ["estimate_line", "seconds_by_method"]
