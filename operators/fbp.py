"""Filtered backprojection for parallel and flat-detector fan beams (pixel-driven, linear interpolation)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from operators.filters import filter_sinogram
from operators.geometry import FanBeam, Geometry, ParallelBeam

# Views are backprojected in groups so the (views x pixels) sample buffer stays near this many values.
_SAMPLES_PER_CHUNK = 1 << 24


def _pixel_centres(geometry: Geometry, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, ...]:
    height, width = geometry.image_size
    y = (height - 1) / 2 - torch.arange(height, dtype=dtype, device=device)
    x = torch.arange(width, dtype=dtype, device=device) - (width - 1) / 2
    yy, xx = torch.meshgrid(y, x, indexing="ij")
    return xx.reshape(-1), yy.reshape(-1)


def _interpolate_views(sinogram: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
    """Sample (N, views, det) at fractional detector ``bins`` (views, P) -> (N, views, P), zero outside."""
    n, views, det_count = sinogram.shape
    grid_x = 2 * bins / (det_count - 1) - 1 if det_count > 1 else torch.zeros_like(bins)
    grid = torch.stack([grid_x, torch.zeros_like(grid_x)], -1)[:, None]  # (views, 1, P, 2)
    # Each view is its own one-row image with the N sinograms as channels, so views never mix.
    images = sinogram.permute(1, 0, 2).reshape(views, n, 1, det_count)
    samples = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return samples[:, :, 0, :].permute(1, 0, 2)


def backproject_filtered(filtered: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """Weighted pixel-driven backprojection of an already ramp-filtered sinogram.

    ``filtered`` is (N, n_angles, det_count); returns (N, H, W). Parallel beam: sum of views times the
    angular step (at most pi / n_angles when views cover more than a half turn). Fan beam: the
    equispaced fan formula with the 1 / U^2 distance weight and half the angular step.
    """
    n = filtered.shape[0]
    dtype, device = filtered.dtype, filtered.device
    xx, yy = _pixel_centres(geometry, dtype, device)
    angles = geometry.angles.to(device=device, dtype=dtype)
    step = geometry.angular_weight()
    per_view = max(1, _SAMPLES_PER_CHUNK // max(1, xx.numel() * n))
    image = torch.zeros(n, xx.numel(), dtype=dtype, device=device)
    for start in range(0, geometry.n_angles, per_view):
        theta = angles[start:start + per_view, None]
        cos, sin = torch.cos(theta), torch.sin(theta)
        along = xx * cos + yy * sin  # coordinate along the detector axis through the centre
        if isinstance(geometry, FanBeam):
            distance = geometry.source_distance - (xx * sin - yy * cos)  # source-to-pixel along the axis
            u_detector = along * (geometry.source_distance + geometry.detector_distance) / distance
            weight = (geometry.source_distance / distance) ** 2
        else:
            u_detector, weight = along, None
        bins = u_detector / geometry.det_spacing + (geometry.det_count - 1) / 2
        samples = _interpolate_views(filtered[:, start:start + per_view], bins)
        if weight is not None:
            samples = samples * weight
        image += samples.sum(dim=1)
    if isinstance(geometry, FanBeam):
        scale = min(step * geometry.n_angles, 2 * math.pi) / geometry.n_angles / 2
    else:
        scale = min(step * geometry.n_angles, math.pi) / geometry.n_angles
    return (image * scale).reshape(n, *geometry.image_size)


def fbp(sinogram: torch.Tensor, geometry: Geometry, filter: str = "ram-lak") -> torch.Tensor:
    """Filtered backprojection of (N, n_angles, det_count) -> (N, H, W) with the object's true values.

    Fan-beam data are cosine-weighted and filtered on the virtual detector through the rotation centre.
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
