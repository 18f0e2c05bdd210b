"""Refuse a job whose memory estimate (:mod:`sparsect.reconstruct.memory`) exceeds the memory available,
with one line that names the limit and a smaller setting that fits.

The available memory is the CPU's ``MemAvailable`` (``/proc/meminfo``; ``os.sysconf`` elsewhere) or, for a
CUDA device, the GPU's free memory. The environment variable ``SPARSECT_AVAILABLE_MEMORY`` (bytes, e.g.
``2e9``) overrides both: tests use it to fake a small machine, and a shared server can set it to a share.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from sparsect.app.settings import InputError, MethodSettings, ScanSettings
from sparsect.reconstruct import memory, registry
from sparsect.reconstruct.neural import ENSEMBLE, ENSEMBLE_SIZE

#: Environment variable that sets the available memory in bytes (overrides what the machine reports).
AVAILABLE_MEMORY_ENV = "SPARSECT_AVAILABLE_MEMORY"
#: The smallest settings suggested (a scan needs two views; ``scans.MIN_IMAGE_SIZE`` is the least grid).
MIN_VIEWS, MIN_SIZE = 2, 16


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def available_bytes(device: str = "cpu") -> int:
    """Bytes a job may use on ``device`` ("cpu", "cuda:N"): ``SPARSECT_AVAILABLE_MEMORY`` if set, else the
    GPU's free memory or the CPU's available memory."""
    override = os.environ.get(AVAILABLE_MEMORY_ENV)
    if override:
        try:
            return int(float(override))
        except ValueError:
            raise InputError(f"{AVAILABLE_MEMORY_ENV} must be a number of bytes, got {override!r}") from None
    if device.startswith("cuda"):
        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    found = _meminfo_available()
    if found is None:
        found = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return int(found)


def gigabytes(n_bytes: float) -> str:
    """``n_bytes`` as short text in decimal gigabytes ("41 GB", "2.5 GB", "0.3 GB")."""
    value = n_bytes / 1e9
    return f"{value:.0f} GB" if value >= 10 else f"{value:.1f} GB" if value >= 1 else f"{value:.1g} GB"


def largest_fitting(fits: Callable[[int], bool], low: int, high: int) -> int | None:
    """The largest ``n`` in [``low``, ``high``] with ``fits(n)``, for ``fits`` true up to some ``n`` and
    false above it; None when even ``fits(low)`` is false."""
    if high < low or not fits(low):
        return None
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(middle) else (low, middle - 1)
    return low


def memory_problem(source_side: int, scan: ScanSettings, methods: Iterable[str], method: MethodSettings,
                   views_option: str = "--views", size_option: str | None = "--size", slices: int = 1,
                   slices_option: str = "--batch-size") -> str | None:
    """None when the job fits the available memory, else the one-line refusal: what the settings need,
    what is available and the largest stack of slices (``slices_option``, when ``slices`` > 1 and fewer
    fit), view count or working grid (``size_option``) that fits.

    ``source_side``: side of the square source slice in pixels (the working grid is ``scan.size`` or it);
    ``slices``: slices reconstructed in one call (stacked, as ``sparsect batch --batch-size`` does).
    """
    methods = tuple(methods)
    working = scan.size or source_side
    networks = [m for m in methods if m in registry.NETWORK_METHODS]
    ensemble = ENSEMBLE_SIZE if any(ENSEMBLE in registry.resolve_variants(m, method.variant) for m in networks) else 1
    available = available_bytes(method.device if method.device.startswith("cuda") else "cpu")

    def needs(views: int, side: int, stack: int = slices) -> int:
        return memory.estimate(source_side, side, views, methods, method.preset, scan.beam, scan.simulation,
                               scan.det_count, slices=stack, iterations=method.iterations, ensemble=ensemble).total

    needed = needs(scan.views, working)
    if needed <= available:
        return None
    where = "the GPU has" if method.device.startswith("cuda") else "this machine has"
    stack = largest_fitting(lambda n: needs(scan.views, working, n) <= available, 1, slices - 1)
    if stack is not None:
        return (f"{slices_option} {slices} needs about {gigabytes(needed)}; {where} {gigabytes(available)} "
                f"available; at most {slices_option} {stack} fits")
    views = largest_fitting(lambda n: needs(n, working) <= available, MIN_VIEWS, scan.views - 1)
    side = largest_fitting(lambda n: needs(scan.views, n) <= available, MIN_SIZE, working - 1) if size_option else None
    by_size = side is not None and (views is None or scan.views <= working)
    grid = f"at {size_option} {working}" if size_option else f"on the slice's {working}x{working} grid"
    setting = (f"{size_option} {working} at {views_option} {scan.views}" if by_size
               else f"{views_option} {scan.views} {grid}")
    head = f"{setting} needs about {gigabytes(needed)}; {where} {gigabytes(available)} available"
    if by_size:
        return f"{head}; at most {size_option} {side} fits"
    if views is not None:
        return f"{head}; at most {views_option} {views} fits"
    return f"{head}; even {views_option} {MIN_VIEWS} does not fit"


def check_memory(source_side: int, scan: ScanSettings, methods: Iterable[str], method: MethodSettings,
                 views_option: str = "--views", size_option: str | None = "--size") -> None:
    """:class:`InputError` with :func:`memory_problem`'s line (naming the settings ``views_option`` and
    ``size_option``) when the job does not fit."""
    problem = memory_problem(source_side, scan, methods, method, views_option, size_option)
    if problem is not None:
        raise InputError(problem)


def check_resample(source_shape: tuple[int, int], side: int, size_option: str = "--size") -> None:
    """:class:`InputError` (one line, with the largest side that fits) when resampling an (H, W) slice to
    ``side`` x ``side`` alone needs more than the available memory: checked before resampling, so that a
    huge ``--size`` on a non-square slice is refused at once instead of allocating it."""
    available = available_bytes("cpu")

    def fits(n: int) -> bool:
        return memory.resample_bytes(source_shape, n) <= available

    if fits(side):
        return
    height, width = source_shape
    head = (f"{size_option} {side} needs about {gigabytes(memory.resample_bytes(source_shape, side))} to resample "
            f"the {height}x{width} slice; this machine has {gigabytes(available)} available")
    largest = largest_fitting(fits, MIN_SIZE, side - 1)
    raise InputError(f"{head}; at most {size_option} {largest} fits" if largest is not None
                     else f"{head}; even {size_option} {MIN_SIZE} does not fit")


def batch_problem(series: Sequence[Any], units: Sequence[Any], batch: Any, device: str,
                  batch_size: int = 1) -> str | None:
    """:func:`memory_problem` of a batch, once for all its units (they share the settings): its largest
    slice (``units[i].series_index`` into ``series``) at its largest view count, ``batch_size`` slices
    stacked per call (at most a unit's slice count; 0, the automatic size, counts as 1: it shrinks on an
    out-of-memory error); ``batch`` is the ``BatchSettings``, ``device`` the resolved device."""
    used = {unit.series_index for unit in units}
    if not used:
        return None
    stacked = max(1, min(batch_size, max(len(unit.slices) for unit in units)))
    side = max(max(series[i].shape[1:]) for i in used)
    scan = ScanSettings(views=max(batch.views), photons=batch.photons, simulation=batch.simulation,
                        size=batch.size)
    method = MethodSettings(iterations=batch.iterations, preset=batch.preset, variant=batch.variant,
                            device=device if device.startswith("cuda") else "cpu")
    return memory_problem(side, scan, batch.methods, method, size_option="--size" if scan.size else None,
                          slices=stacked)


def run_bytes(source_side: int, scan: ScanSettings, method_settings: Mapping[str, MethodSettings]) -> int:
    """Memory estimate in bytes of one run that does the methods one after another (the page's Run): the largest
    of the estimates :func:`memory_problem` checks each method (with its own settings) against.

    ``source_side``: side of the square source slice in pixels; ``method_settings``: method -> its settings.
    """
    def one(name: str, method: MethodSettings) -> int:
        variant = registry.resolve_variants(name, method.variant) if name in registry.NETWORK_METHODS else ()
        return memory.estimate(source_side, scan.size or source_side, scan.views, (name,), method.preset, scan.beam,
                               scan.simulation, scan.det_count, iterations=method.iterations,
                               ensemble=ENSEMBLE_SIZE if ENSEMBLE in variant else 1).total

    return max((one(name, method) for name, method in method_settings.items()), default=0)


__all__ = ["AVAILABLE_MEMORY_ENV", "available_bytes", "batch_problem", "check_memory", "check_resample", "gigabytes",
           "largest_fitting", "memory_problem", "run_bytes"]
