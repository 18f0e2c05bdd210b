"""The large steps of :func:`data.simulate` in chunks, so that it reports progress and can stop between them.

Each chunk is at most about :data:`operators.system_matrix.WORK_PER_CHECK` strip steps of projection or
:data:`PIXELS_PER_BAND` pixels of the finer image (about 0.1-0.3 s on two cores); the results are the same,
bit for bit, as those of the whole-image calls they replace (:func:`data.regrid.upsample_bilinear` and
``operators.Radon(geometry)(image)`` on the CPU).
"""

from __future__ import annotations

import numpy as np
import torch

from sparsect.operators.backends import TorchBackend
from sparsect.operators.geometry import Geometry
from sparsect.operators.progress import PhaseStopped, Steps
from sparsect.operators.radon import DEFAULT_CHUNK_BYTES
from sparsect.operators.system_matrix import ray_chunks, ray_ranges

#: Pixels of the finer image computed between two progress reports.
PIXELS_PER_BAND = 1 << 20


class SimulationStopped(PhaseStopped):
    """A stop request ended :func:`data.simulate` between two chunks (phase ``"simulation"``); no result exists
    and the simulation's arrays are released (the exception holds no reference to them)."""


def _axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every output pixel of an axis: the lower input pixel, the clamped upper one and the lower one's
    weight, with the arithmetic of ``scipy.ndimage.zoom(order=1, mode="nearest", grid_mode=True)``."""
    zoom = np.divide(n_in, n_out)
    centre = (np.arange(n_out, dtype=np.float64) + 0.5) * zoom - 0.5  # not clamped: edge pixels are repeated
    lower = np.floor(centre)
    weight = 1.0 - (centre - lower)
    lower = lower.astype(np.intp)
    return np.clip(lower, 0, n_in - 1), np.clip(lower + 1, 0, n_in - 1), weight


def upsample_band(image: np.ndarray, shape: tuple[int, int], rows: slice) -> np.ndarray:
    """Rows ``rows`` of :func:`data.regrid.upsample_bilinear` ``(image, shape)``, bit for bit (float64)."""
    top, bottom, wy = (a[rows] for a in _axis(image.shape[0], shape[0]))
    left, right, wx = _axis(image.shape[1], shape[1])
    wy, wy1, wx1 = wy[:, None], (1.0 - wy)[:, None], 1.0 - wx
    out = 0.0 + image[top][:, left] * wy * wx  # the order of scipy's sum: (0, 0), (0, 1), (1, 0), (1, 1)
    out += image[top][:, right] * wy * wx1
    out += image[bottom][:, left] * wy1 * wx
    out += image[bottom][:, right] * wy1 * wx1
    return np.clip(out, image.min(), image.max(), out=out)


def fine_bands(source: tuple[int, int], grid: tuple[int, int]) -> list[slice]:
    """Row bands of the ``grid`` image made from a ``source``-shaped one (one band when it is the source)."""
    if tuple(source) == tuple(grid):
        return [slice(0, grid[0])]
    per = max(1, PIXELS_PER_BAND // grid[1])
    return [slice(top, min(grid[0], top + per)) for top in range(0, grid[0], per)]


def fine_image(mu_source: np.ndarray, grid: tuple[int, int], steps: Steps) -> torch.Tensor:
    """float32 (H, W) ``grid`` image of ``mu_source`` (itself, or upsampled bilinearly), band by band, each
    advancing ``steps``."""
    if tuple(mu_source.shape) == tuple(grid):
        image = torch.from_numpy(mu_source).to(torch.float32)
        steps.advance()
        return image
    image = torch.empty(grid, dtype=torch.float32)
    for rows in fine_bands(mu_source.shape, grid):
        image[rows] = torch.from_numpy(upsample_band(mu_source, grid, rows)).to(torch.float32)
        steps.advance()
    return image


def projection_chunks(geometry: Geometry) -> int:
    """How many chunks :func:`project` walks for ``geometry``."""
    return len(ray_ranges(geometry.n_angles * geometry.det_count, geometry.image_size))


def project(geometry: Geometry, model: str, image: torch.Tensor, steps: Steps) -> torch.Tensor:
    """``operators.Radon(geometry, model=model)(image)`` for a CPU (H, W) image, chunk of rays by chunk of rays
    (each advancing ``steps``): (n_angles, det_count) in the image's dtype."""
    backend = TorchBackend(geometry, model, DEFAULT_CHUNK_BYTES, 0)
    rays = backend.rays()
    out = image.new_empty(rays.n_rays)
    batch = image.reshape(1, *image.shape)
    for first, last in ray_chunks(rays):
        out[first:last] = backend.project_rays(batch, first, last)[0]
        steps.advance()
    return out.reshape(geometry.sinogram_shape)


__all__ = ["PIXELS_PER_BAND", "SimulationStopped", "fine_bands", "fine_image", "project", "projection_chunks",
           "upsample_band"]
