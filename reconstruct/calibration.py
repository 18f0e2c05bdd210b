"""How fast this machine does the operations a reconstruction is made of, measured once and cached.

:func:`machine_calibration` returns a :class:`Calibration`: the seconds of one FBP and of one projector pair
(forward + adjoint, with the cached matrix) per pixel-view, of building that matrix, of a TV iteration's image
work per pixel, and of one step (forward, backward, Adam) of each network per pixel. Each is measured in a tenth
of a second or so on a small grid at first use (:func:`measure`) and kept as JSON in the user's cache folder
(:func:`cache_file`), keyed by the sparsect and torch versions, the thread count and the device; a damaged file is
ignored and rewritten. :mod:`reconstruct.estimate` turns these rates into the time of a run.

Importing this module loads nothing heavy: torch and the solvers are imported when something is measured.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Where the cache lives instead of the user's cache folder, when set.
CACHE_ENV = "SPARSECT_CACHE_DIR"
CACHE_NAME = "calibration.json"
#: The grid sides measured on: one on the CPU (time per pixel is about constant there), two on a GPU (a step on a
#: small grid is mostly fixed launch cost). A network step on the CPU is timed on 128², the smallest grid it runs on.
CPU_SIZES: tuple[int, ...] = (96,)
CPU_NETWORK_SIZES: tuple[int, ...] = (128,)
GPU_SIZES: tuple[int, ...] = (64, 256)
#: Views of the calibration scan.
VIEWS = 60
#: Seconds each operation is repeated for (at least once after a warm-up call, at most :data:`MOST_REPEATS`).
BUDGET_SECONDS = 0.1
MOST_REPEATS = 20
#: TV iterations timed (after a run that computes its operator norm).
TV_ITERATIONS = 12

Clock = Callable[[], float]


@dataclass(frozen=True)
class Rate:
    """The seconds of one operation on ``units`` units of work: ``fixed + per_unit * units``."""

    per_unit: float
    fixed: float = 0.0

    def seconds(self, units: float) -> float:
        """Seconds for ``units`` (pixels or pixel-views)."""
        return self.fixed + self.per_unit * units


@dataclass(frozen=True)
class Calibration:
    """This machine's rates (:class:`Rate`, seconds).

    fbp, pair, matrix : one FBP, one projector pair (forward + adjoint) and building the projector's matrix pair,
        per pixel-view of one image.
    tv_image : a TV iteration's work besides its projector pair, per pixel.
    networks : ``"<network>/<preset>"`` -> one step of one network (forward, backward, Adam) per pixel.
    """

    fbp: Rate
    pair: Rate
    matrix: Rate
    tv_image: Rate
    networks: Mapping[str, Rate] = field(default_factory=dict)

    def network(self, name: str, preset: str) -> Rate:
        """The step rate of network ``name`` under ``preset``; ``KeyError`` when it was not measured."""
        return self.networks[network_key(name, preset)]


def network_key(name: str, preset: str) -> str:
    """How a network's step rate is named in a :class:`Calibration` ("lrnn/preview")."""
    return f"{name}/{preset}"


# ---------------------------------------------------------------------------------------------------- the cache


def cache_file() -> Path:
    """The calibration file: ``$SPARSECT_CACHE_DIR``, else ``$XDG_CACHE_HOME/sparsect``, else
    ``~/.cache/sparsect``, then ``calibration.json``."""
    folder = os.environ.get(CACHE_ENV)
    if not folder:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        folder = str(Path(base) / "sparsect")
    return Path(folder) / CACHE_NAME


def machine_key(device: str) -> str:
    """What a calibration holds for: the sparsect and torch versions, torch's thread count and ``device`` (with a
    GPU's name)."""
    import torch

    from sparsect import __version__

    name = device
    if device.startswith("cuda"):
        name = f"{device} {torch.cuda.get_device_name(torch.device(device))}"
    return f"sparsect {__version__}; torch {torch.__version__}; {torch.get_num_threads()} threads; {name}"


def _rate(value: Any) -> Rate:
    per_unit, fixed = value  # a damaged entry raises here (ValueError, TypeError)
    if not all(isinstance(v, (int, float)) and math.isfinite(v) and v >= 0 for v in (per_unit, fixed)):
        raise ValueError(f"not a rate: {value!r}")
    return Rate(float(per_unit), float(fixed))


def _from_json(entry: Mapping[str, Any]) -> Calibration:
    return Calibration(_rate(entry["fbp"]), _rate(entry["pair"]), _rate(entry["matrix"]), _rate(entry["tv_image"]),
                       {str(k): _rate(v) for k, v in entry.get("networks", {}).items()})


