"""Classical sparse-view CT reconstruction: FBP, SIRT, CGLS, OS-SART and TV (Chambolle-Pock).

Units and layout
----------------
A sinogram value is a line integral ``sum(mu [1/mm] * length [mm])``. The projector of
:mod:`operators` works in pixel units, so the solvers reconstruct the dimensionless attenuation per
pixel ``x = mu * pixel_size_mm`` from ``A x = y`` and return ``mu = x / pixel_size_mm`` (1/mm) and HU.

Every method accepts a sinogram of shape (n_angles, det_count) or (B, 1, n_angles, det_count)
(torch tensor or numpy array), computes in float32 on the sinogram's device (CPU or CUDA) with the
operators' projector only, and returns a :class:`reconstruct.result.Reconstruction`. ``geometry`` is an
:class:`operators.ParallelBeam`/:class:`operators.FanBeam` or an already built :class:`operators.Radon`.

Convergence curves (``Reconstruction.curve``): SIRT, CGLS and OS-SART record the data residual
``||A x - y||_2`` (over the whole batch, sinogram units) after each iteration/epoch; TV records the
objective ``||A x - y||^2 / 2 + lam * TV(x)`` (summed over the batch).

Stopping: the iterative methods (SIRT, CGLS, OS-SART, TV) take ``stop`` (None, a ``threading.Event`` or a
zero-argument callable returning True to stop), checked once before each iteration (epoch for OS-SART).
When it fires the current iterate is returned as a normal result with ``iterations`` = iterations run
and ``stop_reason = "stopped"``; it equals the same method run with that many iterations and no stop.

Progress: they also take ``callback``, called after each iteration (epoch) with a
:class:`reconstruct.result.IterationProgress` (iteration, budget, the value just added to ``curve`` and,
every 10 iterations and at the last, the first slice's current iterate for a live preview).
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from sparsect import operators
from sparsect.data.hu import MU_WATER, mu_to_hu
from sparsect.reconstruct.checks import check_iterations, check_photons
from sparsect.reconstruct.result import ProgressCallback, Reconstruction, StopLike, report_progress, stop_requested

SinogramLike = torch.Tensor | np.ndarray
GeometryLike = operators.Geometry | operators.Radon

#: Default TV weight factor when the noise level is unknown: lam = TV_LAMBDA_FACTOR * ||A^T y||_inf / max(H, W)
#: (see :func:`default_tv_lambda`).
TV_LAMBDA_FACTOR: float = 0.01
#: With a known noise level: factor = TV_NOISE_FREE_FACTOR + TV_NOISE_FACTOR * (sigma / x_object)^2, fitted to
#: the best weights of ``benchmarks/tv_lambda.py`` (see :func:`default_tv_lambda`).
TV_NOISE_FREE_FACTOR: float = 0.005
TV_NOISE_FACTOR: float = 0.16

_NORM_CACHE: dict[tuple, float] = {}


# ----------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------

def _operator(geometry: GeometryLike) -> operators.Radon:
    if isinstance(geometry, operators.Radon):
        return geometry
    if isinstance(geometry, operators.Geometry):
        return operators.Radon(geometry)
    raise TypeError(f"geometry must be an operators.Geometry or operators.Radon, got {type(geometry).__name__}")


def _prepare(sinogram: SinogramLike, A: operators.Radon) -> tuple[torch.Tensor, bool]:
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


def _check_pixel_size(pixel_size_mm: float) -> float:
    pixel_size_mm = float(pixel_size_mm)
    if not (math.isfinite(pixel_size_mm) and pixel_size_mm > 0):
        raise ValueError(f"pixel_size_mm must be a positive length in mm, got {pixel_size_mm!r}")
    return pixel_size_mm


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _initial(x0: torch.Tensor | None, y: torch.Tensor, A: operators.Radon, pixel_size_mm: float) -> torch.Tensor:
    """Starting image in pixel units (B, 1, H, W) from an optional mu [1/mm] image."""
    shape = (y.shape[0], 1, *A.geometry.image_size)
    if x0 is None:
        return torch.zeros(shape, dtype=torch.float32, device=y.device)
    x0 = torch.as_tensor(x0).detach().to(device=y.device, dtype=torch.float32) * pixel_size_mm
    try:
        return x0.expand(shape).clone()
    except RuntimeError as exc:
        raise ValueError(f"x0 of shape {tuple(x0.shape)} does not fit images of shape {shape}") from exc


def _finish(x: torch.Tensor, squeeze: bool, pixel_size_mm: float, mu_water: float, method: str,
            iterations: int, seconds: float, curve: list[float], parameters: dict,
            stop_reason: str = "completed") -> Reconstruction:
    mu = x / pixel_size_mm
    hu = mu_to_hu(mu[:, 0], mu_water, clip_negative=False).cpu().numpy().astype(np.float32)
    if squeeze:
        mu, hu = mu[0, 0], hu[0]
    parameters = {"pixel_size_mm": pixel_size_mm, "mu_water": mu_water, **parameters}
    return Reconstruction(image_hu=hu, mu=mu, method=method, iterations=iterations, seconds=seconds,
                          curve=curve, parameters=parameters, device=str(x.device), n_parameters=0,
                          stop_reason=stop_reason)


def _start_with_row_weights(x0: torch.Tensor | None, y: torch.Tensor, A: operators.Radon, pixel_size_mm: float,
                            nonnegative: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Initial image (clamped at 0 when ``nonnegative``) and the SIRT/SART ray weights 1 / (A 1)."""
    x = _initial(x0, y, A, pixel_size_mm)
    if nonnegative:
        x.clamp_(min=0)
    ones_image = torch.ones((1, 1, *A.geometry.image_size), dtype=torch.float32, device=y.device)
    return x, _safe_reciprocal(A(ones_image))


