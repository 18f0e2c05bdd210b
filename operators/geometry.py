"""Acquisition geometries for 2D parallel- and fan-beam CT.

Conventions follow ASTRA's 2D ``parallel`` and ``fanflat`` geometries exactly, so a sinogram made here
matches one made by ASTRA for the same parameters:

- The image has pixels of size 1 (all lengths are in pixel units). Pixel ``(row, col)`` of an
  ``(H, W)`` image has its centre at ``x = col - (W - 1) / 2`` and ``y = (H - 1) / 2 - row``: x grows
  to the right, y grows upwards, the origin is the image centre.
- For view angle ``theta`` (radians) the detector axis is ``e_u = (cos theta, sin theta)`` and
  detector bin ``k`` of ``det_count`` sits at ``u_k = (k - (det_count - 1) / 2) * det_spacing``.
- Parallel beam: the ray through bin ``k`` is the line ``{p : p . e_u = u_k}``.
- Fan beam (flat detector): the source is at ``source_distance * (sin theta, -cos theta)``, the
  detector centre at ``detector_distance * (-sin theta, cos theta)`` (distances from the rotation
  centre), and the ray through bin ``k`` joins the source to ``detector centre + u_k e_u``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

AngleLike = Sequence[float] | np.ndarray | torch.Tensor


def _as_angles(angles: AngleLike) -> torch.Tensor:
    if isinstance(angles, torch.Tensor):
        values = angles.detach().to("cpu", torch.float64).reshape(-1)
    else:
        try:
            values = torch.as_tensor(np.asarray(angles, dtype=np.float64)).reshape(-1)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"angles must be a sequence of numbers in radians, got {angles!r}") from exc
    if values.numel() == 0:
        raise ValueError("angles is empty: a geometry needs at least one view angle")
    if not torch.isfinite(values).all():
        raise ValueError("angles contain NaN or infinite values")
    return values


def _as_image_size(image_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(image_size, int | np.integer):
        size = (int(image_size), int(image_size))
    else:
        size = tuple(int(s) for s in image_size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"image_size must be (H, W) with H, W >= 1, got {image_size!r}")
    return size  # type: ignore[return-value]


def _check_positive(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite positive number, got {value!r}")
    return value


def _check_det_count(det_count: int) -> int:
    if int(det_count) != det_count or det_count < 1:
        raise ValueError(f"det_count must be an integer >= 1, got {det_count!r}")
    return int(det_count)


def evenly_spaced_angles(n_views: int, arc: float = math.pi) -> torch.Tensor:
    """``n_views`` angles in radians, ``arc * i / n_views`` for ``i = 0 .. n_views - 1`` (float64)."""
    if int(n_views) != n_views or n_views < 1:
        raise ValueError(f"n_views must be an integer >= 1, got {n_views!r}")
    _check_positive("arc", arc)
    return torch.arange(int(n_views), dtype=torch.float64) * (float(arc) / int(n_views))


def _diagonal(image_size: tuple[int, int]) -> float:
    return math.hypot(*image_size)


@dataclass(frozen=True, eq=False)
class Geometry:
    """Common part of every geometry: view angles (radians), detector and image size."""

    angles: torch.Tensor
    det_count: int
    det_spacing: float
    image_size: tuple[int, int]

    def _init_common(self, angles: AngleLike, det_count: int, det_spacing: float,
                     image_size: int | Sequence[int] | None) -> None:
        """Validate and set the fields every geometry has; image_size defaults to (det_count, det_count)."""
        det_count = _check_det_count(det_count)
        Geometry.__init__(self, angles=_as_angles(angles), det_count=det_count,
                          det_spacing=_check_positive("det_spacing", det_spacing),
                          image_size=_as_image_size(det_count if image_size is None else image_size))

    @property
    def n_angles(self) -> int:
        return int(self.angles.numel())

    @property
    def sinogram_shape(self) -> tuple[int, int]:
        """(n_angles, det_count)."""
        return (self.n_angles, self.det_count)

    def detector_positions(self) -> torch.Tensor:
        """Detector bin centres ``u_k`` in pixel units, float64 (det_count,)."""
        k = torch.arange(self.det_count, dtype=torch.float64)
        return (k - (self.det_count - 1) / 2) * self.det_spacing

    def angular_weight(self) -> float:
        """Angular step ``d theta`` of the views (radians), from their median spacing."""
        if self.n_angles == 1:
            return math.pi
        steps = torch.diff(torch.sort(self.angles).values)
        return float(torch.median(steps))

    def key(self) -> tuple:
        """Hashable description, used to cache system matrices."""
        return (type(self).__name__, tuple(self.angles.tolist()), self.det_count, self.det_spacing,
                self.image_size, *self._extra_key())

    def _extra_key(self) -> tuple:
        return ()

    def rays(self) -> tuple[torch.Tensor, torch.Tensor]:
        """A point on and the unit direction of every ray, each float64 (n_angles, det_count, 2)."""
        raise NotImplementedError

    def on_grid(self, image_size: int | Sequence[int]) -> Geometry:
        """The same scan on an ``image_size`` (H, W) grid over the same field of view: the same rays, with every
        length (detector spacing, source and detector distances) in the new grid's pixels.

        An image on either grid, in attenuation per pixel (``mu * pixel size``), has the same line integrals, so
        one sinogram serves a fit on a coarse grid and on the scan's own. The new grid must keep the aspect
        ratio: ``H_new / H == W_new / W``.
        """
        size = _as_image_size(image_size)
        scale = size[0] / self.image_size[0]
        if not math.isclose(size[1] / self.image_size[1], scale, rel_tol=1e-9):
            raise ValueError(f"a grid of {size} does not keep the aspect ratio of {self.image_size}")
        return self._scaled(size, scale)

    def _scaled(self, image_size: tuple[int, int], scale: float) -> Geometry:
        raise NotImplementedError


class ParallelBeam(Geometry):
    """2D parallel-beam geometry with ASTRA ``parallel`` conventions (see module docstring).

    Parameters
    ----------
    angles : view angles in radians (list, numpy array or tensor).
    det_count : number of detector bins.
    det_spacing : detector bin width in pixel units.
    image_size : (H, W) of the reconstructed image in pixels; defaults to (det_count, det_count).
    """

    def __init__(self, angles: AngleLike, det_count: int, det_spacing: float = 1.0,
                 image_size: int | Sequence[int] | None = None) -> None:
        self._init_common(angles, det_count, det_spacing, image_size)

    @classmethod
    def sparse(cls, n_views: int, image_size: int | Sequence[int], arc: float = math.pi,
               det_count: int | None = None, det_spacing: float = 1.0) -> ParallelBeam:
        """``n_views`` evenly spaced views over ``arc`` radians; by default the detector covers the
        image diagonal."""
        size = _as_image_size(image_size)
        if det_count is None:
            det_count = math.ceil(_diagonal(size) / det_spacing)
        return cls(evenly_spaced_angles(n_views, arc), det_count, det_spacing, size)

    def rays(self) -> tuple[torch.Tensor, torch.Tensor]:
        cos, sin = torch.cos(self.angles)[:, None], torch.sin(self.angles)[:, None]
        u = self.detector_positions()[None, :]
        points = torch.stack([u * cos, u * sin], dim=-1)
        directions = torch.stack([-sin, cos], dim=-1).expand_as(points)
        return points, directions

    def _scaled(self, image_size: tuple[int, int], scale: float) -> ParallelBeam:
        return ParallelBeam(self.angles, self.det_count, self.det_spacing * scale, image_size)

    def __repr__(self) -> str:
        return (f"ParallelBeam(n_angles={self.n_angles}, det_count={self.det_count}, "
                f"det_spacing={self.det_spacing}, image_size={self.image_size})")


class FanBeam(Geometry):
    """2D fan-beam geometry with a flat detector and ASTRA ``fanflat`` conventions.

    Parameters
    ----------
    angles : source angles in radians.
    det_count : number of detector bins.
    source_distance : distance from the source to the rotation centre (pixel units).
    detector_distance : distance from the rotation centre to the detector (pixel units).
    det_spacing : detector bin width at the detector, in pixel units.
    image_size : (H, W) in pixels; defaults to (det_count, det_count).
    """

    source_distance: float
    detector_distance: float

    def __init__(self, angles: AngleLike, det_count: int, source_distance: float, detector_distance: float,
                 det_spacing: float = 1.0, image_size: int | Sequence[int] | None = None) -> None:
        self._init_common(angles, det_count, det_spacing, image_size)
        object.__setattr__(self, "source_distance", _check_positive("source_distance", source_distance))
        object.__setattr__(self, "detector_distance", _check_positive("detector_distance", detector_distance))
        if self.source_distance <= _diagonal(self.image_size) / 2:
            raise ValueError(
                f"source_distance {self.source_distance} must exceed the image half-diagonal "
                f"{_diagonal(self.image_size) / 2:.1f}: the source would sit inside the image")

    @property
    def magnification(self) -> float:
        """(source_distance + detector_distance) / source_distance."""
        return (self.source_distance + self.detector_distance) / self.source_distance

    @classmethod
    def sparse(cls, n_views: int, image_size: int | Sequence[int], arc: float = 2 * math.pi,
               det_count: int | None = None, source_distance: float | None = None,
               detector_distance: float | None = None, det_spacing: float | None = None) -> FanBeam:
        """``n_views`` evenly spaced source angles over ``arc`` (default a full turn). Defaults: source
        at twice the image diagonal, detector at one diagonal, bins of the magnified pixel size and
        enough of them to see the whole image."""
        size = _as_image_size(image_size)
        diagonal = _diagonal(size)
        source_distance = 2.0 * diagonal if source_distance is None else source_distance
        detector_distance = diagonal if detector_distance is None else detector_distance
        magnification = (source_distance + detector_distance) / source_distance
        det_spacing = magnification if det_spacing is None else det_spacing
        if det_count is None:
            half_fan = math.asin(min(1.0, (diagonal / 2) / source_distance))
            half_width = (source_distance + detector_distance) * math.tan(half_fan)
            det_count = math.ceil(2 * half_width / det_spacing) + 1
        return cls(evenly_spaced_angles(n_views, arc), det_count, source_distance, detector_distance,
                   det_spacing, size)

    def source_positions(self) -> torch.Tensor:
        """Source position for each view, float64 (n_angles, 2)."""
        return self.source_distance * torch.stack([torch.sin(self.angles), -torch.cos(self.angles)], -1)

    def rays(self) -> tuple[torch.Tensor, torch.Tensor]:
        cos, sin = torch.cos(self.angles)[:, None], torch.sin(self.angles)[:, None]
        u = self.detector_positions()[None, :]
        source = self.source_positions()[:, None, :]
        detector_x = -self.detector_distance * sin + u * cos
        detector_y = self.detector_distance * cos + u * sin
        direction = torch.stack([detector_x, detector_y], -1) - source
        direction = direction / direction.norm(dim=-1, keepdim=True)
        return source.expand_as(direction), direction

    def _extra_key(self) -> tuple:
        return (self.source_distance, self.detector_distance)

    def _scaled(self, image_size: tuple[int, int], scale: float) -> FanBeam:
        return FanBeam(self.angles, self.det_count, self.source_distance * scale, self.detector_distance * scale,
                       self.det_spacing * scale, image_size)

    def __repr__(self) -> str:
        return (f"FanBeam(n_angles={self.n_angles}, det_count={self.det_count}, "
                f"source_distance={self.source_distance}, detector_distance={self.detector_distance}, "
                f"det_spacing={self.det_spacing}, image_size={self.image_size})")
