"""The differentiable Radon transform ``A`` with its exact adjoint and filtered backprojection."""

from __future__ import annotations

import torch

from sparsect.operators import fbp as _fbp
from sparsect.operators.backends import make_backend
from sparsect.operators.geometry import FanBeam, Geometry
from sparsect.operators.rays import check_model
from sparsect.operators.system_matrix import DEFAULT_MATRIX_BYTES

_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


class _Project(torch.autograd.Function):
    @staticmethod
    def forward(ctx, images, backend):  # noqa: D102
        ctx.backend = backend
        return backend.project(images)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        return _Backproject.apply(grad.contiguous(), ctx.backend), None


class _Backproject(torch.autograd.Function):
    @staticmethod
    def forward(ctx, sinograms, backend):  # noqa: D102
        ctx.backend = backend
        return backend.backproject(sinograms)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        return _Project.apply(grad.contiguous(), ctx.backend), None


#: Default working-memory budget of one projector call beyond its input and output (bytes).
DEFAULT_CHUNK_BYTES = 256 << 20


def _check_bytes(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer number of bytes >= {minimum}, got {value!r}")
    return value


class Radon:
    """Forward model ``A`` of a 2D CT scan: line integrals of an image along the rays of ``geometry``.

    ``A(x)`` maps images (B, C, H, W) or (H, W) to sinograms (B, C, n_angles, det_count) or
    (n_angles, det_count); values are line integrals in pixel units (multiply by the pixel size in mm
    to get attenuation [1/mm] times mm). ``A.adjoint(y)`` is the exact matched transpose. Both are
    autograd functions (also twice differentiable), for float32/float64 on any device and half
    precision on CUDA.

    How products are computed (backend "torch"/"auto"): matrix-free by default. Every call walks the
    rays (compiled kernels on the CPU, vectorised torch in chunks of rays on other devices), so a new
    geometry costs nothing to set up and memory grows with the images, not with views x pixels. The
    sparse system matrix is a cache for the many-iteration case, under this policy:

    - It is built only after the caller announces at least ``MATRIX_MIN_CALLS`` (20) products with
      :meth:`expect_calls`, never on the first call of a geometry otherwise; it is then built on the
      next call, for that call's dtype and device (a few projections' worth of time).
    - Only when its exact size (a counting pass over the rays: nnz x (index + value) for A and A^T)
      is at most ``matrix_bytes``; a larger one is not built and the calls stay matrix-free.
    - Built matrices stay in a process-wide least-recently-used cache capped at
      ``operators.system_matrix.MATRICES.max_bytes`` (2 GiB), and any ``Radon`` of the same geometry,
      model, dtype and device uses one found there.

    So the page, the CLI and batch jobs get the matrix-free projector for simulation, FBP and one-off
    products, and the matrix where an iterative method or a network fit announces its iterations.

    Parameters
    ----------
    geometry : :class:`operators.ParallelBeam` or :class:`operators.FanBeam`.
    backend : "auto" (the PyTorch backend), "torch" or "astra".
    model : pixel model, "linear" (Joseph, ASTRA ``linear``) or "line" (intersection lengths, ASTRA
        ``line``/``line_fanflat``); default "linear" for parallel and "line" for fan beams, matching
        ASTRA's CPU projectors for each.
    chunk_bytes : working memory of one matrix-free call beyond its input and output, in bytes
        (default 256 MiB): chunks of rays on GPUs, per-thread image buffers of the CPU adjoint.
    matrix_bytes : largest cached matrix pair to build, in bytes (default 2 GiB).
    """

    def __init__(self, geometry: Geometry, backend: str = "auto", model: str | None = None,
                 chunk_bytes: int = DEFAULT_CHUNK_BYTES, matrix_bytes: int = DEFAULT_MATRIX_BYTES) -> None:
        if not isinstance(geometry, Geometry):
            raise TypeError(f"geometry must be a ParallelBeam or FanBeam, got {type(geometry).__name__}")
        self.geometry = geometry
        self.model = check_model(model or ("line" if isinstance(geometry, FanBeam) else "linear"))
        self.chunk_bytes = _check_bytes("chunk_bytes", chunk_bytes, 1 << 16)
        self.matrix_bytes = _check_bytes("matrix_bytes", matrix_bytes, 0)
        self._backend = make_backend(backend, geometry, self.model, self.chunk_bytes, self.matrix_bytes)

    def expect_calls(self, calls: int) -> Radon:
        """Announce about ``calls`` more forward/adjoint products with this geometry (an iterative method).

        From ``MATRIX_MIN_CALLS`` (20) on, the next product builds the cached sparse matrix if it fits
        ``matrix_bytes`` (see the class docstring); fewer calls change nothing. Returns ``self``.
        """
        if isinstance(calls, bool) or not isinstance(calls, int) or calls < 0:
            raise ValueError(f"calls must be an integer >= 0, got {calls!r}")
        self._backend.expect_calls(calls)
        return self

    @property
    def backend(self) -> str:
        return self._backend.name

    def __repr__(self) -> str:
        return f"Radon({self.geometry!r}, backend={self.backend!r}, model={self.model!r})"

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward(images)

    def _check(self, tensor: torch.Tensor, trailing: tuple[int, int], what: str) -> None:
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"{what} must be a torch.Tensor, got {type(tensor).__name__}")
        if tensor.dtype not in _DTYPES:
            raise TypeError(f"{what} must be a floating-point tensor, got dtype {tensor.dtype}")
        if tensor.dtype in (torch.float16, torch.bfloat16) and tensor.device.type != "cuda":
            raise TypeError(f"half-precision {what} are supported on CUDA only; use float32 on {tensor.device}")
        if tensor.ndim not in (2, 4) or tuple(tensor.shape[-2:]) != trailing:
            raise ValueError(f"{what} must have shape (B, C, {trailing[0]}, {trailing[1]}) or "
                             f"({trailing[0]}, {trailing[1]}), got {tuple(tensor.shape)}")

    @staticmethod
    def _apply(function, tensor: torch.Tensor, backend) -> torch.Tensor:
        flat = tensor.reshape(-1, *tensor.shape[-2:])
        out = function.apply(flat.contiguous(), backend)
        return out.reshape(*tensor.shape[:-2], *out.shape[-2:])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Project images (B, C, H, W) or (H, W) to sinograms (..., n_angles, det_count)."""
        self._check(images, self.geometry.image_size, "images")
        return self._apply(_Project, images, self._backend)

    def adjoint(self, sinograms: torch.Tensor) -> torch.Tensor:
        """Exact transpose ``A^T``: sinograms (..., n_angles, det_count) to images (..., H, W)."""
        self._check(sinograms, self.geometry.sinogram_shape, "sinograms")
        return self._apply(_Backproject, sinograms, self._backend)

    def fbp(self, sinograms: torch.Tensor, filter: str = "ram-lak") -> torch.Tensor:
        """Filtered backprojection (..., n_angles, det_count) -> (..., H, W), in the object's units
        (line integrals in pixel units give attenuation per pixel)."""
        self._check(sinograms, self.geometry.sinogram_shape, "sinograms")
        flat = sinograms.reshape(-1, *sinograms.shape[-2:])
        work = flat if flat.dtype in (torch.float32, torch.float64) else flat.float()
        images = _fbp.fbp(work, self.geometry, filter, self.chunk_bytes).to(sinograms.dtype)
        return images.reshape(*sinograms.shape[:-2], *images.shape[-2:])
