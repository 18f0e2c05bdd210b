"""Every ray of a geometry as an affine walk over the image's strips (rows or columns).

A ray that runs more vertically than horizontally ("steep") is walked one image row at a time, any other
one column at a time. At strip ``s`` (a row index for steep rays, a column index otherwise) the ray's
position across the strip, in pixel-index units, is ``centre(s) = offset + slope * s``, and the ray's
length inside the strip is ``path`` (pixel units). Within one strip a ray touches at most two
neighbouring pixels. Two pixel weightings are offered, matching ASTRA's CPU projectors:

- ``"linear"`` (Joseph's method, ASTRA ``linear``): the two pixels nearest to ``centre(s)`` are
  linearly interpolated, weighted by ``path``.
- ``"line"`` (ASTRA ``line`` / ``line_fanflat``): each pixel gets the exact length of the ray's
  intersection with it.

Every projector implementation (the compiled CPU kernels, the vectorised torch path and the cached
sparse matrix) computes its weights from these numbers with the same formulas, so all of them agree
and each adjoint is the exact transpose of its forward projection.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sparsect.operators.geometry import Geometry

PIXEL_MODELS = ("linear", "line")


def check_model(model: str) -> str:
    """``model`` if it is one of :data:`PIXEL_MODELS`, else a one-line ValueError."""
    if model not in PIXEL_MODELS:
        raise ValueError(f"unknown pixel model {model!r}; choose one of {PIXEL_MODELS}")
    return model


@dataclass(frozen=True)
class StripRays:
    """The strip walk of all ``n_angles * det_count`` rays (view-major), each field float64 or bool (R,)."""

    steep: torch.Tensor
    offset: torch.Tensor
    slope: torch.Tensor
    path: torch.Tensor
    height: int
    width: int

    @property
    def n_rays(self) -> int:
        return int(self.offset.numel())

    def to(self, device: torch.device | str) -> StripRays:
        """The same rays with their tensors on ``device``."""
        return StripRays(self.steep.to(device), self.offset.to(device), self.slope.to(device),
                         self.path.to(device), self.height, self.width)


def strip_rays(geometry: Geometry) -> StripRays:
    """The strip walk of every ray of ``geometry`` (see the module docstring), on the CPU in float64."""
    height, width = geometry.image_size
    points, directions = geometry.rays()
    px, py = points.reshape(-1, 2).unbind(-1)
    dx, dy = directions.reshape(-1, 2).unbind(-1)
    steep = dy.abs() >= dx.abs()
    # Steep rays cross the rows y = (H-1)/2 - s and move across the columns; shallow rays cross the
    # columns x = s - (W-1)/2 and move across the rows.
    safe_dy = torch.where(steep, dy, torch.ones_like(dy))
    safe_dx = torch.where(steep, torch.ones_like(dx), dx)
    steep_offset = px + ((height - 1) / 2 - py) / safe_dy * dx + (width - 1) / 2
    shallow_offset = (height - 1) / 2 - py - ((-(width - 1) / 2) - px) / safe_dx * dy
    offset = torch.where(steep, steep_offset, shallow_offset)
    slope = torch.where(steep, -dx / safe_dy, -dy / safe_dx)
    path = 1.0 / torch.where(steep, dy.abs(), dx.abs())
    return StripRays(steep.contiguous(), offset.contiguous(), slope.contiguous(), path.contiguous(), height, width)