def _safe_reciprocal(values: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    return torch.where(values > eps, 1.0 / values.clamp_min(eps), torch.zeros_like(values))


def operator_norm(geometry: GeometryLike, device: torch.device | str = "cpu", iterations: int = 50) -> float:
    """Largest singular value of the projector ``A`` (pixel units), by float32 power iteration on
    ``A^T A`` on ``device``; cached per geometry, slightly enlarged (x1.01) to be a safe upper bound."""
    A = _operator(geometry)
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
        _NORM_CACHE[key] = 1.01 * math.sqrt(value)
    return _NORM_CACHE[key]


def _residual_norm(r: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(r.double()))


# ----------------------------------------------------------------------------------------------------
# FBP
# ----------------------------------------------------------------------------------------------------

def fbp(sinogram: SinogramLike, geometry: GeometryLike, filter: str = "ram-lak", pixel_size_mm: float = 1.0,
        mu_water: float = MU_WATER) -> Reconstruction:
    """Filtered backprojection with the operators' ramp filters (fan-beam weighting included).

    Parameters
    ----------
    sinogram : (n_angles, det_count) or (B, 1, n_angles, det_count), line integrals of mu[1/mm] * mm.
    geometry : acquisition geometry (or a :class:`operators.Radon`).
    filter : "ram-lak", "shepp-logan", "cosine", "hamming" or "hann".
    pixel_size_mm : reconstruction pixel size in mm.
    mu_water : attenuation of water (1/mm) for the HU conversion.

    Returns
    -------
    Reconstruction with ``image_hu`` (H, W) or (B, H, W) and ``mu`` in 1/mm.
    """
    A = _operator(geometry)
    pixel_size_mm = _check_pixel_size(pixel_size_mm)
    y, squeeze = _prepare(sinogram, A)
    _synchronize(y.device)
    start = time.perf_counter()
    with torch.no_grad():
        x = A.fbp(y, filter=filter)
    _synchronize(y.device)
    return _finish(x, squeeze, pixel_size_mm, mu_water, "fbp", 0, time.perf_counter() - start, [],
                   {"filter": filter})


# ----------------------------------------------------------------------------------------------------
# SIRT
# ----------------------------------------------------------------------------------------------------

def sirt(sinogram: SinogramLike, geometry: GeometryLike, iterations: int = 100, nonnegative: bool = True,
         relaxation: float = 1.0, pixel_size_mm: float = 1.0, x0: torch.Tensor | None = None,
         mu_water: float = MU_WATER, stop: StopLike = None, callback: ProgressCallback = None) -> Reconstruction:
    """Simultaneous iterative reconstruction: ``x += relaxation * C A^T R (y - A x)``.

    ``R`` = 1 / row sums of ``A`` (per ray), ``C`` = 1 / column sums (per pixel); zero sums get weight 0.
    This is (projected) gradient descent on ``||A x - y||_R^2 / 2`` in the ``C^-1`` metric with
    ``||R^1/2 A C^1/2|| <= 1``, so for ``0 < relaxation < 2`` the weighted residual decreases every
    iteration; with ``nonnegative`` the iterate is clipped at 0 after each update (the projection
    onto x >= 0 is the same in any diagonal metric).

    Parameters
    ----------
    sinogram : (n_angles, det_count) or (B, 1, n_angles, det_count), line integrals of mu[1/mm] * mm.
    geometry : acquisition geometry (or a :class:`operators.Radon`).
    iterations : number of updates (default 100: about 1 s at 128^2 and 30-100 views on 2 CPU cores).
    nonnegative : clip negative attenuation after every update.
    relaxation : step factor in (0, 2).
    pixel_size_mm : pixel size in mm.
    x0 : optional starting image, mu in 1/mm, broadcastable to (B, 1, H, W).
    mu_water : attenuation of water (1/mm) for the HU conversion.
    stop : None, a ``threading.Event`` or a callable returning True to stop; checked before each update.
        When it fires the current iterate is returned with ``iterations`` = updates run and
        ``stop_reason = "stopped"``.
    callback : called after each update with a :class:`reconstruct.result.IterationProgress`.

    Returns
    -------
    Reconstruction; ``curve[k]`` is ``||A x_k+1 - y||_2`` after update ``k + 1``.
    """
    A = _operator(geometry)
    pixel_size_mm = _check_pixel_size(pixel_size_mm)
    iterations = check_iterations(iterations)
    A.expect_calls(2 * iterations)  # a forward and an adjoint per iteration: the cached matrix may pay
    if not 0 < relaxation < 2:
        raise ValueError(f"relaxation must lie in (0, 2), got {relaxation!r}")
    y, squeeze = _prepare(sinogram, A)
    _synchronize(y.device)
    start = time.perf_counter()
    curve: list[float] = []
    done, stop_reason = 0, "completed"
    with torch.no_grad():
        x, row = _start_with_row_weights(x0, y, A, pixel_size_mm, nonnegative)
        column = relaxation * _safe_reciprocal(A.adjoint(torch.ones_like(y[:1])))
        residual = y - A(x)
        for _ in range(iterations):
            if stop_requested(stop):
                stop_reason = "stopped"
                break
            x += column * A.adjoint(row * residual)
            if nonnegative:
                x.clamp_(min=0)
            residual = y - A(x)
            curve.append(_residual_norm(residual))
            done += 1
            report_progress(callback, done, iterations, curve[-1], x)
    _synchronize(y.device)
    return _finish(x, squeeze, pixel_size_mm, mu_water, "sirt", done, time.perf_counter() - start, curve,
                   {"iterations": iterations, "nonnegative": nonnegative, "relaxation": relaxation}, stop_reason)


# ----------------------------------------------------------------------------------------------------
# CGLS
# ----------------------------------------------------------------------------------------------------

def cgls(sinogram: SinogramLike, geometry: GeometryLike, iterations: int = 20, nonnegative: bool = True,
         tol: float = 1e-6, pixel_size_mm: float = 1.0, x0: torch.Tensor | None = None,
         mu_water: float = MU_WATER, stop: StopLike = None, callback: ProgressCallback = None) -> Reconstruction:
    """Conjugate gradients on the normal equations ``A^T A x = A^T y`` (CGLS).

    Each iterate minimises ``||A x - y||`` over a growing Krylov subspace, so the residual decreases
    monotonically; on sparse-view data the iteration count is the regulariser (semi-convergence: the
    image gets noisier with more iterations). Nonnegativity is applied by clipping the final iterate
    only (the Krylov recursion itself is unconstrained; ``curve`` holds the unclipped iterates'
    residuals).

    Parameters
    ----------
    sinogram : (n_angles, det_count) or (B, 1, n_angles, det_count), line integrals of mu[1/mm] * mm.
    geometry : acquisition geometry (or a :class:`operators.Radon`).
    iterations : maximum number of CG iterations (default 20, well under 1 s at 128^2).
    nonnegative : clip negative attenuation of the result.
    tol : stop when ``||A^T (y - A x)|| <= tol * ||A^T (y - A x0)||`` for the whole batch.
    pixel_size_mm : pixel size in mm.
    x0 : optional starting image, mu in 1/mm, broadcastable to (B, 1, H, W).
    mu_water : attenuation of water (1/mm) for the HU conversion.
    stop : None, a ``threading.Event`` or a callable returning True to stop; checked before each iteration,
        after the ``tol`` test (so a converged run reports "completed"). When it fires the current
        iterate is returned with ``iterations`` = iterations run and ``stop_reason = "stopped"``.
    callback : called after each iteration with a :class:`reconstruct.result.IterationProgress`.

    Returns
    -------
    Reconstruction; ``curve[k]`` is ``||A x_k+1 - y||_2`` of the unclipped iterate (the result is clipped
    when ``nonnegative``, also when stopped).
    """
    A = _operator(geometry)
    pixel_size_mm = _check_pixel_size(pixel_size_mm)
    iterations = check_iterations(iterations)
    A.expect_calls(2 * iterations)  # a forward and an adjoint per iteration: the cached matrix may pay
    y, squeeze = _prepare(sinogram, A)
    _synchronize(y.device)
    start = time.perf_counter()
    curve: list[float] = []

    def batch_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a * b).sum(dim=(1, 2, 3), keepdim=True)

    done, stop_reason = 0, "completed"
    with torch.no_grad():
        x = _initial(x0, y, A, pixel_size_mm)
        r = y - A(x)
        s = A.adjoint(r)
        p = s.clone()
        gamma = batch_dot(s, s)
        gamma0 = float(gamma.sum())
        for _ in range(iterations):
            if float(gamma.sum()) <= (tol ** 2) * gamma0 or gamma0 == 0.0:
                break
            if stop_requested(stop):
                stop_reason = "stopped"
                break
            q = A(p)
            qq = batch_dot(q, q)
            alpha = torch.where(qq > 0, gamma / qq.clamp_min(1e-30), torch.zeros_like(qq))
            x += alpha * p
            r -= alpha * q
            s = A.adjoint(r)
            gamma_new = batch_dot(s, s)
            beta = torch.where(gamma > 0, gamma_new / gamma.clamp_min(1e-30), torch.zeros_like(gamma))
            p = s + beta * p
            gamma = gamma_new
            done += 1
            curve.append(_residual_norm(r))
            report_progress(callback, done, iterations, curve[-1], x.clamp(min=0) if nonnegative else x)
        if nonnegative:
            x.clamp_(min=0)
    _synchronize(y.device)
    return _finish(x, squeeze, pixel_size_mm, mu_water, "cgls", done, time.perf_counter() - start, curve,
                   {"iterations": iterations, "nonnegative": nonnegative, "tol": tol}, stop_reason)


