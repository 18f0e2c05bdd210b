"""Filtered backprojection for parallel and flat-detector fan beams.

The backprojection is pixel-driven: every pixel takes the linearly interpolated filtered value at
its detector position in each view, times the FBP weight (the angular step, and for fan beams the
1 / U^2 distance weight). Those weights are stored once per geometry as a CSR matrix
(pixels x rays), so an FBP costs one sparse product after the ramp filter, on CPU and CUDA.

Fan-beam scans of less than a full turn get short-scan (Parker) weights, see :func:`parker_weights`.
"""

from __future__ import annotations

import math
import warnings

import torch

from sparsect.operators.filters import filter_sinogram
from sparsect.operators.geometry import FanBeam, Geometry, ParallelBeam
from sparsect.operators.system_matrix import MATRICES, csr_matrix

# Views are processed in groups so the (views x pixels) intermediates stay near this many entries.
_SAMPLES_PER_CHUNK = 1 << 22

# Relative slack on arc comparisons, so that n views of step 2 pi / n count as a full turn.
_ARC_TOLERANCE = 1e-9


def _fan_arc(geometry: Geometry) -> float:
    """Angular span of the views including one step: ``max - min + step`` in radians.

    ``step`` is the median spacing (:meth:`Geometry.angular_weight`); for ``n`` evenly spaced views
    this is ``n * step``, the ``arc`` given to :func:`operators.evenly_spaced_angles`.
    """
    return float(geometry.angles.max() - geometry.angles.min()) + geometry.angular_weight()


def _is_full_turn(geometry: FanBeam) -> bool:
    return _fan_arc(geometry) >= 2 * math.pi * (1 - _ARC_TOLERANCE)


def _half_fan_angle(geometry: FanBeam) -> float:
    """Half the fan angle (radians) covering the whole detector, bin edges included."""
    return math.atan(geometry.det_count * geometry.det_spacing / 2
                     / (geometry.source_distance + geometry.detector_distance))


def _angular_scale(geometry: Geometry) -> float:
    """Weight of one view: the angular step, at most pi (parallel) or 2 pi (fan full turn, halved) in
    total. Fan-beam short scans take the whole step; their Parker weights remove the redundancy."""
    total = geometry.angular_weight() * geometry.n_angles
    if isinstance(geometry, FanBeam):
        if not _is_full_turn(geometry):
            return geometry.angular_weight()
        return min(total, 2 * math.pi) / geometry.n_angles / 2
    return min(total, math.pi) / geometry.n_angles


def _parker(beta: torch.Tensor, gamma: torch.Tensor, arc: float) -> torch.Tensor:
    """Parker weight of the ray at source angle ``beta`` in ``[0, arc]`` and fan angle ``gamma``.

    ``gamma`` is signed so that the same line is measured again at ``(beta + pi + 2 gamma, -gamma)``.
    Parker's (1982) formula with the half fan angle replaced by ``(arc - pi) / 2``, the generalisation
    to over-scans of Wesarg et al. (2002): sin^2 tapers at both ends of the scan, 1 in between, and
    the two measurements of every line sum to 1. For ``arc < pi + 2 |gamma|`` the lines seen once
    keep the weight 1. Needs ``arc <= 2 pi``; the arguments broadcast, radians throughout.
    """
    half = (arc - math.pi) / 2
    beta = beta.clamp(0.0, arc)
    start, end = half - gamma, half + gamma  # half widths of the tapers at the scan's start and end
    tiny = torch.finfo(beta.dtype).tiny
    rising = torch.sin(math.pi / 4 * beta / start.clamp_min(tiny)) ** 2
    falling = torch.sin(math.pi / 4 * (arc - beta) / end.clamp_min(tiny)) ** 2
    weight = torch.where(beta < 2 * start, rising, torch.ones_like(rising))
    return torch.where(arc - beta < 2 * end, falling, weight)


def parker_weights(geometry: FanBeam) -> torch.Tensor:
    """Short-scan (Parker) weights of a fan-beam sinogram.

    Parameters
    ----------
    geometry : the fan-beam geometry. Its arc is the span of the angles plus one (median) step, in
        radians; for ``n`` evenly spaced views that is the ``arc`` of :meth:`FanBeam.sparse`.

    Returns
    -------
    torch.Tensor
        float64 (n_angles, det_count) weights in [0, 1]. All ones for a full turn (arc >= 2 pi): FBP
        halves the angular step instead. For a shorter arc, view ``i`` sits at ``beta_i = angles[i] -
        min(angles) + step / 2`` in ``[0, arc]`` and bin ``k`` at the fan angle ``gamma_k =
        -atan(u_k / (source_distance + detector_distance))`` (radians). The minus sign makes the ray
        ``(beta + pi + 2 gamma, -gamma)`` the conjugate of ``(beta, gamma)`` in ASTRA's fanflat
        orientation, where the source moves towards +u. The weights are Parker's, generalised to
        arcs between ``pi + fan angle`` and ``2 pi`` (Wesarg et al. 2002): the two measurements of
        every line sum to 1, and lines measured once (arcs shorter than a short scan) keep 1.

    Notes
    -----
    Unevenly spaced angles are placed at their true positions, so a gap is missing data, but every
    view is still integrated with the median step: FBP does not compensate uneven spacing.
    """
    if not isinstance(geometry, FanBeam):
        raise TypeError(f"Parker weights are for FanBeam geometries, got {type(geometry).__name__}")
    if _is_full_turn(geometry):
        return torch.ones(geometry.sinogram_shape, dtype=torch.float64)
    step = geometry.angular_weight()
    beta = geometry.angles - geometry.angles.min() + step / 2
    gamma = -torch.atan(geometry.detector_positions() / (geometry.source_distance + geometry.detector_distance))
    return _parker(beta[:, None], gamma[None, :], _fan_arc(geometry))


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
    A fan-beam scan of less than a full turn (the span of the angles plus one step is below 2 pi
    radians) is a short scan: the data are multiplied by :func:`parker_weights` before filtering and
    each view is weighted by the full angular step (a full turn halves it instead). Arcs below
    ``pi + fan angle`` cannot be reconstructed exactly: they still give an image, with a warning about
    limited-angle artefacts.
    Parallel-beam views spanning less than a half turn are weighted by their actual angular step.
    """
    if isinstance(geometry, FanBeam):
        scale = geometry.source_distance / (geometry.source_distance + geometry.detector_distance)
        virtual_u = geometry.detector_positions().to(sinogram.device, sinogram.dtype) * scale
        weights = geometry.source_distance / torch.sqrt(geometry.source_distance ** 2 + virtual_u ** 2)
        if not _is_full_turn(geometry):
            short_scan = math.pi + 2 * _half_fan_angle(geometry)
            if _fan_arc(geometry) < short_scan * (1 - _ARC_TOLERANCE):
                warnings.warn(f"fan-beam views span {_fan_arc(geometry):.4f} rad, less than a short scan "
                              f"(pi + fan angle = {short_scan:.4f} rad): the FBP image has limited-angle "
                              "artefacts", stacklevel=2)
            weights = weights * parker_weights(geometry).to(sinogram.device, sinogram.dtype)
        filtered = filter_sinogram(sinogram * weights, geometry.det_spacing * scale, filter)
    elif isinstance(geometry, ParallelBeam):
        filtered = filter_sinogram(sinogram, geometry.det_spacing, filter)
    else:
        raise TypeError(f"no FBP for geometry {type(geometry).__name__}")
    return backproject_filtered(filtered, geometry)
