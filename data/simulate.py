"""Simulate (sparse-view) CT measurements of an HU image with optional Poisson + Gaussian noise.

Grids and units: the image to reconstruct lives on the *working grid* (``size``, default the image's
own shape) covering the same field of view as the source image, so a working pixel is
``pixel_size_mm * W_source / W_working`` mm. Geometries are in working-pixel units (see
``operators.geometry``). Images are converted to linear attenuation ``mu`` (1/mm, :func:`data.hu_to_mu`);
line integrals are path lengths in mm times ``mu`` (dimensionless).

Two simulations (``simulation=``):

- ``"honest"`` (default): the scan is simulated from a finer image than the one reconstructed, with
  another pixel model, so the data are not consistent with the reconstruction's discretisation. The
  simulation grid is the source image itself when it is at least :data:`MIN_REFINEMENT` times finer
  than the working grid, else the source upsampled *bilinearly* to twice the working grid. It is
  projected with exact ray/pixel intersection lengths (``Radon(model="line")``), and every detector
  bin is the mean of :data:`SUB_RAYS` rays spread evenly across its width (offsets centred in each
  bin; on the flat detector for fan beams). The ground truth (``mu``, ``reference_hu``) is the source
  area-averaged onto the working grid.
- ``"same-grid"``: the old behaviour, labelled "same-grid (inverse crime)": the working-grid image is
  projected with the reconstruction's own operator (``Radon(geometry)``), one ray per bin.

Noise model (when ``photons`` is given), applied to the simulated projections: transmitted counts
``N ~ Poisson(I0 * exp(-p)) + Normal(0, electronic_noise**2)`` and the measured line integral is
``-log(max(N, COUNT_GUARD) / I0)``, where ``COUNT_GUARD = 0.5`` counts keeps zero or negative counts
finite (capping ``p`` at ``log(2 * I0)``). Randomness comes only from a private ``torch.Generator``:
the same ``seed`` gives the same result and the global RNG state is never used or changed.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from sparsect import operators
from sparsect.operators.progress import PhaseCallback, PhaseProgress, Steps, StopLike

from .hu import MU_WATER, hu_to_mu, mu_to_hu
from .regrid import area_average
from .series import CTSlice
from .simulate_chunks import SimulationStopped, fine_bands, fine_image, project, projection_chunks
from .simulations import SIMULATIONS

#: Lower bound (counts) applied before the log transform.
COUNT_GUARD = 0.5
#: Rays averaged per detector bin by the honest simulation.
SUB_RAYS = 4
#: The honest simulation uses the source pixels when they are at least this many times finer than the
#: working grid; otherwise it upsamples the source to this many times the working grid.
MIN_REFINEMENT = 2


@dataclass
class Simulation:
    """Result of :func:`simulate`.

    Attributes
    ----------
    sinogram : float32 (n_views, det_count) measured line integrals (noisy if photons was given).
    geometry : the ``operators`` geometry of the working grid (what a reconstruction inverts).
    mu : float32 (H, W) ground-truth attenuation in 1/mm on the working grid.
    clean : float32 (n_views, det_count) noise-free line integrals.
    counts : float64 (n_views, det_count) detected counts, or None without noise.
    photons : incident photons per detector bin (I0), or None.
    pixel_size_mm : working-grid pixel size in mm (what a reconstruction's ``pixel_size_mm`` must be).
    simulation : "honest" or "same-grid" (see :data:`SIMULATIONS`).
    simulation_grid : (H, W) of the image that was projected.
    sub_rays : rays averaged per detector bin.
    """

    sinogram: torch.Tensor
    geometry: Any
    mu: torch.Tensor
    clean: torch.Tensor
    counts: torch.Tensor | None
    photons: float | None
    pixel_size_mm: float
    simulation: str = "same-grid"
    simulation_grid: tuple[int, int] = (0, 0)
    sub_rays: int = 1

    @property
    def reference_hu(self) -> np.ndarray:
        """float32 (H, W) HU of the object the scan sees on the working grid (``mu`` back in HU; below
        -1000 HU became air): the ground truth a reconstruction of this sinogram is scored against."""
        return np.asarray(mu_to_hu(self.mu.detach().cpu().numpy()), dtype=np.float32)

    @property
    def label(self) -> str:
        """The simulation's name as outputs show it ("honest" or "same-grid (inverse crime)")."""
        return SIMULATIONS[self.simulation]

    def record(self) -> dict[str, Any]:
        """JSON-able description: ``{"simulation": label, "simulation_grid": [H, W], "sub_rays": n}``."""
        return {"simulation": self.label, "simulation_grid": [int(n) for n in self.simulation_grid],
                "sub_rays": int(self.sub_rays)}


def make_generator(seed: int | torch.Generator | None) -> torch.Generator:
    """A private CPU generator: ``seed`` itself if it is one, seeded with ``seed``, or randomly seeded."""
    if isinstance(seed, torch.Generator):
        return seed
    generator = torch.Generator()
    if seed is None:
        generator.seed()  # non-deterministic seed for this generator only
    else:
        generator.manual_seed(int(seed))
    return generator


def simulate_counts(line_integrals: torch.Tensor | np.ndarray, photons: float | torch.Tensor,
                    electronic_noise: float = 0.0, seed: int | torch.Generator | None = None) -> torch.Tensor:
    """Detected counts for given line integrals: ``Poisson(I0 exp(-p)) + Normal(0, sigma^2)``.

    Parameters
    ----------
    line_integrals : line integrals ``p`` (dimensionless), any shape.
    photons : incident photons per bin ``I0`` (scalar or broadcastable tensor), > 0.
    electronic_noise : standard deviation ``sigma`` of additive Gaussian noise, in counts.
    seed : int, ``torch.Generator`` or None (random).

    Returns
    -------
    float64 tensor of counts, same shape as ``line_integrals`` (may be negative with electronic noise).
    """
    p = torch.as_tensor(line_integrals).detach().to("cpu", torch.float64)
    i0 = torch.as_tensor(photons, dtype=torch.float64)
    if not bool(torch.all(i0 > 0)) or not bool(torch.all(torch.isfinite(i0))):
        raise ValueError(f"photons must be positive and finite, got {photons!r}")
    if not math.isfinite(electronic_noise) or electronic_noise < 0:
        raise ValueError(f"electronic_noise must be >= 0 (counts), got {electronic_noise!r}")
    generator = make_generator(seed)
    expected = (i0 * torch.exp(-p)).expand_as(p).contiguous()
    counts = torch.poisson(expected, generator=generator)
    if electronic_noise > 0:
        counts = counts + electronic_noise * torch.randn(p.shape, dtype=torch.float64, generator=generator)
    return counts


def counts_to_line_integrals(counts: torch.Tensor, photons: float | torch.Tensor,
                             guard: float = COUNT_GUARD) -> torch.Tensor:
    """Log transform ``-log(max(counts, guard) / I0)`` (float64, same shape as ``counts``)."""
    i0 = torch.as_tensor(photons, dtype=torch.float64)
    return -torch.log(torch.clamp(counts.to(torch.float64), min=guard) / i0)


def _source_image(image_hu: np.ndarray | torch.Tensor | CTSlice, pixel_size_mm: float | None
                  ) -> tuple[np.ndarray, float]:
    """The source image as float64 (H, W) HU and its pixel size in mm, validated."""
    if isinstance(image_hu, CTSlice):
        if pixel_size_mm is None:
            pixel_size_mm = float(image_hu.spacing[1])
        image_hu = image_hu.hu
    pixel_size_mm = 1.0 if pixel_size_mm is None else float(pixel_size_mm)
    if not math.isfinite(pixel_size_mm) or pixel_size_mm <= 0:
        raise ValueError(f"pixel_size_mm must be positive, got {pixel_size_mm!r}")
    if isinstance(image_hu, torch.Tensor):
        image_hu = image_hu.detach().cpu().numpy()
    hu = np.asarray(image_hu, dtype=np.float64)
    if hu.ndim != 2:
        raise ValueError(f"image_hu must be a 2D (H, W) image, got shape {tuple(hu.shape)}")
    if not np.isfinite(hu).all():
        raise ValueError("image_hu contains NaN or infinite values")
    return hu, pixel_size_mm


def _working_shape(size: int | tuple[int, int] | None, source: tuple[int, int]) -> tuple[int, int]:
    if size is None:
        return source
    shape = (int(size), int(size)) if isinstance(size, int | np.integer) else tuple(int(s) for s in size)
    if len(shape) != 2 or min(shape) < 8:
        raise ValueError(f"size must be a side length or (H, W) of at least 8 pixels, got {size!r}")
    if not math.isclose(source[0] / shape[0], source[1] / shape[1], rel_tol=1e-9):
        raise ValueError(f"working grid {shape[0]}x{shape[1]} must keep the {source[0]}x{source[1]} image's "
                         "aspect ratio (square pixels)")
    return shape  # type: ignore[return-value]


def _fan_distances(source_mm: float | None, detector_mm: float | None, working: tuple[int, int],
                   pixel_size_mm: float) -> list[float | None]:
    """Fan-beam source and detector distances (mm, None: the geometry's default) in working pixels, validated."""
    distances: list[float | None] = []
    for name, value in (("source_distance_mm", source_mm), ("detector_distance_mm", detector_mm)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive distance in mm, got {value!r}")
        distances.append(None if value is None else float(value) / pixel_size_mm)
    half_diagonal_mm = math.hypot(*working) / 2 * pixel_size_mm
    if source_mm is not None and source_mm <= half_diagonal_mm:
        raise ValueError(f"source_distance_mm {source_mm:g} must exceed the half-diagonal of the field of view, "
                         f"{half_diagonal_mm:.1f} mm: the source would sit inside the image")
    return distances


def _beam(beam: str | None, geometry: str | None) -> str:
    """The kind of beam from ``beam=`` or its deprecated alias ``geometry=`` (warns; not both)."""
    if geometry is None:
        return "parallel" if beam is None else beam
    if beam is not None:
        raise TypeError("simulate() got both beam= and geometry= (its deprecated alias); give only beam=")
    warnings.warn("geometry= is deprecated; use beam=", DeprecationWarning, stacklevel=3)
    return geometry


def _make_geometry(beam: str, n_views: int, image_size: tuple[int, int], arc: float | None, det_count: int | None,
                   source_distance: float | None, detector_distance: float | None) -> Any:
    """The working ``operators`` geometry of a ``beam`` ("parallel" or "fan") scan; ``arc`` None: pi for a
    parallel beam, 2 pi for a fan beam."""
    if beam == "parallel":
        if source_distance is not None or detector_distance is not None:
            raise ValueError("source and detector distances apply to fan beams only (beam='fan')")
        arc = math.pi if arc is None else float(arc)
        return operators.ParallelBeam.sparse(n_views, image_size=image_size, arc=arc, det_count=det_count)
    if beam == "fan":
        arc = 2 * math.pi if arc is None else float(arc)
        return operators.FanBeam.sparse(n_views, image_size=image_size, arc=arc, det_count=det_count,
                                        source_distance=source_distance, detector_distance=detector_distance)
    raise ValueError(f"beam must be 'parallel' or 'fan', got {beam!r}")


def _refined(geometry: Any, grid: tuple[int, int], scale: float, sub_rays: int) -> Any:
    """``geometry`` on a ``scale`` times finer grid (lengths in the fine pixels) whose detector has
    ``sub_rays`` bins of 1/sub_rays the width in place of each bin: bin ``k``'s sub-bins are
    ``k * sub_rays ... k * sub_rays + sub_rays - 1``, centred within it."""
    det_count, spacing = geometry.det_count * sub_rays, geometry.det_spacing * scale / sub_rays
    if isinstance(geometry, operators.FanBeam):
        return operators.FanBeam(geometry.angles, det_count, geometry.source_distance * scale,
                                 geometry.detector_distance * scale, spacing, grid)
    return operators.ParallelBeam(geometry.angles, det_count, spacing, grid)


def simulation_grid(source_shape: tuple[int, int], working: tuple[int, int]) -> tuple[int, int]:
    """(H, W) of the image the honest simulation projects: the source's own when it is at least
    ``MIN_REFINEMENT`` times finer than the ``working`` grid, else ``MIN_REFINEMENT`` times the working grid."""
    if min(s / w for s, w in zip(source_shape, working, strict=True)) >= MIN_REFINEMENT:
        return int(source_shape[0]), int(source_shape[1])
    return MIN_REFINEMENT * working[0], MIN_REFINEMENT * working[1]


def _honest_projections(mu_source: np.ndarray, geometry: Any, pixel_size_mm: float, sub_rays: int, steps: Steps
                        ) -> tuple[torch.Tensor, tuple[int, int]]:
    """Line integrals (float64 (n_views, det_count)) of the working ``geometry`` simulated from the finest
    image (see the module docstring), and the simulation grid. ``pixel_size_mm`` is the working pixel's."""
    working = geometry.image_size
    grid = simulation_grid(mu_source.shape, working)
    scale = grid[1] / working[1]
    image = fine_image(mu_source, grid, steps)
    sub = project(_refined(geometry, grid, scale, sub_rays), "line", image, steps)
    del image  # the finest image is the largest array: release it before the rest
    sub = sub.to(torch.float64) * (pixel_size_mm / scale)
    return sub.reshape(geometry.n_angles, geometry.det_count, sub_rays).mean(-1), grid  # type: ignore[return-value]


def _steps(simulation: str, source: tuple[int, int], geometry: Any, sub_rays: int, noisy: bool,
           callback: PhaseCallback, stop: StopLike) -> Steps:
    """The chunks of one simulation: the ground truth, the finer image's bands (honest), the projection's
    chunks of rays, the noise."""
    if simulation == "honest":
        grid = simulation_grid(source, geometry.image_size)
        projected = _refined(geometry, grid, grid[1] / geometry.image_size[1], sub_rays)
        total = len(fine_bands(source, grid)) + projection_chunks(projected)
    else:
        total = projection_chunks(geometry)
    return Steps("simulation", 1 + total + int(noisy), callback, stop, SimulationStopped)


def simulate(image_hu: np.ndarray | torch.Tensor | CTSlice, n_views: int, arc: float | None = None,
             det_count: int | None = None, photons: float | None = None, electronic_noise: float = 0.0,
             seed: int | torch.Generator | None = None, beam: str | None = None,
             pixel_size_mm: float | None = None, mu_water: float = MU_WATER, size: int | tuple[int, int] | None = None,
             simulation: str = "honest", sub_rays: int = SUB_RAYS, source_distance_mm: float | None = None,
             detector_distance_mm: float | None = None, geometry: str | None = None, callback: PhaseCallback = None,
             stop: StopLike = None) -> Simulation:
    """Simulate a sparse-view sinogram of an HU image (see the module docstring for the two simulations).

    Parameters
    ----------
    image_hu : source (H, W) image in HU (numpy, torch) or a :class:`CTSlice`, ideally at its native
        resolution: the honest simulation uses its pixels when they are at least 2x finer than ``size``.
    n_views : number of evenly spaced views.
    arc : angular range in radians; default pi for ``"parallel"`` and 2 pi (a full turn) for ``"fan"``.
    det_count : detector bins; default covers the working grid (see ``operators`` ``*.sparse``).
    photons : incident photons per bin ``I0``; None for noise-free line integrals.
    electronic_noise : std of additive Gaussian noise in counts (only with ``photons``).
    seed : int, ``torch.Generator`` or None (random) for the noise.
    beam : ``"parallel"`` (ParallelBeam; None means this) or ``"fan"`` (FanBeam, flat detector).
    pixel_size_mm : source pixel size in mm; default the CTSlice's column spacing, else 1.0.
    mu_water : water attenuation in 1/mm for the HU -> mu conversion.
    size : working grid, a side length or (H, W) with the source's aspect ratio; default the source's shape.
    simulation : ``"honest"`` (default) or ``"same-grid"`` (the inverse crime, for comparison only).
    sub_rays : rays averaged per detector bin by the honest simulation (>= 1).
    source_distance_mm, detector_distance_mm : fan beam only: source and detector distances from the
        rotation centre in mm; default twice and once the working grid's diagonal.
    geometry : deprecated alias of ``beam`` (``DeprecationWarning``; ``TypeError`` together with ``beam``).
    callback : called with a :class:`operators.progress.PhaseProgress` (phase ``"simulation"``, ``done`` of
        ``total`` chunks) after the ground truth, each band of the finer image, each chunk of projected rays
        (about 0.1-0.3 s of work each) and the noise.
    stop : a ``threading.Event`` or zero-argument callable (:data:`operators.progress.StopLike`), checked before
        the work and after every report: once set, :class:`SimulationStopped` is raised and the simulation's
        arrays are released.

    Returns
    -------
    Simulation with ``sinogram`` float32 (n_views, det_count), the working ``geometry``, ground truth
    ``mu`` (1/mm) on the working grid, ``pixel_size_mm`` of the working grid, ...
    """
    try:
        return _simulate(image_hu, n_views, arc, det_count, photons, electronic_noise, seed, _beam(beam, geometry),
                         pixel_size_mm, mu_water, size, simulation, sub_rays, source_distance_mm,
                         detector_distance_mm, callback, stop)
    except SimulationStopped as exc:
        stopped = exc
    raise stopped.with_traceback(None)  # raised here, so no traceback keeps the simulation's arrays alive


def _simulate(image_hu: np.ndarray | torch.Tensor | CTSlice, n_views: int, arc: float | None, det_count: int | None,
              photons: float | None, electronic_noise: float, seed: int | torch.Generator | None, beam: str,
              pixel_size_mm: float | None, mu_water: float, size: int | tuple[int, int] | None, simulation: str,
              sub_rays: int, source_distance_mm: float | None, detector_distance_mm: float | None,
              callback: PhaseCallback, stop: StopLike) -> Simulation:
    """:func:`simulate` once the deprecated ``geometry=`` is resolved into ``beam``."""
    hu, source_pixel_mm = _source_image(image_hu, pixel_size_mm)
    if simulation not in SIMULATIONS:
        raise ValueError(f"simulation must be one of {', '.join(map(repr, SIMULATIONS))}, got {simulation!r}")
    if int(sub_rays) != sub_rays or sub_rays < 1:
        raise ValueError(f"sub_rays must be an integer >= 1, got {sub_rays!r}")
    if photons is None and electronic_noise:
        raise ValueError("electronic_noise needs photons (the incident photon count I0)")
    working = _working_shape(size, hu.shape)
    working_pixel_mm = source_pixel_mm * hu.shape[1] / working[1]
    distances = _fan_distances(source_distance_mm, detector_distance_mm, working, working_pixel_mm)
    geom = _make_geometry(beam, n_views, working, arc, det_count, *distances)
    steps = _steps(simulation, hu.shape, geom, int(sub_rays), photons is not None, callback, stop)
    steps.check()
    mu_source = hu_to_mu(hu, mu_water)
    mu = torch.from_numpy(area_average(mu_source, working)).to(torch.float32)
    steps.advance()
    if simulation == "honest":
        clean64, grid = _honest_projections(mu_source, geom, working_pixel_mm, int(sub_rays), steps)
        clean, rays = clean64.to(torch.float32), int(sub_rays)
    else:
        model = "line" if isinstance(geom, operators.FanBeam) else "linear"  # Radon(geom)'s default
        clean, grid, rays = (project(geom, model, mu, steps) * working_pixel_mm).to(torch.float32), working, 1
    counts = None
    sinogram = clean
    if photons is not None:
        counts = simulate_counts(clean, photons, electronic_noise, seed)
        sinogram = counts_to_line_integrals(counts, photons).to(torch.float32)
        steps.advance()
    return Simulation(sinogram=sinogram, geometry=geom, mu=mu, clean=clean, counts=counts,
                      photons=None if photons is None else float(photons), pixel_size_mm=working_pixel_mm,
                      simulation=simulation, simulation_grid=grid, sub_rays=rays)


__all__ = ["COUNT_GUARD", "MIN_REFINEMENT", "SIMULATIONS", "SUB_RAYS", "PhaseProgress", "Simulation",
           "SimulationStopped", "counts_to_line_integrals",
           "make_generator", "simulate", "simulate_counts", "simulation_grid"]
