"""The projector as a sparse CSR system matrix, and the byte-bounded cache that keeps it.

The matrix holds the same weights as the matrix-free kernels (:mod:`operators.rays`): rows are rays
(view-major, row = view * det_count + bin), columns pixels (row-major), values path lengths in pixel
units. It is built on the CPU by the compiled kernels (one counting pass for the exact size, one
filling pass for A, and A^T filled directly by a pixel-block walk, both with sorted columns) and then
moved to the tensor's device (the kernels are imported on first use: numba takes a while to load). Every
pass runs in chunks of about :data:`WORK_PER_CHECK` strip steps; after each one the build reports a
:class:`operators.progress.PhaseProgress` (phase ``"matrix"``) and may stop (:class:`MatrixBuildStopped`).
Building costs a few matrix-free projections, so it pays off only for many products with one
geometry; :class:`operators.Radon` decides when (see its docstring).
"""

from __future__ import annotations

import threading
import warnings

import numpy as np
import torch

from sparsect.operators.geometry import Geometry
from sparsect.operators.progress import MatrixBuildStopped, PhaseCallback, Steps, StopLike
from sparsect.operators.rays import PIXEL_MODELS, StripRays, check_model, strip_rays

__all__ = ["MATRICES", "PIXEL_MODELS", "WORK_PER_CHECK", "MatrixBuildStopped", "MatrixCache", "block_chunks",
           "matrix_bytes", "matrix_steps", "ray_chunks", "ray_ranges", "system_matrix"]

_INT32_LIMIT = 2**31 - 1


#: Strip steps (one ray across one image row or column) of compiled work between two progress reports and stop
#: checks of a build: about 0.1-0.3 s on two cores.
WORK_PER_CHECK = 1 << 25


def _ray_arrays(rays: StripRays) -> tuple[np.ndarray, ...]:
    return (rays.steep.numpy(), rays.offset.numpy(), rays.slope.numpy())


def _threads() -> int:
    """The thread count :func:`operators.project_numba.kernel_call` will use."""
    import numba  # loaded already by the kernels' module

    return max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))


