"""The two TV blends of a network fit: "tv_blend" averages the fitted image with TV's; "band_blend" blends them by
spatial frequency (mostly TV at coarse scales, mostly the network at fine ones; :mod:`reconstruct.blend`).

The two err in different ways (TV: flat patches and lost texture; the network: ringing at strong edges), so their
blend is closer to the object than either on the bundled samples (docs/BENCHMARKS.md). Under the honest simulation
TV's errors are the smaller ones at coarse scales and the networks' at fine ones (docs/BENCHMARKS.md, "The TV blend
by frequency band"). TV is :func:`reconstruct.tv_solver.tv` with its default, noise-aware weight.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import numpy as np
import torch

from sparsect.operators import Radon
from sparsect.reconstruct import blend
from sparsect.reconstruct.ensemble import member_spread
from sparsect.reconstruct.fit_result import FitProgress, FitResult
from sparsect.reconstruct.result import IterationProgress, StopLike
from sparsect.reconstruct.tv_solver import tv

#: The network's share of the "tv_blend" image (the rest is TV's).
TV_BLEND_WEIGHT = 0.5


@dataclasses.dataclass(frozen=True)
class BandShares:
    """A network's share of the "band_blend" image: ``coarse`` well below ``cutoff`` (cycles per pixel), ``fine``
    well above it, a smooth step of ``transition`` octaves either side (:func:`reconstruct.blend.band_response`)."""

    coarse: float
    fine: float
    cutoff: float
    transition: float


#: Each network's band shares, chosen for it on the two bundled real slices (``benchmarks/blend_shares.py``;
#: docs/BENCHMARKS.md, "Band shares per network"): WIRE's and SIREN's coarse-scale errors are larger than LRNN's,
#: so they leave those scales to TV.
BAND_BLEND_SHARES: dict[str, BandShares] = {
    "lrnn": BandShares(coarse=0.25, fine=0.75, cutoff=0.25, transition=0.5),
    "siren": BandShares(coarse=0.0, fine=0.75, cutoff=0.35, transition=1.0),
    "wire": BandShares(coarse=0.0, fine=0.75, cutoff=0.35, transition=1.0),
}


#: Band shares on larger working grids, by the grid's largest side in pixels: a grid at least that large uses the
#: entry of the largest such side; smaller grids use :data:`BAND_BLEND_SHARES`. Chosen on the bundled slices for the
#: recommended fit, whose networks see these grids through a 128² one ("coarse_grid"; docs/BENCHMARKS.md, "Networks
#: at the scan's own resolution").
LARGE_GRID_BAND_SHARES: dict[int, dict[str, BandShares]] = {
    256: {"lrnn": BandShares(coarse=0.0, fine=0.75, cutoff=0.25, transition=1.0)},
}


def band_shares(method: str, image_shape: tuple[int, ...]) -> BandShares:
    """Network ``method``'s band shares for images of ``image_shape`` (..., H, W): its entry in
    :data:`LARGE_GRID_BAND_SHARES` for the largest side not above the grid's, else :data:`BAND_BLEND_SHARES`."""
    side = max(image_shape[-2:])
    for size in sorted(LARGE_GRID_BAND_SHARES, reverse=True):
        if side >= size and method in LARGE_GRID_BAND_SHARES[size]:
            return LARGE_GRID_BAND_SHARES[size][method]
    return BAND_BLEND_SHARES[method]


def band_blend_response(method: str, image_shape: tuple[int, ...]) -> np.ndarray:
    """Network ``method``'s "band_blend" share for images of ``image_shape`` (..., H, W): its :func:`band_shares`
    as :func:`reconstruct.blend.band_response` of the (2H, 2W) grid that :func:`reconstruct.blend.blend` filters."""
    rows, cols = image_shape[-2:]
    return blend.band_response((2 * rows, 2 * cols), **dataclasses.asdict(band_shares(method, image_shape)))


def blend_with_tv(result: FitResult, sinogram: torch.Tensor, radon: Radon, photons: float | None,
                  stop: StopLike, callback: Callable[[FitProgress], None] | None, band: str | None,
                  members: tuple[np.ndarray, np.ndarray] | None) -> None:
    """Replace ``result``'s images by their blend with TV's of ``sinogram``: ``TV_BLEND_WEIGHT`` of the network
    at every frequency, or by frequency band with network ``band``'s :data:`BAND_BLEND_SHARES` (None: not).
    ``uncertainty_hu`` becomes the spread of the blended ensemble ``members`` (the ensemble's HU images
    (n, members, H, W) and which are kept (n, members); None without an ensemble, which has no map).
    TV's iterations are reported to ``callback`` as phase "tv_blend"."""
    pixel_size_mm = float(result.settings["pixel_size_mm"])
    start = time.perf_counter()

    def report(step: IterationProgress) -> None:
        callback(FitProgress(step.iteration, step.iterations, step.loss, result.seconds + time.perf_counter() - start,
                             lr=0.0, phase="tv_blend"))

    tv_result = tv(sinogram, radon, photons=photons, pixel_size_mm=pixel_size_mm, stop=stop,
                   callback=report if callback is not None else None)
    if band is not None:
        shares = band_shares(band, result.image_hu.shape)
        share: float | np.ndarray = band_blend_response(band, result.image_hu.shape)
        result.settings["band_blend"] = dict(coarse=shares.coarse, fine=shares.fine,
                                             cutoff_cycles_per_pixel=shares.cutoff,
                                             transition_octaves=shares.transition)
        how = (f"by frequency band, network share {shares.coarse:g} below and {shares.fine:g} above "
               f"{shares.cutoff:g} cycles/pixel")
    else:
        share = TV_BLEND_WEIGHT
        result.settings["tv_blend_weight"] = TV_BLEND_WEIGHT
        how = f"network share {TV_BLEND_WEIGHT:g}"

    def blended(network: np.ndarray | torch.Tensor, tv_image: np.ndarray | torch.Tensor) -> np.ndarray:
        network = np.asarray(network.detach().cpu() if isinstance(network, torch.Tensor) else network)
        tv_image = np.asarray(tv_image.detach().cpu() if isinstance(tv_image, torch.Tensor) else tv_image)
        return blend.blend(tv_image.reshape(network.shape), network, share)

    result.image_hu = blended(result.image_hu, tv_result.image_hu).astype(np.float32)
    result.mu = torch.from_numpy(blended(result.mu, tv_result.mu)).to(result.mu)
    result.image = torch.from_numpy(blended(result.image, tv_result.mu * pixel_size_mm)).to(result.image)
    if members is not None:
        members_hu, kept = members
        spread = member_spread(members_hu, kept, lambda deviations: blend.blend(np.zeros_like(deviations),
                                                                                deviations, share))
        result.uncertainty_hu = spread.reshape(result.uncertainty_hu.shape).astype(np.float32)
    result.timings["tv_blend_seconds"] = tv_result.seconds
    result.seconds += tv_result.seconds
    result.events.append(f"blended with TV ({tv_result.iterations} iterations), {how}")


__all__ = ["BAND_BLEND_SHARES", "LARGE_GRID_BAND_SHARES", "TV_BLEND_WEIGHT", "BandShares", "band_blend_response",
           "band_shares", "blend_with_tv"]
