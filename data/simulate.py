"""Simulate (sparse-view) CT measurements of an HU image with optional Poisson + Gaussian noise.

Units: the image is converted to linear attenuation ``mu`` (1/mm, :func:`data.hu_to_mu`); the
projector integrates over pixel-unit path lengths, so line integrals are ``A(mu) * pixel_size_mm``
(dimensionless, attenuation x mm).

Noise model (when ``photons`` is given): transmitted counts
``N ~ Poisson(I0 * exp(-p)) + Normal(0, electronic_noise**2)`` and the measured line integral is
``-log(max(N, COUNT_GUARD) / I0)``, where ``COUNT_GUARD = 0.5`` counts keeps zero or negative counts
finite (capping ``p`` at ``log(2 * I0)``). Randomness comes only from a private ``torch.Generator``:
the same ``seed`` gives the same result and the global RNG state is never used or changed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .hu import MU_WATER, hu_to_mu, mu_to_hu
from .series import CTSlice

#: Lower bound (counts) applied before the log transform.
COUNT_GUARD = 0.5


@dataclass
class Simulation:
    """Result of :func:`simulate`.

    Attributes
    ----------
    sinogram : float32 (n_views, det_count) measured line integrals (noisy if photons was given).
    geometry : the ``operators`` geometry used.
    mu : float32 (H, W) attenuation image in 1/mm.
    clean : float32 (n_views, det_count) noise-free line integrals.
    counts : float64 (n_views, det_count) detected counts, or None without noise.
    photons : incident photons per detector bin (I0), or None.
    pixel_size_mm : pixel size used to scale path lengths.
    """

    sinogram: torch.Tensor
    geometry: Any
    mu: torch.Tensor
    clean: torch.Tensor
    counts: torch.Tensor | None
    photons: float | None
    pixel_size_mm: float

    @property
    def reference_hu(self) -> np.ndarray:
        """float32 (H, W) HU of the object the scan sees (``mu`` back in HU; below -1000 HU became air):
        the ground truth a reconstruction of this sinogram is scored against."""
        return np.asarray(mu_to_hu(self.mu.detach().cpu().numpy()), dtype=np.float32)


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


def _make_geometry(kind: str, n_views: int, image_size: tuple[int, int], arc: float,
                   det_count: int | None) -> Any:
    from sparsect import operators  # physics package; imported lazily so reading DICOM does not need it

    if kind == "parallel":
        return operators.ParallelBeam.sparse(n_views, image_size=image_size, arc=arc, det_count=det_count)
    if kind == "fan":
        return operators.FanBeam.sparse(n_views, image_size=image_size, arc=arc, det_count=det_count)
    raise ValueError(f"geometry must be 'parallel' or 'fan', got {kind!r}")


def simulate(image_hu: np.ndarray | torch.Tensor | CTSlice, n_views: int, arc: float | None = None,
             det_count: int | None = None, photons: float | None = None, electronic_noise: float = 0.0,
             seed: int | torch.Generator | None = None, geometry: str = "parallel",
             pixel_size_mm: float | None = None, mu_water: float = MU_WATER) -> Simulation:
    """Simulate a sparse-view sinogram of an HU image.

    Parameters
    ----------
    image_hu : (H, W) image in HU (numpy, torch) or a :class:`CTSlice`.
    n_views : number of evenly spaced views.
    arc : angular range in radians; default pi for ``"parallel"`` and 2 pi for ``"fan"``.
    det_count : detector bins; default covers the image (see ``operators`` ``*.sparse``).
    photons : incident photons per bin ``I0``; None for noise-free line integrals.
    electronic_noise : std of additive Gaussian noise in counts (only with ``photons``).
    seed : int, ``torch.Generator`` or None (random) for the noise.
    geometry : ``"parallel"`` (ParallelBeam) or ``"fan"`` (FanBeam, flat detector, default distances).
    pixel_size_mm : pixel size in mm; default the CTSlice's column spacing, else 1.0.
    mu_water : water attenuation in 1/mm for the HU -> mu conversion.

    Returns
    -------
    Simulation with ``sinogram`` float32 (n_views, det_count), ``geometry``, ``mu`` (1/mm), ...
    """
    from sparsect import operators

    if isinstance(image_hu, CTSlice):
        if pixel_size_mm is None:
            pixel_size_mm = float(image_hu.spacing[1])
        image_hu = image_hu.hu
    pixel_size_mm = 1.0 if pixel_size_mm is None else float(pixel_size_mm)
    if not math.isfinite(pixel_size_mm) or pixel_size_mm <= 0:
        raise ValueError(f"pixel_size_mm must be positive, got {pixel_size_mm!r}")
    hu = torch.as_tensor(np.asarray(image_hu) if not isinstance(image_hu, torch.Tensor) else image_hu)
    hu = hu.detach().to("cpu", torch.float32)
    if hu.ndim != 2:
        raise ValueError(f"image_hu must be a 2D (H, W) image, got shape {tuple(hu.shape)}")
    if not bool(torch.isfinite(hu).all()):
        raise ValueError("image_hu contains NaN or infinite values")
    if photons is None and electronic_noise:
        raise ValueError("electronic_noise needs photons (the incident photon count I0)")
    if arc is None:
        arc = 2 * math.pi if geometry == "fan" else math.pi
    geom = _make_geometry(geometry, n_views, tuple(hu.shape), float(arc), det_count)
    mu = hu_to_mu(hu, mu_water)
    clean = (operators.Radon(geom)(mu) * pixel_size_mm).to(torch.float32)
    counts = None
    sinogram = clean
    if photons is not None:
        counts = simulate_counts(clean, photons, electronic_noise, seed)
        sinogram = counts_to_line_integrals(counts, photons).to(torch.float32)
    return Simulation(sinogram=sinogram, geometry=geom, mu=mu, clean=clean, counts=counts,
                      photons=None if photons is None else float(photons), pixel_size_mm=pixel_size_mm)


__all__ = ["COUNT_GUARD", "Simulation", "counts_to_line_integrals", "make_generator", "simulate",
           "simulate_counts"]
