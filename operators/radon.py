"""The differentiable Radon transform ``A`` with its exact adjoint and filtered backprojection."""

from __future__ import annotations

import torch

from sparsect.operators import fbp as _fbp
from sparsect.operators.backends import make_backend
from sparsect.operators.filters import filter_sinogram
from sparsect.operators.geometry import FanBeam, Geometry

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


class Radon:
    """Forward model ``A`` of a 2D CT scan: line integrals of an image along the rays of ``geometry``.

    ``A(x)`` maps images (B, C, H, W) or (H, W) to sinograms (B, C, n_angles, det_count) or
    (n_angles, det_count); values are line integrals in pixel units (multiply by the pixel size in mm
    to get attenuation [1/mm] times mm). ``A.adjoint(y)`` is the exact matched transpose. Both are
    autograd functions (also twice differentiable), for float32/float64 on any device and half
    precision on CUDA.

    Parameters
    ----------
    geometry : :class:`operators.ParallelBeam` or :class:`operators.FanBeam`.
    backend : "auto" (the PyTorch backend), "torch" or "astra".
    model : pixel model, "linear" (Joseph, ASTRA ``linear``) or "line" (intersection lengths, ASTRA
        ``line``/``line_fanflat``); default "linear" for parallel and "line" for fan beams, matching
        ASTRA's CPU projectors for each.
    """

    def __init__(self, geometry: Geometry, backend: str = "auto", model: str | None = None) -> None:
        if not isinstance(geometry, Geometry):
            raise TypeError(f"geometry must be a ParallelBeam or FanBeam, got {type(geometry).__name__}")
        self.geometry = geometry
        self.model = model or ("line" if isinstance(geometry, FanBeam) else "linear")
        self._backend = make_backend(backend, geometry, self.model)

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

    backprojection = adjoint

    def filter_sinogram(self, sinograms: torch.Tensor, filter: str = "ram-lak") -> torch.Tensor:
        """Ramp-filter sinograms along the detector axis (parallel-beam scaling)."""
        self._check(sinograms, self.geometry.sinogram_shape, "sinograms")
        return filter_sinogram(sinograms, self.geometry.det_spacing, filter)

    def fbp(self, sinograms: torch.Tensor, filter: str = "ram-lak") -> torch.Tensor:
        """Filtered backprojection (..., n_angles, det_count) -> (..., H, W), in the object's units
        (line integrals in pixel units give attenuation per pixel)."""
        self._check(sinograms, self.geometry.sinogram_shape, "sinograms")
        flat = sinograms.reshape(-1, *sinograms.shape[-2:])
        work = flat if flat.dtype in (torch.float32, torch.float64) else flat.float()
        images = _fbp.fbp(work, self.geometry, filter).to(sinograms.dtype)
        return images.reshape(*sinograms.shape[:-2], *images.shape[-2:])

    def operator_norm(self, iterations: int = 30, device: torch.device | str = "cpu") -> float:
        """Largest singular value of ``A`` (power iteration on A^T A, float64, deterministic start)."""
        generator = torch.Generator().manual_seed(0)
        x = torch.rand(self.geometry.image_size, dtype=torch.float64, generator=generator).to(device)
        value = 0.0
        with torch.no_grad():
            for _ in range(iterations):
                x = self.adjoint(self.forward(x))
                value = float(x.norm())
                x = x / value
        return value ** 0.5
