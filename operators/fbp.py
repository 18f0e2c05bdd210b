"""Filtered backprojection for parallel and flat-detector fan beams.

The backprojection is pixel-driven: every pixel takes the linearly interpolated filtered value at
its detector position in each view, times the FBP weight (the angular step, and for fan beams the
1 / U^2 distance weight). Those weights are stored once per geometry as a CSR matrix
(pixels x rays), so an FBP costs one sparse product after the ramp filter, on CPU and CUDA.
"""

from __future__ import annotations

import math

import torch

from operators.filters import filter_sinogram
from operators.geometry import FanBeam, Geometry, ParallelBeam
from operators.system_matrix import MATRICES, csr_matrix

# Views are processed in groups so the (views x pixels) intermediates stay near this many entries.
_SAMPLES_PER_CHUNK = 1 << 22


def _angular_scale(geometry: Geometry) -> float:
    """Weight of one view: the angular step, at most pi (parallel) or 2 pi (fan, halved) in total."""
    total = geometry.angular_weight() * geometry.n_angles
    if isinstance(geometry, FanBeam):
        return min(total, 2 * math.pi) / geometry.n_angles / 2
    return min(total, math.pi) / geometry.n_angles


def backprojection_matrix(geometry: Geometry, device: torch.device | str = "cpu") -> torch.Tensor:
    """The (H * W, n_angles * det_count) float64 CSR matrix of weighted pixel-driven backprojection."""
    height, width = geometry.image_size
    y = (height - 1) / 2 - torch.arange(height, dtype=torch.float64, device=device)
    x = torch.arange(width, dtype=torch.float64, device=device) - (width - 1) / 2
    yy, xx = (v.reshape(-1, 1) for v in torch.meshgrid(y, x, indexing="ij"))
    angles = geometry.angles.to(device)
    det_count, n_pixels = geometry.det_count, height * width
    scale = _angular_scale(geometry)
    per_chunk = max(1, _SAMPLES_PER_CHUNK // n_pixels)
    columns, values = [], []
    for start in range(0, geometry.n_angles, per_chunk):
        theta = angles[None, start:start + per_chunk]
        cos, sin = torch.cos(theta), torch.sin(theta)
        along = xx * cos + yy * sin  # (pixels, views): position along the detector axis through the centre
        weight = torch.full_like(along, scale)
        if isinstance(geometry, FanBeam):
            distance = geometry.source_distance - (xx * sin - yy * cos)  # source to pixel, along the axis
            along = along * (geometry.source_distance + geometry.detector_distance) / distance
            weight = weight * (geometry.source_distance / distance) ** 2
        bins = along / geometry.det_spacing + (det_count - 1) / 2
        lower = torch.floor(bins)
        frac = bins - lower
        view = torch.arange(start, start + theta.shape[1], device=device)[None, :, None]
        bin_index = torch.stack([lower, lower + 1], -1)
        inside = (bin_index >= 0) & (bin_index < det_count)
        columns.append(torch.where(inside, view * det_count + bin_index.long().clamp(0, det_count - 1), -1))
        values.append(torch.where(inside, torch.stack([1 - frac, frac], -1) * weight[..., None], 0.0))
    # Entries of one pixel are ordered by view, then bin: already sorted CSR columns.
    col = torch.cat([c.reshape(n_pixels, -1) for c in columns], 1)
    val = torch.cat([v.reshape(n_pixels, -1) for v in values], 1)
    keep = (col >= 0) & (val != 0)
    crow = torch.zeros(n_pixels + 1, dtype=torch.int64, device=device)
    crow[1:] = torch.cumsum(keep.sum(1), 0)
    return csr_matrix(crow, col[keep], val[keep], (n_pixels, geometry.n_angles * det_count))


def _backprojector(geometry: Geometry, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return MATRICES.typed(("fbp", geometry.key()), dtype, device, lambda: backprojection_matrix(geometry, device))


def backproject_filtered(filtered: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """Weighted backprojection of ramp-filtered sinograms (N, n_angles, det_count) -> (N, H, W)."""
    matrix = _backprojector(geometry, filtered.dtype, filtered.device)
    columns = filtered.reshape(filtered.shape[0], -1).t().contiguous()
    return (matrix @ columns).t().reshape(filtered.shape[0], *geometry.image_size)


def fbp(sinogram: torch.Tensor, geometry: Geometry, filter: str = "ram-lak") -> torch.Tensor:
    """Filtered backprojection of (N, n_angles, det_count) -> (N, H, W) with the object's true values.

    Fan-beam data are cosine-weighted and filtered on the virtual detector through the rotation centre.
    Views spanning less than a half turn (parallel) or a full turn (fan) are weighted by their actual
    angular step, without short-scan (Parker) weights.
    """
    if isinstance(geometry, FanBeam):
        scale = geometry.source_distance / (geometry.source_distance + geometry.detector_distance)
        virtual_u = geometry.detector_positions().to(sinogram.device, sinogram.dtype) * scale
        cosine = geometry.source_distance / torch.sqrt(geometry.source_distance ** 2 + virtual_u ** 2)
        filtered = filter_sinogram(sinogram * cosine, geometry.det_spacing * scale, filter)
    elif isinstance(geometry, ParallelBeam):
        filtered = filter_sinogram(sinogram, geometry.det_spacing, filter)
    else:
        raise TypeError(f"no FBP for geometry {type(geometry).__name__}")
    return backproject_filtered(filtered, geometry)