# ----------------------------------------------------------------------------------------------------
# OS-SART
# ----------------------------------------------------------------------------------------------------

def os_sart(sinogram: SinogramLike, geometry: GeometryLike, iterations: int = 10, subsets: int = 10,
            relaxation: float = 1.0, nonnegative: bool = True, pixel_size_mm: float = 1.0,
            x0: torch.Tensor | None = None, mu_water: float = MU_WATER, stop: StopLike = None,
            callback: ProgressCallback = None) -> Reconstruction:
    """Ordered-subsets SART: SIRT updates restricted to interleaved subsets of the views.

    Views ``s, s + subsets, s + 2 subsets, ...`` form subset ``s``; an epoch visits every subset once
    (in bit-reversed order so consecutive subsets are far apart in angle) with
    ``x += relaxation * C_s A_s^T R_s (y_s - A_s x)``, ``C_s`` the inverse column sums of the subset.
    Subsets are applied by masking views of the full projector (backend-independent, one full
    projection per subset). Converges roughly ``subsets`` times faster per epoch than SIRT on
    consistent data; with noise it ends in a limit cycle, so keep epochs few.

    Parameters
    ----------
    sinogram : (n_angles, det_count) or (B, 1, n_angles, det_count), line integrals of mu[1/mm] * mm.
    geometry : acquisition geometry (or a :class:`operators.Radon`).
    iterations : number of epochs (full passes over all subsets), default 10.
    subsets : number of view subsets (clipped to n_angles).
    relaxation : step factor in (0, 2).
    nonnegative : clip negative attenuation after every subset update.
    pixel_size_mm : pixel size in mm.
    x0 : optional starting image, mu in 1/mm.
    mu_water : attenuation of water (1/mm) for the HU conversion.
    stop : None, a ``threading.Event`` or a callable returning True to stop; checked before each epoch
        (never inside one). When it fires the current iterate is returned with ``iterations`` = epochs
        run and ``stop_reason = "stopped"``.
    callback : called after each epoch with a :class:`reconstruct.result.IterationProgress`.

    Returns
    -------
    Reconstruction; ``curve[k]`` is the full residual ``||A x - y||_2`` after epoch ``k + 1``.
    """
    A = _operator(geometry)
    pixel_size_mm = _check_pixel_size(pixel_size_mm)
    iterations = check_iterations(iterations)
    A.expect_calls(2 * iterations)  # a forward and an adjoint per iteration: the cached matrix may pay
    if not 0 < relaxation < 2:
        raise ValueError(f"relaxation must lie in (0, 2), got {relaxation!r}")
    n_angles = A.geometry.n_angles
    subsets = max(1, min(int(subsets), n_angles))
    y, squeeze = _prepare(sinogram, A)
    _synchronize(y.device)
    start = time.perf_counter()
    bits = max(1, (subsets - 1).bit_length())
    order = sorted(range(subsets), key=lambda s: int(format(s, f"0{bits}b")[::-1], 2))
    curve: list[float] = []
    done, stop_reason = 0, "completed"
    with torch.no_grad():
        x, row = _start_with_row_weights(x0, y, A, pixel_size_mm, nonnegative)
        masks, columns = [], []
        for s in range(subsets):
            mask = torch.zeros((1, 1, n_angles, 1), dtype=torch.float32, device=y.device)
            mask[:, :, s::subsets] = 1.0
            masks.append(mask * row)
            columns.append(relaxation * _safe_reciprocal(A.adjoint(mask.expand_as(y[:1]).contiguous())))
        for _ in range(iterations):
            if stop_requested(stop):
                stop_reason = "stopped"
                break
            for s in order:
                x += columns[s] * A.adjoint(masks[s] * (y - A(x)))
                if nonnegative:
                    x.clamp_(min=0)
            curve.append(_residual_norm(y - A(x)))
            done += 1
            report_progress(callback, done, iterations, curve[-1], x)
    _synchronize(y.device)
    return _finish(x, squeeze, pixel_size_mm, mu_water, "os_sart", done, time.perf_counter() - start,
                   curve, {"iterations": iterations, "subsets": subsets, "relaxation": relaxation,
                           "nonnegative": nonnegative}, stop_reason)


