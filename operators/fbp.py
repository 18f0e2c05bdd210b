"""Filtered backprojection for parallel and flat-detector fan beams.

The backprojection is pixel-driven: every pixel takes the linearly interpolated filtered value at
its detector position in each view, times the FBP weight (the angular step, and for fan beams the
1 / U^2 distance weight). It is matrix-free: a compiled kernel on the CPU, vectorised torch over
chunks of views elsewhere, so memory grows with the image, not with views x pixels.

Fan-beam scans of less than a full turn get short-scan (Parker) weights, see :func:`parker_weights`.
"""

from __future__ import annotations

import math
import warnings

import torch

from sparsect.operators.filters import filter_sinogram
from sparsect.operators.geometry import FanBeam, Geometry, ParallelBeam

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


def _pixel_detector_positions(geometry: Geometry, cos: torch.Tensor, sin: torch.Tensor, xx: torch.Tensor,
                              yy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Detector bin position (fractional index) and FBP weight of pixels (P, 1) in views (1, V)."""
    along = xx * cos + yy * sin  # position along the detector axis through the centre
    weight = torch.full_like(along, _angular_scale(geometry))
    if isinstance(geometry, FanBeam):
        distance = geometry.source_distance - (xx * sin - yy * cos)  # source to pixel, along the axis
        along = along * (geometry.source_distance + geometry.detector_distance) / distance
        weight = weight * (geometry.source_distance / distance) ** 2
    return along / geometry.det_spacing + (geometry.det_count - 1) / 2, weight


def _backproject_torch(filtered: torch.Tensor, geometry: Geometry, chunk_bytes: int) -> torch.Tensor:
    """:func:`backproject_filtered` in vectorised torch over chunks of views (any device)."""
    height, width = geometry.image_size
    device, n_batch, det_count = filtered.device, filtered.shape[0], geometry.det_count
    y = (height - 1) / 2 - torch.arange(height, dtype=torch.float64, device=device)
    x = torch.arange(width, dtype=torch.float64, device=device) - (width - 1) / 2
    yy, xx = (v.reshape(-1, 1) for v in torch.meshgrid(y, x, indexing="ij"))
    angles = geometry.angles.to(device)
    # float64 positions, weights and indices, a few alive at once, plus the gathered values.
    per_view = height * width * (8 * 8 + 2 * n_batch * filtered.element_size())
    per_chunk = max(1, chunk_bytes // per_view)
    padded = torch.cat([filtered.reshape(n_batch, -1), filtered.new_zeros(n_batch, 1)], 1)
    image = filtered.new_zeros(n_batch, height * width)
    for start in range(0, geometry.n_angles, per_chunk):
        theta = angles[None, start:start + per_chunk]
        position, weight = _pixel_detector_positions(geometry, torch.cos(theta), torch.sin(theta), xx, yy)
        lower = torch.floor(position)
        frac = position - lower
        view = torch.arange(start, start + theta.shape[1], device=device)[None, :]
        total = image.new_zeros(())
        for bin_index, share in ((lower, 1 - frac), (lower + 1, frac)):
            inside = (bin_index >= 0) & (bin_index < det_count)
            flat = view * det_count + bin_index.clamp(0, det_count - 1).long()
            index = torch.where(inside, flat, padded.shape[1] - 1)
            values = padded.index_select(1, index.reshape(-1)).reshape(n_batch, *index.shape)
            total = total + (values * (share * weight).to(filtered.dtype)).sum(-1)
        image += total
    return image.reshape(n_batch, height, width)


def backproject_filtered(filtered: torch.Tensor, geometry: Geometry, chunk_bytes: int = 256 << 20) -> torch.Tensor:
    """Weighted backprojection of ramp-filtered sinograms (N, n_angles, det_count) -> (N, H, W).

    Matrix-free: compiled kernels on the CPU, vectorised torch over chunks of views (intermediates near
    ``chunk_bytes``) on other devices. Not differentiable.
    """
    if filtered.device.type != "cpu":
        return _backproject_torch(filtered, geometry, chunk_bytes)
    from sparsect.operators import project_numba  # loads numba and the kernels (0.5-3 s): only when first needed

    height, width = geometry.image_size
    work = filtered.detach().contiguous()
    out = work.new_empty(work.shape[0], height, width)
    fan = isinstance(geometry, FanBeam)
    with project_numba.kernel_call():
        project_numba.backproject_pixels(
            work.numpy(), torch.cos(geometry.angles).numpy(), torch.sin(geometry.angles).numpy(), height, width,
            geometry.det_spacing, geometry.source_distance if fan else 0.0, geometry.detector_distance if fan else 0.0,
            _angular_scale(geometry), out.numpy())
    return out


def fbp(sinogram: torch.Tensor, geometry: Geometry, filter: str = "ram-lak", chunk_bytes: int = 256 << 20
        ) -> torch.Tensor:
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
    return backproject_filtered(filtered, geometry, chunk_bytes)
