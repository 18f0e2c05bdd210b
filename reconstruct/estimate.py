"""How long a method will take on this machine, before it runs.

:func:`work` lists what a run does, as :class:`Work` items (FBPs, projector pairs, matrix builds, TV iterations'
image work, network steps), read from the registry (:attr:`registry.Method.cost_model`, its budgets), the solvers'
defaults and, for a network, :func:`reconstruct.neural.fit_config` (warm start, the two grids of
:mod:`reconstruct.grid_levels`), the resolved variants (the ensemble's members, fitted side by side; the TV run of
the blends). :func:`price` multiplies them by this machine's rates (:mod:`reconstruct.calibration`),
:func:`estimate_seconds` does both, and :func:`format_duration` words the result ("~1 min 40 s").

An estimate is of the whole budget: a fit that stops early (the discrepancy variant, TV's tolerance) takes less.
Importing this module loads no torch; an estimate does (the fit configuration and the grids are torch's modules).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sparsect.reconstruct import registry
from sparsect.reconstruct.calibration import Calibration, Rate, machine_calibration, network_key
from sparsect.reconstruct.variants import BAND_BLEND, ENSEMBLE, ENSEMBLE_SIZE, TV_BLEND, resolve_variants

#: The operations a :class:`Work` can name besides a network's step ("lrnn/preview").
OPERATIONS = ("fbp", "pair", "matrix", "tv_image")


@dataclass(frozen=True)
class Work:
    """``count`` calls of ``operation`` on ``units`` each: pixel-views of one image for "fbp", "pair" (forward +
    adjoint) and "matrix" (building the projector's matrix pair), pixels for "tv_image" (a TV iteration's work
    besides its pair) and for a network's step (``"<network>/<preset>"``: forward, backward and Adam)."""

    operation: str
    units: float
    count: float


def _shape(size: int | Sequence[int]) -> tuple[int, int]:
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _default(function: Callable[..., Any], name: str) -> Any:
    """The default of parameter ``name`` of ``function`` (what a call without it runs with)."""
    return inspect.signature(function).parameters[name].default


def tv_work(shape: tuple[int, int], views: int, iterations: int, images: int = 1) -> list[Work]:
    """What a TV run of ``iterations`` on ``images`` sinograms side by side does: the matrix, its start image (an
    FBP), the power iterations of its operator norm (on one image) and a pair plus image work per iteration."""
    from sparsect.reconstruct.solver_common import operator_norm

    pixels = shape[0] * shape[1]
    pixel_views = pixels * views
    return [Work("matrix", pixel_views, 1), Work("fbp", pixel_views, images),
            Work("pair", pixel_views, _default(operator_norm, "iterations") + images * iterations),
            Work("tv_image", pixels, images * iterations)]


def network_work(method: str, shape: tuple[int, int], views: int, iterations: int | None = None,
                 preset: str = "preview", variant: str | Iterable[str] | None = None,
                 ensemble_size: int = ENSEMBLE_SIZE, fit_fields: Mapping[str, Any] | None = None) -> list[Work]:
    """What a fit of network ``method`` does (arguments as :func:`reconstruct.registry.run`'s): the output scales'
    FBPs, the warm-start image and steps, the main loop's steps and pairs on each grid, the blend's TV run; every
    network step and pair once per ensemble member."""
    from sparsect.reconstruct.grid_levels import coarse_size
    from sparsect.reconstruct.neural import fit_config
    from sparsect.reconstruct.tv_solver import tv

    config = fit_config(method, preset, iterations, variant, **dict(fit_fields or {}))
    variants = resolve_variants(method, variant)
    members = ensemble_size if ENSEMBLE in variants else 1
    step = network_key(method, preset)
    coarse = coarse_size(shape, config.coarse_grid) if config.coarse_grid is not None else None
    start = coarse or shape
    fine_steps = min(config.fine_iterations, config.iterations) if coarse else config.iterations
    grid_steps = [(coarse, config.iterations - fine_steps)] if coarse else []
    grid_steps.append((shape, fine_steps))
    items = [Work("fbp", shape[0] * shape[1] * views, members)]  # the output scales
    if config.warm_start == "fbp":
        items.append(Work("fbp", start[0] * start[1] * views, members))
    elif config.warm_start == "tv":
        items += tv_work(start, views, _default(tv, "iterations"), members)
    if config.warm_start is not None:
        items.append(Work(step, start[0] * start[1], members * config.warm_start_steps))
    for grid, steps in grid_steps:
        if steps:
            pixels = grid[0] * grid[1]
            items += [Work("matrix", pixels * views, 1), Work(step, pixels, members * steps),
                      Work("pair", pixels * views, members * steps)]
    if TV_BLEND in variants or BAND_BLEND in variants:
        items += tv_work(shape, views, _default(tv, "iterations"))
    return _one_matrix_per_grid(items)


