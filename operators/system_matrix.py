"""The projector as a sparse CSR system matrix, and the byte-bounded cache that keeps it.

The matrix holds the same weights as the matrix-free kernels (:mod:`operators.rays`): rows are rays
(view-major, row = view * det_count + bin), columns pixels (row-major), values path lengths in pixel
units. It is built on the CPU by the compiled kernels (one counting pass for the exact size, one
filling pass for A, and A^T filled directly by a pixel-block walk, both with sorted columns) and then
moved to the tensor's device (the kernels are imported on first use: numba takes a while to load).
Building costs a few matrix-free projections, so it pays off only for many products with one
geometry; :class:`operators.Radon` decides when (see its docstring).
"""

from __future__ import annotations

import threading
import warnings

import numpy as np
import torch

from sparsect.operators.geometry import Geometry
from sparsect.operators.rays import PIXEL_MODELS, StripRays, check_model, strip_rays

__all__ = ["MATRICES", "PIXEL_MODELS", "MatrixCache", "matrix_bytes", "system_matrix"]

_INT32_LIMIT = 2**31 - 1


def _ray_arrays(rays: StripRays) -> tuple[np.ndarray, ...]:
    return (rays.steep.numpy(), rays.offset.numpy(), rays.slope.numpy())


def row_lengths(rays: StripRays, model: str) -> np.ndarray:
    """Number of nonzero weights of every ray (int64 (R,)), by the compiled counting kernel."""
    from sparsect.operators import project_numba  # loads numba and the kernels (0.5-3 s): only when first needed

    counts = np.empty(rays.n_rays, dtype=np.int64)
    with project_numba.kernel_call():
        project_numba.row_counts(*_ray_arrays(rays), rays.height, rays.width, model == "linear", counts)
    return counts


def matrix_bytes(nnz: int, n_rays: int, n_pixels: int, dtype: torch.dtype) -> int:
    """Exact memory of A and A^T in CSR with ``nnz`` entries each (int32 indices when they fit)."""
    index = 4 if nnz <= _INT32_LIMIT else 8
    value = torch.empty((), dtype=dtype).element_size()
    return 2 * nnz * (index + value) + (n_rays + 1 + n_pixels + 1) * index


def _csr(crow: np.ndarray, col: np.ndarray, val: np.ndarray, size: tuple[int, int], dtype: torch.dtype,
         device: torch.device | str) -> torch.Tensor:
    index_dtype = torch.int32 if col.size <= _INT32_LIMIT else torch.int64
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(torch.from_numpy(crow).to(device, index_dtype),
                                       torch.from_numpy(col).to(device, index_dtype),
                                       torch.from_numpy(val).to(device, dtype), size=size, check_invariants=False)


def projection_pair(rays: StripRays, model: str, dtype: torch.dtype, device: torch.device | str,
                    counts: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, A^T) as CSR tensors of ``dtype`` on ``device``; ``counts`` are :func:`row_lengths` if known."""
    from sparsect.operators import project_numba  # loads numba and the kernels (0.5-3 s): only when first needed

    counts = row_lengths(rays, model) if counts is None else counts
    n_rays, n_pixels = rays.n_rays, rays.height * rays.width
    value_dtype = np.float64 if dtype == torch.float64 else np.float32
    arrays = (*_ray_arrays(rays), rays.path.numpy(), rays.height, rays.width, model == "linear")
    crow = np.zeros(n_rays + 1, dtype=np.int64)
    np.cumsum(counts, out=crow[1:])
    nnz = int(crow[-1])
    col = np.empty(nnz, dtype=np.int32 if n_pixels <= _INT32_LIMIT else np.int64)
    val = np.empty(nnz, dtype=value_dtype)
    column_counts = np.zeros(n_pixels, dtype=np.int64)
    t_crow = np.zeros(n_pixels + 1, dtype=np.int64)
    t_col = np.empty(nnz, dtype=np.int32 if n_rays <= _INT32_LIMIT else np.int64)
    t_val = np.empty(nnz, dtype=value_dtype)
    with project_numba.kernel_call() as threads:
        rows_per_block = max(1, min(8, rays.height // (4 * threads)))
        project_numba.fill_rows(*arrays, crow, col, val)
        project_numba.fill_columns(*arrays, rows_per_block, column_counts, t_crow, t_col, t_val)
        np.cumsum(column_counts, out=t_crow[1:])
        project_numba.fill_columns(*arrays, rows_per_block, column_counts[:0], t_crow, t_col, t_val)
    return (_csr(crow, col, val, (n_rays, n_pixels), dtype, device),
            _csr(t_crow, t_col, t_val, (n_pixels, n_rays), dtype, device))


def system_matrix(geometry: Geometry, model: str = "linear", dtype: torch.dtype = torch.float64,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """The (n_angles * det_count, H * W) CSR matrix of ``geometry`` under pixel ``model``.

    Rows are view-major (row = view * det_count + bin); columns are row-major over the image. Weights
    are path lengths in pixel units, computed in float64 and stored as ``dtype`` on ``device``.
    """
    return projection_pair(strip_rays(geometry), check_model(model), dtype, device)[0]


class MatrixCache:
    """Thread-safe least-recently-used cache of (A, A^T) pairs whose total size stays under ``max_bytes``.

    An entry larger than ``max_bytes`` on its own is still stored (its builder judged that it fits its own
    budget), after evicting everything else.
    """

    def __init__(self, max_bytes: int) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple, tuple[object, int]] = {}
        self.max_bytes = max_bytes

    def get(self, key: tuple) -> object | None:
        """The cached value for ``key`` (now the most recently used), or None."""
        with self._lock:
            if key not in self._entries:
                return None
            self._entries[key] = self._entries.pop(key)
            return self._entries[key][0]

    def put(self, key: tuple, value: object, nbytes: int) -> None:
        """Store ``value`` (``nbytes`` large), evicting the least recently used entries to make room."""
        with self._lock:
            self._entries.pop(key, None)
            while self._entries and self.total_bytes() + nbytes > self.max_bytes:
                self._entries.pop(next(iter(self._entries)))
            self._entries[key] = (value, nbytes)

    def total_bytes(self) -> int:
        """Bytes held by the cached entries."""
        return sum(nbytes for _, nbytes in self._entries.values())

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


#: Default budget of one cached matrix pair and of the whole cache (bytes).
DEFAULT_MATRIX_BYTES = 2 << 30
MATRICES = MatrixCache(DEFAULT_MATRIX_BYTES)