def ray_ranges(n_rays: int, image_size: tuple[int, int], cost: int = 1) -> list[tuple[int, int]]:
    """(first, last) ranges of ``n_rays`` rays over an (H, W) image, about :data:`WORK_PER_CHECK` strip steps'
    time each (a ray crosses at most max(H, W) strips, each ``cost`` times a projection's step), in ray order."""
    per = max(1, WORK_PER_CHECK // (max(image_size) * cost))
    return [(first, min(n_rays, first + per)) for first in range(0, n_rays, per)]


#: Time of a strip step of filling A's rows (scattered writes, the sort of shallow rays) in projection steps
#: (measured at 1024 x 1024, 60 views).
FILL_COST = 16


def ray_chunks(rays: StripRays, cost: int = 1) -> list[tuple[int, int]]:
    """:func:`ray_ranges` of ``rays``."""
    return ray_ranges(rays.n_rays, (rays.height, rays.width), cost)


def _rows_per_block(rays: StripRays) -> int:
    return max(1, min(8, rays.height // (4 * _threads())))


def block_chunks(rays: StripRays) -> list[tuple[int, int]]:
    """(first, last) ranges of the image-row blocks of the transpose's passes (every block walks all rays over
    its rows), about :data:`WORK_PER_CHECK` strip steps' time each and at least one block per thread (a block
    costs about 32 strip steps per ray and row: its scattered writes; measured at 1024 x 1024, 60 views)."""
    rows = _rows_per_block(rays)
    n_blocks = -(-rays.height // rows)
    per = max(_threads(), WORK_PER_CHECK // max(1, rays.n_rays * rows * 32))
    return [(first, min(n_blocks, first + per)) for first in range(0, n_blocks, per)]


def matrix_steps(rays: StripRays, counted: bool, callback: PhaseCallback = None, stop: StopLike = None) -> Steps:
    """The chunks of building (A, A^T) for ``rays``, phase ``"matrix"``: the counting pass unless ``counted``,
    the rows of A, then the counting and filling passes of A^T. A stop request raises :class:`MatrixBuildStopped`."""
    n_rays, n_fill, n_blocks = len(ray_chunks(rays)), len(ray_chunks(rays, FILL_COST)), len(block_chunks(rays))
    return Steps("matrix", (0 if counted else n_rays) + n_fill + 2 * n_blocks, callback, stop, MatrixBuildStopped)


def row_lengths(rays: StripRays, model: str, steps: Steps | None = None) -> np.ndarray:
    """Number of nonzero weights of every ray (int64 (R,)), by the compiled counting kernel in chunks of rays
    (each advances ``steps``, which may raise :class:`MatrixBuildStopped`)."""
    from sparsect.operators import project_numba  # loads numba and the kernels (0.5-3 s): only when first needed

    counts = np.empty(rays.n_rays, dtype=np.int64)
    arrays = _ray_arrays(rays)
    for first, last in ray_chunks(rays):
        with project_numba.kernel_call():
            project_numba.row_counts(*(a[first:last] for a in arrays), rays.height, rays.width, model == "linear",
                                     counts[first:last])
        if steps is not None:
            steps.advance()
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
                    counts: np.ndarray | None = None, steps: Steps | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, A^T) as CSR tensors of ``dtype`` on ``device``; ``counts`` are :func:`row_lengths` if known.

    Built in chunks (:func:`ray_chunks`, :func:`block_chunks`), each advancing ``steps`` (see :func:`matrix_steps`),
    which raises :class:`MatrixBuildStopped` between two chunks when its stop request is set.
    """
    from sparsect.operators import project_numba  # loads numba and the kernels (0.5-3 s): only when first needed

    counts = row_lengths(rays, model, steps) if counts is None else counts
    n_rays, n_pixels = rays.n_rays, rays.height * rays.width
    value_dtype = np.float64 if dtype == torch.float64 else np.float32
    arrays = (*_ray_arrays(rays), rays.path.numpy())
    crow = np.zeros(n_rays + 1, dtype=np.int64)
    np.cumsum(counts, out=crow[1:])
    nnz = int(crow[-1])
    col = np.empty(nnz, dtype=np.int32 if n_pixels <= _INT32_LIMIT else np.int64)
    val = np.empty(nnz, dtype=value_dtype)
    for first, last in ray_chunks(rays, FILL_COST):
        with project_numba.kernel_call():
            project_numba.fill_rows(*(a[first:last] for a in arrays), rays.height, rays.width, model == "linear",
                                    crow[first:last], col, val)
        if steps is not None:
            steps.advance()
    column_counts = np.zeros(n_pixels, dtype=np.int64)
    t_crow = np.zeros(n_pixels + 1, dtype=np.int64)
    t_col = np.empty(nnz, dtype=np.int32 if n_rays <= _INT32_LIMIT else np.int64)
    t_val = np.empty(nnz, dtype=value_dtype)
    walk = (*arrays, rays.height, rays.width, model == "linear", _rows_per_block(rays))
    for target in (column_counts, column_counts[:0]):  # count every pixel's entries, then fill them
        for first, last in block_chunks(rays):
            with project_numba.kernel_call():
                project_numba.fill_columns(*walk, first, last, target, t_crow, t_col, t_val)
            if steps is not None:
                steps.advance()
        if target.size:
            np.cumsum(column_counts, out=t_crow[1:])
    return (_csr(crow, col, val, (n_rays, n_pixels), dtype, device),
            _csr(t_crow, t_col, t_val, (n_pixels, n_rays), dtype, device))


def system_matrix(geometry: Geometry, model: str = "linear", dtype: torch.dtype = torch.float64,
                  device: torch.device | str = "cpu", callback: PhaseCallback = None,
                  stop: StopLike = None) -> torch.Tensor:
    """The (n_angles * det_count, H * W) CSR matrix of ``geometry`` under pixel ``model``.

    Rows are view-major (row = view * det_count + bin); columns are row-major over the image. Weights
    are path lengths in pixel units, computed in float64 and stored as ``dtype`` on ``device``.
    ``callback`` gets a :class:`PhaseProgress` (phase ``"matrix"``) after each chunk of the build; once ``stop``
    is set, :class:`MatrixBuildStopped` is raised at the next chunk.
    """
    rays = strip_rays(geometry)
    steps = matrix_steps(rays, False, callback, stop)
    steps.check()
    return projection_pair(rays, check_model(model), dtype, device, steps=steps)[0]


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
