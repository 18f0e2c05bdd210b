"""Ray-driven projectors stored as sparse system matrices.

Every ray is walked one image row at a time when it runs more vertically than horizontally, and one
column at a time otherwise; within each such strip it touches at most two neighbouring pixels. Two
pixel weightings are offered, matching ASTRA's CPU projectors:

- ``"linear"`` (Joseph's method, ASTRA ``linear``): the ray is sampled at the strip centre and the
  two nearest pixels are linearly interpolated, weighted by the path length per strip.
- ``"line"`` (ASTRA ``line`` / ``line_fanflat``): each pixel gets the exact length of the ray's
  intersection with it.

Storing the weights as a CSR matrix gives the forward projection and an exactly matched transpose
from one set of numbers, on CPU and CUDA alike.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable

import torch

from sparsect.operators.geometry import Geometry

PIXEL_MODELS = ("linear", "line")
# Rays are processed in groups so the (rays x strips x 2) intermediates stay near this many entries.
_ENTRIES_PER_CHUNK = 1 << 23


def _strip_weights(points: torch.Tensor, directions: torch.Tensor, height: int, width: int, model: str
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel indices (row * W + col) and weights of each ray, both (R, 2 * strips).

    Entries that fall outside the image get index ``H * W`` and weight 0.
    """
    n_pixels = height * width
    px, py = points[:, 0:1], points[:, 1:2]
    dx, dy = directions[:, 0:1], directions[:, 1:2]
    steep = dy.abs() >= dx.abs()
    # The position across the strip, in pixel-index units, is affine in the strip index s:
    # m(s) = offset + slope * s.  Steep rays cross rows (y = (H-1)/2 - s) and move across columns;
    # shallow rays cross columns (x = s - (W-1)/2) and move across rows.
    safe_dy = torch.where(steep, dy, torch.ones_like(dy))
    safe_dx = torch.where(steep, torch.ones_like(dx), dx)
    steep_offset = px + ((height - 1) / 2 - py) / safe_dy * dx + (width - 1) / 2
    shallow_offset = (height - 1) / 2 - py - ((-(width - 1) / 2) - px) / safe_dx * dy
    offset = torch.where(steep, steep_offset, shallow_offset)
    slope = torch.where(steep, -dx / safe_dy, -dy / safe_dx)
    path_per_strip = 1.0 / torch.where(steep, dy.abs(), dx.abs())
    n_strips = torch.where(steep, height, width)
    n_across = torch.where(steep, width, height)

    strips = max(height, width)
    s = torch.arange(strips, dtype=points.dtype, device=points.device)[None, :]
    centre = offset + slope * s
    if model == "linear":
        lower = torch.floor(centre)
        lower_share = 1 - (centre - lower)
    else:
        half = slope.abs() / 2
        start = centre - half
        lower = torch.floor(start + 0.5)
        spread = torch.where(half > 0, 2 * half, torch.ones_like(half))
        lower_share = torch.where(half > 0, ((lower + 0.5 - start) / spread).clamp(max=1.0),
                                  torch.ones_like(start))
    weight = torch.stack([lower_share, 1 - lower_share], -1) * path_per_strip[..., None]
    across = torch.stack([lower, lower + 1], -1)
    inside = (across >= 0) & (across < n_across[..., None]) & (s < n_strips)[..., None] & (weight > 0)
    across = across.long().clamp(min=0)
    strip = s.long()[..., None].expand_as(across)
    index = torch.where(steep[..., None], strip * width + across, across * width + strip)
    index = torch.where(inside, index, n_pixels).reshape(len(points), -1)
    weight = torch.where(inside, weight, 0.0).reshape(len(points), -1)
    index, order = torch.sort(index, dim=1)
    return index, torch.gather(weight, 1, order)


def system_matrix(geometry: Geometry, model: str = "linear", dtype: torch.dtype = torch.float64,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """The (n_angles * det_count, H * W) CSR matrix of ``geometry`` under pixel ``model``.

    Rows are view-major (row = view * det_count + bin); columns are row-major over the image. Weights
    are path lengths in pixel units. Built in float64 on ``device``, then cast to ``dtype``.
    """
    if model not in PIXEL_MODELS:
        raise ValueError(f"unknown pixel model {model!r}; choose one of {PIXEL_MODELS}")
    height, width = geometry.image_size
    points, directions = geometry.rays()
    points = points.reshape(-1, 2).to(device)
    directions = directions.reshape(-1, 2).to(device)
    n_rays, n_pixels = points.shape[0], height * width
    chunk = max(1, _ENTRIES_PER_CHUNK // (2 * max(height, width)))
    counts, columns, values = [], [], []
    for start in range(0, n_rays, chunk):
        index, weight = _strip_weights(points[start:start + chunk], directions[start:start + chunk],
                                       height, width, model)
        keep = index < n_pixels
        counts.append(keep.sum(dim=1))
        columns.append(index[keep])
        values.append(weight[keep])
    crow = torch.zeros(n_rays + 1, dtype=torch.int64, device=device)
    crow[1:] = torch.cumsum(torch.cat(counts), 0)
    col = torch.cat(columns)
    return csr_matrix(crow, col, torch.cat(values).to(dtype), (n_rays, n_pixels))


def csr_matrix(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A CSR tensor with int32 indices when they fit (faster kernels, half the memory)."""
    index_dtype = torch.int32 if col.numel() < 2**31 - 1 else torch.int64
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow.to(index_dtype), col.to(index_dtype), values, size=size,
                                       check_invariants=False)


def transpose_csr(matrix: torch.Tensor) -> torch.Tensor:
    """The transpose of a CSR matrix, again in CSR layout (same dtype and device)."""
    return matrix.t().to_sparse_csr()


class MatrixCache:
    """Thread-safe LRU cache of sparse matrices built from a geometry, keyed by what built them."""

    def __init__(self, max_entries: int = 12) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple, object] = {}
        self._max_entries = max_entries

    def get_or_build(self, key: tuple, build: Callable[[], object]) -> object:
        """The cached value for ``key``, building (outside the lock) and storing it on a miss."""
        with self._lock:
            if key in self._entries:
                self._entries[key] = self._entries.pop(key)
                return self._entries[key]
        value = build()
        with self._lock:
            while len(self._entries) >= self._max_entries:
                self._entries.pop(next(iter(self._entries)))
            self._entries[key] = value
        return value

    def typed(self, key: tuple, dtype: torch.dtype, device: torch.device | str, build: Callable[[], object]
              ) -> object:
        """``build()`` (float64 tensors on ``device``) cast to ``dtype`` and cached under ``key``. The
        float64 original is kept only when float64 was asked for, to bound memory."""
        def build_typed():
            value = build()
            if isinstance(value, tuple):
                return tuple(v.to(dtype) for v in value)
            return value.to(dtype)

        return self.get_or_build((*key, dtype, str(device)), build_typed)

    def projection_pair(self, geometry: Geometry, model: str, dtype: torch.dtype, device: torch.device
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """(A, A^T) as CSR matrices of ``dtype`` on ``device``."""
        def build() -> tuple[torch.Tensor, torch.Tensor]:
            forward = system_matrix(geometry, model, torch.float64, device)
            return forward, transpose_csr(forward)

        return self.typed(("projection", geometry.key(), model), dtype, device, build)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


MATRICES = MatrixCache()