# ----------------------------------------------------------------------------------------------------
# TV (Chambolle-Pock)
# ----------------------------------------------------------------------------------------------------

def gradient(x: torch.Tensor) -> torch.Tensor:
    """Forward differences with Neumann boundary: (..., H, W) -> (..., 2, H, W) (rows, then columns);
    the last difference along each axis is 0. Its norm is at most sqrt(8)."""
    g = torch.zeros((*x.shape[:-2], 2, *x.shape[-2:]), dtype=x.dtype, device=x.device)
    g[..., 0, :-1, :] = x[..., 1:, :] - x[..., :-1, :]
    g[..., 1, :, :-1] = x[..., :, 1:] - x[..., :, :-1]
    return g


def gradient_adjoint(g: torch.Tensor) -> torch.Tensor:
    """Exact adjoint of :func:`gradient` (minus the divergence): (..., 2, H, W) -> (..., H, W)."""
    rows, cols = g[..., 0, :, :], g[..., 1, :, :]
    out = torch.zeros_like(rows)
    out[..., :-1, :] -= rows[..., :-1, :]
    out[..., 1:, :] += rows[..., :-1, :]
    out[..., :, :-1] -= cols[..., :, :-1]
    out[..., :, 1:] += cols[..., :, :-1]
    return out


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Isotropic TV ``sum sqrt(dx^2 + dy^2)`` with forward differences, over the last two axes."""
    g = gradient(x)
    return torch.sqrt((g * g).sum(dim=-3)).sum(dim=(-2, -1))


def object_attenuation(image: torch.Tensor) -> torch.Tensor:
    """Typical attenuation of the object in (B, 1, H, W) images (e.g. FBP), shape (B,): the mean of the
    clipped image over the pixels above 10 % of its maximum; 1 for an empty image."""
    clipped = image.detach().clamp_min(0).reshape(image.shape[0], -1)
    peak = clipped.amax(dim=1, keepdim=True)
    inside = clipped > 0.1 * peak
    mean = (clipped * inside).sum(dim=1) / inside.sum(dim=1).clamp_min(1)
    return torch.where(peak[:, 0] > 0, mean, torch.ones_like(mean))


def poisson_noise_std(sinogram: SinogramLike, photons: float) -> torch.Tensor:
    """Root-mean-square noise of line integrals measured with ``photons`` incident photons per bin, shape
    (B,): ``sqrt(mean(exp(y) / photons))`` over the bins that see the object (``y`` above 1 % of its peak),
    the first-order variance of ``-log(counts / photons)`` for Poisson counts."""
    y = torch.as_tensor(sinogram).detach().float()
    y = y.reshape(-1, y.shape[-2] * y.shape[-1])
    seen = y > 0.01 * y.amax(dim=1, keepdim=True)
    variance = (torch.exp(y) * seen).sum(dim=1) / seen.sum(dim=1).clamp_min(1) / photons
    return variance.sqrt()


def default_tv_lambda(sinogram: SinogramLike, geometry: GeometryLike, factor: float | None = None,
                      photons: float | None = None) -> torch.Tensor:
    """Data-scaled TV weight per sinogram, shape (B,): ``factor * ||A^T y||_inf / max(H, W)``.

    ``A^T y`` grows like n_views x (attenuation per pixel) x (image size in pixels), the same way the
    data term's curvature ``A^T A`` scales, so the ratio is invariant to the data's units, the number
    of views and (for the same object) the resolution. ``factor`` (None: the default) depends on what is
    known about the noise:

    - ``photons=None`` (unknown): :data:`TV_LAMBDA_FACTOR`, the compromise over noise-free and noisy cases;
    - ``photons=math.inf`` (noise-free) or a photon count per bin (Poisson): ``TV_NOISE_FREE_FACTOR +
      TV_NOISE_FACTOR * (sigma / x)^2`` with ``sigma`` from :func:`poisson_noise_std` (0 when noise-free)
      and ``x`` the object's attenuation per pixel (:func:`object_attenuation` of the FBP): the noise
      relative to the signal in one pixel, fitted with ``benchmarks/tv_lambda.py`` (docs/BENCHMARKS.md).
    """
    A = _operator(geometry)
    y, _ = _prepare(sinogram, A)
    check_photons(photons)
    with torch.no_grad():
        peak = A.adjoint(y).abs().amax(dim=(1, 2, 3))
        if factor is None and photons is None:
            factor = TV_LAMBDA_FACTOR
        if factor is None:
            relative = torch.zeros_like(peak)
            if math.isfinite(photons):
                relative = poisson_noise_std(y, photons).to(peak) / object_attenuation(A.fbp(y)).to(peak)
            factor = TV_NOISE_FREE_FACTOR + TV_NOISE_FACTOR * relative**2
    return factor * peak / max(A.geometry.image_size)


def _chambolle_pock(A: operators.Radon, y: torch.Tensor, lam_b: torch.Tensor, iterations: int, tol: float,
                    nonnegative: bool, init: str, stop: StopLike, callback: ProgressCallback
                    ) -> tuple[torch.Tensor, list[float], int, str, float]:
    """The PDHG iterations of :func:`tv`: (x (B, 1, H, W), objective curve, iterations run, stop reason,
    the primal/dual step)."""
    norm_a = operator_norm(A, y.device)
    c = norm_a / math.sqrt(8.0)
    step = 0.99 / (math.sqrt(2.0) * norm_a)
    sigma = tau = step
    project = (lambda v: v.clamp_(min=0)) if nonnegative else (lambda v: v)
    radius = (lam_b / c).unsqueeze(-1)  # dual ball radius for c * grad, shape (B, 1, 1, 1, 1)
    curve: list[float] = []
    done, stop_reason = 0, "completed"
    with torch.no_grad():
        x = A.fbp(y) if init == "fbp" else torch.zeros((y.shape[0], 1, *A.geometry.image_size),
                                                         dtype=torch.float32, device=y.device)
        project(x)
        ax = A(x)
        x_bar, ax_bar = x, ax
        p = torch.zeros_like(y)
        q = torch.zeros((y.shape[0], 1, 2, *A.geometry.image_size), dtype=torch.float32, device=y.device)
        for _ in range(iterations):
            if stop_requested(stop):
                stop_reason = "stopped"
                break
            p = (p + sigma * (ax_bar - y)) / (1.0 + sigma)
            q = q + (sigma * c) * gradient(x_bar)
            q = q * torch.clamp(radius / torch.sqrt((q * q).sum(dim=2, keepdim=True)).clamp_min(1e-30), max=1.0)
            x_new = project(x - tau * (A.adjoint(p) + c * gradient_adjoint(q)))
            ax_new = A(x_new)
            change = float(torch.linalg.vector_norm(x_new - x))
            size = float(torch.linalg.vector_norm(x_new))
            x_bar, ax_bar = 2 * x_new - x, 2 * ax_new - ax
            x, ax = x_new, ax_new
            done += 1
            objective = 0.5 * ((ax - y) ** 2).sum(dim=(1, 2, 3)) + lam_b.view(-1) * total_variation(x[:, 0])
            curve.append(float(objective.double().sum()))
            report_progress(callback, done, iterations, curve[-1], x)
            if change <= tol * size:
                break
    return x, curve, done, stop_reason, step


def tv(sinogram: SinogramLike, geometry: GeometryLike, lam: float | None = None, iterations: int = 300,
       tol: float = 1e-4, nonnegative: bool = True, init: str = "fbp", lam_factor: float | None = None,
       photons: float | None = None, pixel_size_mm: float = 1.0, mu_water: float = MU_WATER, stop: StopLike = None,
       callback: ProgressCallback = None) -> Reconstruction:
    """Total-variation regularised least squares by Chambolle-Pock (PDHG).

    Solves ``min_x ||A x - y||^2 / 2 + lam * TV(x)`` subject to ``x >= 0`` (if ``nonnegative``), with
    ``x = mu * pixel_size_mm`` the attenuation per pixel and TV isotropic with forward differences
    (:func:`total_variation`). The operator ``K = [A; c grad]`` with ``c = ||A|| / sqrt(8)`` balances
    the two blocks (``||c grad|| <= ||A||``, so ``||K|| <= sqrt(2) ||A||``) and the steps are
    ``sigma = tau = 0.99 / ||K||``; one forward and one back projection per iteration.

    Parameters
    ----------
    sinogram : (n_angles, det_count) or (B, 1, n_angles, det_count), line integrals of mu[1/mm] * mm.
    geometry : acquisition geometry (or a :class:`operators.Radon`).
    lam : TV weight in the units of the objective above; None uses :func:`default_tv_lambda` per
        sinogram, which scales with the data and, when ``photons`` says how noisy they are, with the noise.
    iterations : maximum iterations (default 300: a few seconds at 128^2 on 2 CPU cores).
    tol : stop once ``||x_k+1 - x_k|| <= tol * ||x_k+1||`` (whole batch); 0 runs all iterations.
    nonnegative : constrain attenuation to be >= 0.
    init : "fbp" (warm start from the clipped ram-lak FBP) or "zeros".
    lam_factor : factor of the data-scaled default weight (used only when ``lam`` is None; None: chosen
        from ``photons``, see :func:`default_tv_lambda`).
    photons : incident photons per detector bin of the scan (Poisson noise), ``math.inf`` for noise-free
        data, None when unknown; only sets the default weight.
    pixel_size_mm : pixel size in mm.
    mu_water : attenuation of water (1/mm) for the HU conversion.
    stop : None, a ``threading.Event`` or a callable returning True to stop; checked before each iteration.
        When it fires the current iterate is returned with ``iterations`` = iterations run and
        ``stop_reason = "stopped"``.
    callback : called after each iteration with a :class:`reconstruct.result.IterationProgress`.

    Returns
    -------
    Reconstruction; ``curve[k]`` is the objective after iteration ``k + 1`` (summed over the batch).
    """
    A = _operator(geometry)
    pixel_size_mm = _check_pixel_size(pixel_size_mm)
    iterations = check_iterations(iterations)
    A.expect_calls(2 * iterations)  # a forward and an adjoint per iteration: the cached matrix may pay
    if init not in ("fbp", "zeros"):
        raise ValueError(f"init must be 'fbp' or 'zeros', got {init!r}")
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, got {tol!r}")
    y, squeeze = _prepare(sinogram, A)
    _synchronize(y.device)
    start = time.perf_counter()
    if lam is None:
        lam_b = default_tv_lambda(y, A, lam_factor, photons).to(y.device).view(-1, 1, 1, 1)
    else:
        if not (math.isfinite(float(lam)) and float(lam) >= 0):
            raise ValueError(f"lam must be a finite number >= 0, got {lam!r}")
        lam_b = torch.full((y.shape[0], 1, 1, 1), float(lam), dtype=torch.float32, device=y.device)
    x, curve, done, stop_reason, step = _chambolle_pock(A, y, lam_b, iterations, tol, nonnegative, init, stop, callback)
    sigma = tau = step
    _synchronize(y.device)
    lam_out = lam_b.view(-1).tolist()
    return _finish(x, squeeze, pixel_size_mm, mu_water, "tv", done, time.perf_counter() - start, curve,
                   {"lam": lam_out[0] if len(lam_out) == 1 else lam_out,
                    "lam_factor": lam_factor if lam is None else None, "photons": photons,
                    "iterations": iterations, "tol": tol, "nonnegative": nonnegative, "init": init,
                    "tau": tau, "sigma": sigma}, stop_reason)
