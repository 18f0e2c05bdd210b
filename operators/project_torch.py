"""The matrix-free projector in vectorised torch, for any device (the path used on CUDA).

Rays are processed in chunks whose intermediates fit a byte budget. For each chunk every (ray, strip)
pair yields two pixel indices and weights with the formulas of :mod:`operators.project_numba`; the
forward projection gathers the pixels, the adjoint scatters into them with ``index_add_`` from the
same indices and weights, so it is the exact transpose.
"""

from __future__ import annotations

import torch

from sparsect.operators.rays import StripRays


def pixel_pairs(rays: StripRays, start: int, stop: int, linear: bool, dtype: torch.dtype
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat pixel indices (row * W + col) and weights of rays ``start:stop``, each (R, 2 * strips).

    Positions are computed in float64 (on the rays' device) and the weights cast to ``dtype``. Entries
    outside the image get index ``H * W`` and weight 0.
    """
    height, width = rays.height, rays.width
    steep = rays.steep[start:stop, None]
    offset, slope = rays.offset[start:stop, None], rays.slope[start:stop, None]
    strips = torch.arange(max(height, width), dtype=torch.float64, device=offset.device)[None, :]
    centre = offset + slope * strips
    if linear:
        lower = torch.floor(centre)
        share = 1 - (centre - lower)
    else:
        half = 0.5 * slope.abs()
        begin = centre - half
        lower = torch.floor(begin + 0.5)
        spread = torch.where(half > 0, 2 * half, torch.ones_like(half))
        share = torch.where(half > 0, ((lower + 0.5 - begin) / spread).clamp(max=1.0), torch.ones_like(begin))
    across = torch.stack([lower, lower + 1], -1)
    weight = torch.stack([share, 1 - share], -1) * rays.path[start:stop, None, None]
    n_strips = torch.where(steep, height, width)
    n_across = torch.where(steep, width, height)[..., None]
    inside = (across >= 0) & (across < n_across) & (strips < n_strips)[..., None]
    across = across.clamp(0, max(height, width)).long()
    strip = strips.long()[..., None]
    index = torch.where(steep[..., None], strip * width + across, across * width + strip)
    index = torch.where(inside, index, height * width).reshape(index.shape[0], -1)
    return index, torch.where(inside, weight, 0.0).to(dtype).reshape(index.shape[0], -1)


def rays_per_chunk(rays: StripRays, n_batch: int, itemsize: int, chunk_bytes: int) -> int:
    """How many rays one chunk may hold so that its intermediates stay near ``chunk_bytes``."""
    entries = 2 * max(rays.height, rays.width)
    # float64 positions and int64 indices (a few live at once), weights, and B gathered values.
    per_ray = entries * (6 * 8 + 2 * itemsize + 2 * n_batch * itemsize)
    return max(1, min(rays.n_rays, chunk_bytes // per_ray))


def project(images: torch.Tensor, rays: StripRays, linear: bool, chunk_bytes: int) -> torch.Tensor:
    """Forward projection of ``images`` (B, H * W) to (B, R) sinograms, same dtype and device."""
    n_batch = images.shape[0]
    padded = torch.cat([images, images.new_zeros(n_batch, 1)], 1)  # index H * W reads a zero
    chunk = rays_per_chunk(rays, n_batch, images.element_size(), chunk_bytes)
    parts = []
    for start in range(0, rays.n_rays, chunk):
        stop = min(rays.n_rays, start + chunk)
        index, weight = pixel_pairs(rays, start, stop, linear, images.dtype)
        values = padded.index_select(1, index.reshape(-1)).reshape(n_batch, *index.shape)
        parts.append((values * weight).sum(-1))
    return torch.cat(parts, 1)


def backproject(sinograms: torch.Tensor, rays: StripRays, linear: bool, chunk_bytes: int) -> torch.Tensor:
    """Adjoint of :func:`project`: (B, R) sinograms to (B, H * W) images, same dtype and device."""
    n_batch, n_pixels = sinograms.shape[0], rays.height * rays.width
    padded = sinograms.new_zeros(n_batch, n_pixels + 1)  # index H * W collects the outside entries
    chunk = rays_per_chunk(rays, n_batch, sinograms.element_size(), chunk_bytes)
    for start in range(0, rays.n_rays, chunk):
        stop = min(rays.n_rays, start + chunk)
        index, weight = pixel_pairs(rays, start, stop, linear, sinograms.dtype)
        values = sinograms[:, start:stop, None] * weight
        padded.index_add_(1, index.reshape(-1), values.reshape(n_batch, -1))
    return padded[:, :n_pixels]