def _to_json(calibration: Calibration) -> dict[str, Any]:
    def pair(rate: Rate) -> list[float]:
        return [rate.per_unit, rate.fixed]

    return {"fbp": pair(calibration.fbp), "pair": pair(calibration.pair), "matrix": pair(calibration.matrix),
            "tv_image": pair(calibration.tv_image),
            "networks": {k: pair(v) for k, v in sorted(calibration.networks.items())}}


def read_cache(path: Path) -> dict[str, dict[str, Any]]:
    """The entries of the calibration file ``path`` (machine key -> JSON entry); {} when it is missing or damaged."""
    try:
        entries = json.loads(path.read_text())["entries"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return entries if isinstance(entries, dict) else {}


def cached(path: Path, key: str) -> Calibration | None:
    """The calibration stored under ``key`` in ``path``; None when there is none or it is damaged."""
    entry = read_cache(path).get(key)
    try:
        return None if entry is None else _from_json(entry)
    except (KeyError, ValueError, TypeError, AttributeError):
        return None


def store(path: Path, key: str, calibration: Calibration) -> bool:
    """Write ``calibration`` under ``key`` into ``path`` atomically, keeping the file's other (readable) entries;
    False when the folder cannot be written (the calibration is then measured again next time)."""
    from sparsect.data.atomic import atomic_write

    entries = {k: v for k, v in read_cache(path).items() if _entry_ok(v)}
    entries[key] = _to_json(calibration)
    try:
        atomic_write(path, (json.dumps({"entries": entries}, indent=1, sort_keys=True) + "\n").encode())
    except OSError:
        return False
    return True


def _entry_ok(entry: Any) -> bool:
    """Whether a JSON entry reads as a :class:`Calibration`."""
    try:
        _from_json(entry)
    except (KeyError, ValueError, TypeError, AttributeError):
        return False
    return True


def machine_calibration(device: str = "cpu", networks: Iterable[tuple[str, str]] = (), path: Path | None = None,
                        clock: Clock = time.perf_counter) -> Calibration:
    """This machine's :class:`Calibration` on ``device`` ("cpu", "cuda:0"), with the step rate of every
    (network, preset) of ``networks``: read from the cache file (``path``, default :func:`cache_file`), what is
    missing measured now (:func:`measure`, :func:`measure_networks`) and written back."""
    path = cache_file() if path is None else path
    key = machine_key(device)
    found = cached(path, key)
    wanted = {network_key(n, p): (n, p) for n, p in networks}
    missing = [wanted[k] for k in wanted if found is None or k not in found.networks]
    if found is not None and not missing:
        return found
    base = found if found is not None else measure(device, clock=clock)
    rates = {**base.networks, **measure_networks(missing, device, clock=clock)}
    calibration = Calibration(base.fbp, base.pair, base.matrix, base.tv_image, rates)
    store(path, key, calibration)
    return calibration


# ---------------------------------------------------------------------------------------------------- measuring


def sizes_for(device: str, networks: bool = False) -> tuple[int, ...]:
    """The grid sides calibrated on for ``device`` (the projector's, or with ``networks`` a network step's)."""
    if device.startswith("cuda"):
        return GPU_SIZES
    return CPU_NETWORK_SIZES if networks else CPU_SIZES


def time_call(work: Callable[[], Any], clock: Clock = time.perf_counter, budget: float = BUDGET_SECONDS,
              most: int = MOST_REPEATS) -> float:
    """Seconds of one call of ``work``: the median of calls timed one by one with ``clock`` after a warm-up call,
    until ``budget`` seconds (at least one call, at most ``most``); the median, so that a moment of another
    program's load does not stay in the cache."""
    work()
    times: list[float] = []
    while sum(times) < budget and len(times) < most:
        start = clock()
        work()
        times.append(clock() - start)
    return statistics.median(times)


def fit_rate(points: list[tuple[float, float]]) -> Rate:
    """The :class:`Rate` through (units, seconds) ``points``: proportional for one point; through the first and
    last for more (a fixed part and a slope, both >= 0)."""
    (u0, s0), (u1, s1) = points[0], points[-1]
    if len(points) == 1 or u1 <= u0 or s1 <= s0:
        return Rate(s1 / u1)
    slope = (s1 - s0) / (u1 - u0)
    return Rate(slope, max(0.0, s0 - slope * u0))


def tv_iteration(run: Callable[[Callable[[Any], None]], Any], clock: Clock = time.perf_counter,
                 sync: Callable[[], None] = lambda: None) -> float:
    """Seconds of one TV iteration: ``run(callback)`` runs TV reporting each iteration to ``callback``; timed
    between the first and the last report of a second run (the first computes the operator norm)."""
    run(lambda _progress: None)
    stamps: list[float] = []

    def stamp(_progress: Any) -> None:
        sync()
        stamps.append(clock())

    run(stamp)
    return (stamps[-1] - stamps[0]) / (len(stamps) - 1)


def measure(device: str = "cpu", sizes: tuple[int, ...] | None = None, views: int = VIEWS,
            clock: Clock = time.perf_counter) -> Calibration:
    """Measure the projector's rates (FBP, pair, matrix build) and TV's on ``device`` on grids of ``sizes``
    (default :func:`sizes_for`) with ``views`` views; no networks."""
    points: dict[str, list[tuple[float, float]]] = {"fbp": [], "pair": [], "matrix": [], "tv_image": []}
    for side in sizes or sizes_for(device):
        for name, point in _projector_points(side, views, device, clock).items():
            points[name].append(point)
    return Calibration(**{name: fit_rate(p) for name, p in points.items()})


def _projector_points(side: int, views: int, device: str, clock: Clock) -> dict[str, tuple[float, float]]:
    """(units, seconds) of one FBP, pair and matrix build (pixel-views) and of a TV iteration's image work (pixels)
    on a ``side`` x ``side`` grid from ``views`` views."""
    import torch

    from sparsect.operators import Radon
    from sparsect.operators.geometry import ParallelBeam
    from sparsect.operators.rays import strip_rays
    from sparsect.operators.system_matrix import projection_pair
    from sparsect.reconstruct.tv_solver import tv

    target = torch.device(device)
    sync = (lambda: torch.cuda.synchronize(target)) if target.type == "cuda" else (lambda: None)

    def timed(work: Callable[[], Any]) -> float:
        return time_call(lambda: (work(), sync()), clock)

    geometry = ParallelBeam.sparse(views, side)
    image = torch.rand(1, 1, side, side, device=target)
    plain = Radon(geometry)  # matrix-free, as FBP runs
    sinogram = plain(image)
    fbp = timed(lambda: plain.fbp(sinogram))
    radon = Radon(geometry).expect_calls(1000)  # with the cached matrix, as the iterative methods run
    pair = timed(lambda: radon.adjoint(radon(image)))
    rays = strip_rays(geometry)
    matrix = timed(lambda: projection_pair(rays, radon.model, torch.float32, target))
    iteration = tv_iteration(lambda callback: tv(sinogram, radon, iterations=TV_ITERATIONS, tol=0.0,
                                                 callback=callback), clock, sync)
    pixels = side * side
    return {"fbp": (pixels * views, fbp), "pair": (pixels * views, pair), "matrix": (pixels * views, matrix),
            "tv_image": (pixels, max(0.0, iteration - pair))}


def measure_networks(networks: Iterable[tuple[str, str]], device: str = "cpu", sizes: tuple[int, ...] | None = None,
                     clock: Clock = time.perf_counter) -> dict[str, Rate]:
    """One network step's rate per pixel (forward, backward and Adam; no projector) of each (network, preset) of
    ``networks`` on ``device``, on grids of ``sizes`` (default :func:`sizes_for`)."""
    import torch

    from sparsect.reconstruct.models import build_model, get_preset
    from sparsect.reconstruct.render import Renderer, pixel_grid

    target = torch.device(device)
    rates = {}
    for name, preset in networks:
        points = []
        for side in sizes or sizes_for(device, networks=True):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                model = build_model(name, get_preset(name, preset)).to(target)
            renderer = Renderer(model, pixel_grid((side, side), target), 1, (side, side),
                                torch.ones(1, device=target), None, False)
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

            def step(renderer: Renderer = renderer, optimizer: torch.optim.Optimizer = optimizer) -> None:
                optimizer.zero_grad(set_to_none=True)
                renderer.image().pow(2).mean().backward()
                optimizer.step()
                if target.type == "cuda":
                    torch.cuda.synchronize(target)

            points.append((side * side, time_call(step, clock)))
        rates[network_key(name, preset)] = fit_rate(points)
    return rates


__all__ = ["CACHE_ENV", "Calibration", "Rate", "cache_file", "cached", "fit_rate", "machine_calibration",
           "machine_key", "measure", "measure_networks", "network_key", "read_cache", "store", "time_call"]
