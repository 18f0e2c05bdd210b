"""Projection backends: each maps (N, H, W) images to (N, n_angles, det_count) sinograms and back.

A backend only computes; autograd, shapes and dtype checks live in :mod:`operators.radon`.
"""

from __future__ import annotations

import importlib.util
import threading

import numpy as np
import torch

from sparsect.operators import project_torch
from sparsect.operators.geometry import FanBeam, Geometry
from sparsect.operators.progress import Steps, current_reporting
from sparsect.operators.rays import StripRays, strip_rays
from sparsect.operators.system_matrix import MATRICES, matrix_bytes, matrix_steps, projection_pair, row_lengths

BACKENDS = ("torch", "astra")

#: How many announced products make building the sparse matrix worth it (it costs a few projections).
MATRIX_MIN_CALLS = 20

class TorchBackend:
    """The default backend: matrix-free walks over the rays, or a cached CSR matrix when announced.

    On the CPU the walks are compiled kernels (:mod:`operators.project_numba`); on other devices
    vectorised torch over chunks of rays (:mod:`operators.project_torch`). Half-precision inputs are
    computed in float32 and cast back.
    """

    name = "torch"
    #: False runs the vectorised torch path on the CPU too (tests and benchmarks compare the two).
    compiled_cpu = True

    def __init__(self, geometry: Geometry, model: str, chunk_bytes: int, matrix_bytes: int) -> None:
        self.geometry, self.model = geometry, model
        self.chunk_bytes, self.matrix_bytes = chunk_bytes, matrix_bytes
        self._linear = model == "linear"
        self._wants_matrix = False
        self._rays: dict[str, StripRays] = {}
        self._counts: np.ndarray | None = None
        self._lock = threading.Lock()

    def expect_calls(self, calls: int) -> None:
        """Announce about ``calls`` more products; from :data:`MATRIX_MIN_CALLS` on, the next call may
        build the cached matrix."""
        self._wants_matrix = self._wants_matrix or calls >= MATRIX_MIN_CALLS

    def rays(self, device: torch.device | str = "cpu") -> StripRays:
        """The geometry's strip walk on ``device`` (computed once per device)."""
        key = str(device)
        with self._lock:
            if key not in self._rays:
                cpu = self._rays.get("cpu") or strip_rays(self.geometry)
                self._rays["cpu"] = cpu
                self._rays[key] = cpu.to(device)
            return self._rays[key]

    def _key(self, dtype: torch.dtype, device: torch.device) -> tuple:
        return ("projection", self.geometry.key(), self.model, dtype, str(device))

    def matrix_size(self, dtype: torch.dtype, steps: Steps | None = None) -> int:
        """Exact bytes of the cached (A, A^T) pair in ``dtype``, from a counting pass over the rays (advancing
        ``steps``, see :func:`operators.system_matrix.matrix_steps`)."""
        if self._counts is None:
            self._counts = row_lengths(self.rays(), self.model, steps)
        rays = self.rays()
        return matrix_bytes(int(self._counts.sum()), rays.n_rays, rays.height * rays.width, dtype)

    def matrices(self, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The cached (A, A^T) for ``dtype`` on ``device``: found in the cache, built now when announced
        and within budget, or None (then the matrix-free path runs).

        The counting pass and the build report to and stop on the callback and stop request of the enclosing
        :func:`operators.progress.phase_reporting` (phase ``"matrix"``; a stop raises
        :class:`operators.progress.MatrixBuildStopped` and nothing is cached). A matrix found too large ends the
        reports after the counting pass.
        """
        key = self._key(dtype, device)
        found = MATRICES.get(key)
        if found is not None or not self._wants_matrix:
            return found
        steps = matrix_steps(self.rays(), self._counts is not None, *current_reporting())
        steps.check()
        size = self.matrix_size(dtype, steps)
        if size > self.matrix_bytes:
            self._wants_matrix = False  # too large for the budget: stay matrix-free, and do not recount
            return None
        pair = projection_pair(self.rays(), self.model, dtype, device, self._counts, steps)
        MATRICES.put(key, pair, size)
        return pair

    def project_rays(self, images: torch.Tensor, first: int, last: int) -> torch.Tensor:
        """(B, last - first) line integrals of rays ``first`` to ``last - 1`` (view-major) of (B, H, W) images,
        matrix-free: the values :meth:`project` gives for those rays without the matrix, bit for bit on the CPU,
        so a caller can walk a large projection in chunks of rays."""
        work = self._work(images).detach().reshape(images.shape[0], -1)
        rays = _ray_range(self.rays(work.device), first, last)
        if work.device.type == "cpu" and self.compiled_cpu:
            flat = _numba_project(work.contiguous(), rays, self._linear)
        else:
            flat = project_torch.project(work, rays, self._linear, self.chunk_bytes)
        return flat.to(images.dtype)

    @staticmethod
    def _work(x: torch.Tensor) -> torch.Tensor:
        return x if x.dtype in (torch.float32, torch.float64) else x.float()

    def project(self, images: torch.Tensor) -> torch.Tensor:
        work = self._work(images).detach().reshape(images.shape[0], -1)
        pair = self.matrices(work.dtype, work.device)
        if pair is not None:
            flat = (pair[0] @ work.t().contiguous()).t()
        elif work.device.type == "cpu" and self.compiled_cpu:
            flat = _numba_project(work.contiguous(), self.rays(), self._linear)
        else:
            flat = project_torch.project(work, self.rays(work.device), self._linear, self.chunk_bytes)
        return flat.reshape(images.shape[0], *self.geometry.sinogram_shape).to(images.dtype)

    def backproject(self, sinograms: torch.Tensor) -> torch.Tensor:
        work = self._work(sinograms).detach().reshape(sinograms.shape[0], -1)
        pair = self.matrices(work.dtype, work.device)
        if pair is not None:
            flat = (pair[1] @ work.t().contiguous()).t()
        elif work.device.type == "cpu" and self.compiled_cpu:
            flat = _numba_backproject(work.contiguous(), self.rays(), self._linear, self.chunk_bytes)
        else:
            flat = project_torch.backproject(work, self.rays(work.device), self._linear, self.chunk_bytes)
        return flat.reshape(sinograms.shape[0], *self.geometry.image_size).to(sinograms.dtype)


def _ray_range(rays: StripRays, first: int, last: int) -> StripRays:
    """Rays ``first`` to ``last - 1`` of ``rays``."""
    return StripRays(rays.steep[first:last], rays.offset[first:last], rays.slope[first:last], rays.path[first:last],
                     rays.height, rays.width)


def _ray_args(rays: StripRays) -> tuple:
    return (rays.steep.numpy(), rays.offset.numpy(), rays.slope.numpy(), rays.path.numpy(), rays.height, rays.width)


def _numba_project(images: torch.Tensor, rays: StripRays, linear: bool) -> torch.Tensor:
    """(B, H * W) contiguous CPU images to (B, R) sinograms with the compiled kernel."""
    from sparsect.operators import project_numba  # loads numba and the kernels (0.5-3 s): only when first needed

    out = images.new_empty(images.shape[0], rays.n_rays)
    with project_numba.kernel_call():
        project_numba.project(images.numpy(), *_ray_args(rays), linear, out.numpy())
    return out


def _numba_backproject(sinograms: torch.Tensor, rays: StripRays, linear: bool, chunk_bytes: int) -> torch.Tensor:
    """(B, R) contiguous CPU sinograms to (B, H * W) images with the compiled kernel.

    Each thread accumulates into its own image buffer; at most ``chunk_bytes`` of buffers beyond the
    result are allocated (fewer threads share the work when the images are large).
    """
    from sparsect.operators import project_numba  # loads numba and the kernels (0.5-3 s): only when first needed

    image_bytes = sinograms.shape[0] * rays.height * rays.width * sinograms.element_size()
    with project_numba.kernel_call() as threads:
        parts = max(1, min(threads, 1 + chunk_bytes // max(1, image_bytes)))
        buffers = sinograms.new_zeros(parts, sinograms.shape[0], rays.height * rays.width)
        project_numba.backproject(sinograms.numpy(), *_ray_args(rays), linear, buffers.numpy())
    return buffers[0] if parts == 1 else buffers.sum(0)


class AstraBackend:
    """astra-toolbox's CPU projectors (``linear``/``line`` for parallel, ``line_fanflat`` for fan beams).

    ASTRA computes in float32 on host memory; tensors on other devices are copied there and back.
    """

    name = "astra"

    def __init__(self, geometry: Geometry, model: str) -> None:
        import astra

        self._astra = astra
        self.geometry = geometry
        height, width = geometry.image_size
        volume = astra.create_vol_geom(height, width)
        angles = geometry.angles.numpy()
        if isinstance(geometry, FanBeam):
            if model != "line":
                raise ValueError("ASTRA's CPU fan-beam projector supports only the 'line' pixel model")
            projection = astra.create_proj_geom("fanflat", geometry.det_spacing, geometry.det_count, angles,
                                                geometry.source_distance, geometry.detector_distance)
            kind = "line_fanflat"
        else:
            projection = astra.create_proj_geom("parallel", geometry.det_spacing, geometry.det_count, angles)
            kind = model
        self._projector = astra.create_projector(kind, projection, volume)
        self._operator = astra.OpTomo(self._projector)

    def expect_calls(self, calls: int) -> None:
        """ASTRA keeps no matrix: nothing to prepare."""

    def __del__(self) -> None:
        try:
            self._astra.projector.delete(self._projector)
        except Exception:  # noqa: BLE001 - interpreter shutdown may have torn astra down already
            pass

    def _map(self, batch: torch.Tensor, apply, out_shape: tuple[int, int]) -> torch.Tensor:
        host = batch.detach().to("cpu", torch.float32).numpy()
        result = np.stack([apply(np.ascontiguousarray(item)).reshape(out_shape) for item in host])
        return torch.from_numpy(result).to(device=batch.device, dtype=batch.dtype)

    def project(self, images: torch.Tensor) -> torch.Tensor:
        return self._map(images, self._operator.FP, self.geometry.sinogram_shape)

    def backproject(self, sinograms: torch.Tensor) -> torch.Tensor:
        return self._map(sinograms, self._operator.BP, self.geometry.image_size)


def astra_available() -> bool:
    """Whether astra-toolbox can be imported."""
    return importlib.util.find_spec("astra") is not None


def make_backend(name: str, geometry: Geometry, model: str, chunk_bytes: int, matrix_bytes: int
                 ) -> TorchBackend | AstraBackend:
    """Instantiate backend ``name`` ("auto", "torch" or "astra") for ``geometry``.

    "auto" is the PyTorch backend: on the development machine it is faster than ASTRA's CPU projector
    (docs/BENCHMARKS.md), runs on any torch device and needs no host copies.
    """
    if name in ("auto", "torch"):
        return TorchBackend(geometry, model, chunk_bytes, matrix_bytes)
    if name == "astra":
        if not astra_available():
            raise ImportError("backend 'astra' needs astra-toolbox: pip install 'sparsect[astra]'")
        return AstraBackend(geometry, model)
    raise ValueError(f"unknown backend {name!r}; choose 'auto' or one of {BACKENDS}")