def _one_matrix_per_grid(items: list[Work]) -> list[Work]:
    """``items`` with each grid's matrix built once (it is cached for the rest of the run)."""
    seen: set[float] = set()
    kept = []
    for item in items:
        if item.operation == "matrix":
            if item.units in seen:
                continue
            seen.add(item.units)
        kept.append(item)
    return kept


def work(method: str, size: int | Sequence[int], views: int, iterations: int | None = None,
         preset: str = "preview", variant: str | Iterable[str] | None = None, ensemble_size: int = ENSEMBLE_SIZE,
         fit_fields: Mapping[str, Any] | None = None) -> list[Work]:
    """What running ``method`` on a ``size`` grid (a side, or (H, W)) from ``views`` views does, by its cost model
    (:attr:`reconstruct.registry.Method.cost_model`); the other arguments as :func:`reconstruct.registry.run`'s
    (``iterations`` None: the method's default, a network's from ``preset``)."""
    spec = registry.method(method)
    shape = _shape(size)
    pixel_views = shape[0] * shape[1] * views
    model = spec.cost_model
    if model == "network":
        return network_work(method, shape, views, iterations, preset, variant, ensemble_size, fit_fields)
    if model == "backprojection":
        return [Work("fbp", pixel_views, 1)]
    budget = registry.iterations_for(method, iterations, preset)
    if model == "total_variation":
        return tv_work(shape, views, budget)
    if model == "projector_pairs":
        return [Work("matrix", pixel_views, 1), Work("pair", pixel_views, budget)]
    raise ValueError(f"unknown cost model {model!r} of method {method!r}")


def networks_in(items: Iterable[Work]) -> list[tuple[str, str]]:
    """The (network, preset) pairs whose step rate ``items`` need."""
    names = dict.fromkeys(item.operation for item in items if item.operation not in OPERATIONS)
    return [tuple(name.split("/", 1)) for name in names]


def price(items: Iterable[Work], calibration: Calibration) -> float:
    """Seconds of ``items`` at ``calibration``'s rates."""
    total = 0.0
    for item in items:
        rate: Rate = (getattr(calibration, item.operation) if item.operation in OPERATIONS
                      else calibration.networks[item.operation])
        total += item.count * rate.seconds(item.units)
    return total


def estimate_seconds(method: str, size: int | Sequence[int], views: int, iterations: int | None = None,
                     preset: str = "preview", variant: str | Iterable[str] | None = None,
                     ensemble_size: int = ENSEMBLE_SIZE, fit_fields: Mapping[str, Any] | None = None,
                     calibration: Calibration | None = None, device: str = "cpu") -> float:
    """Seconds ``method`` will take on a ``size`` grid (a side in pixels, or (H, W)) from ``views`` views.

    The settings are :func:`reconstruct.registry.run`'s; ``calibration`` the rates to price the work at (None:
    this machine's on ``device``, :func:`reconstruct.calibration.machine_calibration`, measured at first use).
    """
    items = work(method, size, views, iterations, preset, variant, ensemble_size, fit_fields)
    if calibration is None:
        calibration = machine_calibration(device, networks_in(items))
    return price(items, calibration)


def format_duration(seconds: float) -> str:
    """A time in words, about: "<1 s", "~20 s", "~1 min 40 s" (to 10 s under 10 minutes), "~14 min",
    "~1 h 20 min" (to 10 minutes from an hour on)."""
    if seconds < 1:
        return "<1 s"
    if seconds < 59.5:
        return f"~{round(seconds)} s"
    if seconds < 595:
        minutes, rest = divmod(round(seconds / 10) * 10, 60)
        return f"~{minutes} min" + (f" {rest} s" if rest else "")
    if seconds < 3570:
        return f"~{round(seconds / 60)} min"
    hours, minutes = divmod(round(seconds / 600) * 10, 60)
    return f"~{hours} h" + (f" {minutes} min" if minutes else "")


__all__ = ["OPERATIONS", "Work", "estimate_seconds", "format_duration", "network_work", "networks_in", "price",
           "tv_work", "work"]
