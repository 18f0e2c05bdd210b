"""What the classical solvers share: the projector of a geometry, the sinogram checked and batched, the
starting image, SIRT/SART's ray weights, the projector's norm and the result (mu in 1/mm and HU).

The solvers reconstruct the attenuation per pixel ``x = mu * pixel_size_mm`` (dimensionless) on a batch of
sinograms (B, 1, n_angles, det_count) in float32; see :mod:`reconstruct.classical`.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from sparsect import operators
from sparsect.data.hu import mu_to_hu
from sparsect.reconstruct.result import Reconstruction, StopLike, stop_requested

SinogramLike = torch.Tensor | np.ndarray
GeometryLike = operators.Geometry | operators.Radon

_NORM_CACHE: dict[tuple, float] = {}


def as_operator(geometry: GeometryLike) -> operators.Radon:
    """The projector of ``geometry``: a :class:`operators.Radon` as given, or one built for an
    :class:`operators.Geometry`; ``TypeError`` for anything else."""
    if isinstance(geometry, operators.Radon):
        return geometry
    if isinstance(geometry, operators.Geometry):
        return operators.Radon(geometry)
    raise TypeError(f"geometry must be an operators.Geometry or operators.Radon, got {type(geometry).__name__}")


def prepare_sinogram(sinogram: SinogramLike, A: operators.Radon) -> tuple[torch.Tensor, bool]:
    """Sinogram as float32 (B, 1, n_angles, det_count) and whether the input was 2D."""
    if isinstance(sinogram, np.ndarray):
        sinogram = torch.from_numpy(np.ascontiguousarray(sinogram))
    if not isinstance(sinogram, torch.Tensor):
        raise TypeError(f"sinogram must be a torch.Tensor or numpy array, got {type(sinogram).__name__}")
    expected = A.geometry.sinogram_shape
    squeeze = sinogram.ndim == 2
    if squeeze:
        sinogram = sinogram[None, None]
    if sinogram.ndim != 4 or sinogram.shape[1] != 1 or tuple(sinogram.shape[-2:]) != expected:
        raise ValueError(f"sinogram must have shape {expected} or (B, 1, {expected[0]}, {expected[1]}), "
                         f"got {tuple(sinogram.shape)}")
    sinogram = sinogram.detach().to(torch.float32)
    if not torch.isfinite(sinogram).all():
        raise ValueError("sinogram contains NaN or infinite values")
    return sinogram.contiguous(), squeeze


def check_pixel_size(pixel_size_mm: float) -> float:
    """``pixel_size_mm`` as a float, ``ValueError`` unless it is a positive finite length in mm."""
    pixel_size_mm = float(pixel_size_mm)
    if not (math.isfinite(pixel_size_mm) and pixel_size_mm > 0):
        raise ValueError(f"pixel_size_mm must be a positive length in mm, got {pixel_size_mm!r}")
    return pixel_size_mm


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on a CUDA ``device`` (no-op elsewhere), so wall times are the work's."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def initial_image(x0: torch.Tensor | None, y: torch.Tensor, A: operators.Radon, pixel_size_mm: float) -> torch.Tensor:
    """Starting image in pixel units (B, 1, H, W) from an optional mu [1/mm] image."""
    shape = (y.shape[0], 1, *A.geometry.image_size)
    if x0 is None:
        return torch.zeros(shape, dtype=torch.float32, device=y.device)
    x0 = torch.as_tensor(x0).detach().to(device=y.device, dtype=torch.float32) * pixel_size_mm
    try:
        return x0.expand(shape).clone()
    except RuntimeError as exc:
        raise ValueError(f"x0 of shape {tuple(x0.shape)} does not fit images of shape {shape}") from exc


def finish(x: torch.Tensor, squeeze: bool, pixel_size_mm: float, mu_water: float, method: str,
           iterations: int, seconds: float, curve: list[float], settings: dict,
           stop_reason: str = "completed") -> Reconstruction:
    """The :class:`Reconstruction` of the (B, 1, H, W) attenuation per pixel ``x``: ``mu = x / pixel_size_mm``
    (1/mm) and its HU (``mu_water``, negative attenuation kept), (H, W) when the input sinogram was 2D
    (``squeeze``); ``settings`` after the pixel size and water attenuation."""
    mu = x / pixel_size_mm
    hu = mu_to_hu(mu[:, 0], mu_water, clip_negative=False).cpu().numpy().astype(np.float32)
    if squeeze:
        mu, hu = mu[0, 0], hu[0]
    settings = {"pixel_size_mm": pixel_size_mm, "mu_water": mu_water, **settings}
    return Reconstruction(image_hu=hu, mu=mu, method=method, iterations=iterations, seconds=seconds,
                          curve=curve, settings=settings, device=str(x.device), n_parameters=0,
                          stop_reason=stop_reason)


def start_with_row_weights(x0: torch.Tensor | None, y: torch.Tensor, A: operators.Radon, pixel_size_mm: float,
                           nonnegative: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Initial image (clamped at 0 when ``nonnegative``) and the SIRT/SART ray weights 1 / (A 1)."""
    x = initial_image(x0, y, A, pixel_size_mm)
    if nonnegative:
        x.clamp_(min=0)
    ones_image = torch.ones((1, 1, *A.geometry.image_size), dtype=torch.float32, device=y.device)
    return x, safe_reciprocal(A(ones_image))


def safe_reciprocal(values: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """``1 / values`` where ``values > eps``, else 0 (a ray or pixel the projector does not reach)."""
    return torch.where(values > eps, 1.0 / values.clamp_min(eps), torch.zeros_like(values))


def operator_norm(geometry: GeometryLike, device: torch.device | str = "cpu", iterations: int = 50,
                  stop: StopLike = None) -> float:
    """Largest singular value of the projector ``A`` (pixel units), by float32 power iteration on
    ``A^T A`` on ``device``; cached per geometry, slightly enlarged (x1.01) to be a safe upper bound.

    ``stop`` is checked between the power iterations (each a forward and an adjoint projection, about 0.1 s at
    1024 x 1024): once it fires the estimate so far is returned, not cached, and is no bound."""
    A = as_operator(geometry)
    device = torch.device(device)
    key = (A.geometry.key(), A.model, A.backend, str(device))
    if key not in _NORM_CACHE:
        generator = torch.Generator().manual_seed(0)
        x = torch.rand(A.geometry.image_size, dtype=torch.float32, generator=generator).to(device)
        value = 0.0
        with torch.no_grad():
            for _ in range(iterations):
                x = A.adjoint(A(x))
                value = float(x.norm())
                x = x / value
                if stop_requested(stop):
                    return 1.01 * math.sqrt(value)
        _NORM_CACHE[key] = 1.01 * math.sqrt(value)
    return _NORM_CACHE[key]


def residual_norm(r: torch.Tensor) -> float:
    """``||r||_2`` over the whole batch, summed in float64 (sinogram units)."""
    return float(torch.linalg.vector_norm(r.double()))


__all__ = ["GeometryLike", "SinogramLike", "as_operator", "check_pixel_size", "finish", "initial_image",
           "operator_norm", "prepare_sinogram", "residual_norm", "safe_reciprocal", "start_with_row_weights",
           "synchronize"]
