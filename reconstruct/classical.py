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

TV lives in :mod:`reconstruct.tv_solver`, the image gradient and TV in :mod:`reconstruct.regularisers`, what
the solvers share in :mod:`reconstruct.solver_common`; this module re-exports their public names.
"""

from __future__ import annotations

import time

import torch

from sparsect import operators
from sparsect.data.hu import MU_WATER
from sparsect.reconstruct.checks import check_iterations
from sparsect.reconstruct.regularisers import gradient, gradient_adjoint, total_variation
from sparsect.reconstruct.result import ProgressCallback, Reconstruction, StopLike, report_progress, stop_requested
from sparsect.reconstruct.solver_common import (
    GeometryLike,
    SinogramLike,
    as_operator,
    check_pixel_size,
    finish,
    initial_image,
    operator_norm,
    prepare_sinogram,
    residual_norm,
    safe_reciprocal,
    start_with_row_weights,
    synchronize,
)
from sparsect.reconstruct.tv_solver import (
    TV_LAMBDA_FACTOR,
    TV_NOISE_FACTOR,
    TV_NOISE_FREE_FACTOR,
    default_tv_lambda,
    object_attenuation,
    poisson_noise_std,
    tv,
)


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
    A = as_operator(geometry)
    pixel_size_mm = check_pixel_size(pixel_size_mm)
    y, squeeze = prepare_sinogram(sinogram, A)
    synchronize(y.device)
    start = time.perf_counter()
    with torch.no_grad():
        x = A.fbp(y, filter=filter)
    synchronize(y.device)
    return finish(x, squeeze, pixel_size_mm, mu_water, "fbp", 0, time.perf_counter() - start, [],
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
    iterations : number of updates (default 100).
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
    A = as_operator(geometry)
    pixel_size_mm = check_pixel_size(pixel_size_mm)
    iterations = check_iterations(iterations)
    A.expect_calls(2 * iterations)  # a forward and an adjoint per iteration: the cached matrix may pay
    if not 0 < relaxation < 2:
        raise ValueError(f"relaxation must lie in (0, 2), got {relaxation!r}")
    y, squeeze = prepare_sinogram(sinogram, A)
    synchronize(y.device)
    start = time.perf_counter()
    curve: list[float] = []
    done, stop_reason = 0, "completed"
    with torch.no_grad():
        x, row = start_with_row_weights(x0, y, A, pixel_size_mm, nonnegative)
        column = relaxation * safe_reciprocal(A.adjoint(torch.ones_like(y[:1])))
        residual = y - A(x)
        for _ in range(iterations):
            if stop_requested(stop):
                stop_reason = "stopped"
                break
            x += column * A.adjoint(row * residual)
            if nonnegative:
                x.clamp_(min=0)
            residual = y - A(x)
            curve.append(residual_norm(residual))
            done += 1
            report_progress(callback, done, iterations, curve[-1], x)
    synchronize(y.device)
    return finish(x, squeeze, pixel_size_mm, mu_water, "sirt", done, time.perf_counter() - start, curve,
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
    iterations : maximum number of CG iterations (default 20).
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
    A = as_operator(geometry)
    pixel_size_mm = check_pixel_size(pixel_size_mm)
    iterations = check_iterations(iterations)
    A.expect_calls(2 * iterations)  # a forward and an adjoint per iteration: the cached matrix may pay
    y, squeeze = prepare_sinogram(sinogram, A)
    synchronize(y.device)
    start = time.perf_counter()
    with torch.no_grad():
        x = initial_image(x0, y, A, pixel_size_mm)
        curve, done, stop_reason = _cgls_iterations(A, y, x, iterations, tol, nonnegative, stop, callback)
        if nonnegative:
            x.clamp_(min=0)
    synchronize(y.device)
    return finish(x, squeeze, pixel_size_mm, mu_water, "cgls", done, time.perf_counter() - start, curve,
                  {"iterations": iterations, "nonnegative": nonnegative, "tol": tol}, stop_reason)


def _batch_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-slice inner product of (B, ...) tensors, (B, 1, 1, 1)."""
    return (a * b).sum(dim=(1, 2, 3), keepdim=True)


def _cgls_iterations(A: operators.Radon, y: torch.Tensor, x: torch.Tensor, iterations: int, tol: float,
                     nonnegative: bool, stop: StopLike, callback: ProgressCallback) -> tuple[list[float], int, str]:
    """The CG recursion of :func:`cgls` from ``x`` (B, 1, H, W), updated in place: (residual curve, iterations
    run, stop reason)."""
    curve: list[float] = []
    done, stop_reason = 0, "completed"
    r = y - A(x)
    s = A.adjoint(r)
    p = s.clone()
    gamma = _batch_dot(s, s)
    gamma0 = float(gamma.sum())
    for _ in range(iterations):
        if float(gamma.sum()) <= (tol ** 2) * gamma0 or gamma0 == 0.0:
            break
        if stop_requested(stop):
            stop_reason = "stopped"
            break
        q = A(p)
        qq = _batch_dot(q, q)
        alpha = torch.where(qq > 0, gamma / qq.clamp_min(1e-30), torch.zeros_like(qq))
        x += alpha * p
        r -= alpha * q
        s = A.adjoint(r)
        gamma_new = _batch_dot(s, s)
        beta = torch.where(gamma > 0, gamma_new / gamma.clamp_min(1e-30), torch.zeros_like(gamma))
        p = s + beta * p
        gamma = gamma_new
        done += 1
        curve.append(residual_norm(r))
        report_progress(callback, done, iterations, curve[-1], x.clamp(min=0) if nonnegative else x)
    return curve, done, stop_reason


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
    A = as_operator(geometry)
    pixel_size_mm = check_pixel_size(pixel_size_mm)
    iterations = check_iterations(iterations)
    A.expect_calls(2 * iterations)  # a forward and an adjoint per iteration: the cached matrix may pay
    if not 0 < relaxation < 2:
        raise ValueError(f"relaxation must lie in (0, 2), got {relaxation!r}")
    subsets = max(1, min(int(subsets), A.geometry.n_angles))
    y, squeeze = prepare_sinogram(sinogram, A)
    synchronize(y.device)
    start = time.perf_counter()
    with torch.no_grad():
        x, row = start_with_row_weights(x0, y, A, pixel_size_mm, nonnegative)
        weights = _subset_weights(A, y, row, subsets, relaxation)
        curve, done, stop_reason = _os_sart_epochs(A, y, x, weights, iterations, nonnegative, stop, callback)
    synchronize(y.device)
    return finish(x, squeeze, pixel_size_mm, mu_water, "os_sart", done, time.perf_counter() - start,
                  curve, {"iterations": iterations, "subsets": subsets, "relaxation": relaxation,
                          "nonnegative": nonnegative}, stop_reason)


def _os_sart_epochs(A: operators.Radon, y: torch.Tensor, x: torch.Tensor,
                    weights: tuple[list[int], list[torch.Tensor], list[torch.Tensor]], iterations: int,
                    nonnegative: bool, stop: StopLike, callback: ProgressCallback) -> tuple[list[float], int, str]:
    """The epochs of :func:`os_sart` from ``x`` (B, 1, H, W), updated in place, with the subsets' ``weights``
    (:func:`_subset_weights`): (residual curve, epochs run, stop reason)."""
    order, masks, columns = weights
    curve: list[float] = []
    done, stop_reason = 0, "completed"
    for _ in range(iterations):
        if stop_requested(stop):
            stop_reason = "stopped"
            break
        for s in order:
            x += columns[s] * A.adjoint(masks[s] * (y - A(x)))
            if nonnegative:
                x.clamp_(min=0)
        curve.append(residual_norm(y - A(x)))
        done += 1
        report_progress(callback, done, iterations, curve[-1], x)
    return curve, done, stop_reason


def _subset_weights(A: operators.Radon, y: torch.Tensor, row: torch.Tensor, subsets: int, relaxation: float
                    ) -> tuple[list[int], list[torch.Tensor], list[torch.Tensor]]:
    """OS-SART's subsets: (the bit-reversed visiting order, each subset's ray weights ``R_s`` (its view mask
    times the ray weights ``row``, (1, 1, n_angles, det_count)), each subset's ``relaxation * C_s``
    (1, 1, H, W))."""
    n_angles = A.geometry.n_angles
    bits = max(1, (subsets - 1).bit_length())
    order = sorted(range(subsets), key=lambda s: int(format(s, f"0{bits}b")[::-1], 2))
    masks, columns = [], []
    for s in range(subsets):
        mask = torch.zeros((1, 1, n_angles, 1), dtype=torch.float32, device=y.device)
        mask[:, :, s::subsets] = 1.0
        masks.append(mask * row)
        columns.append(relaxation * safe_reciprocal(A.adjoint(mask.expand_as(y[:1]).contiguous())))
    return order, masks, columns


__all__ = ["TV_LAMBDA_FACTOR", "TV_NOISE_FACTOR", "TV_NOISE_FREE_FACTOR", "GeometryLike", "Reconstruction",
           "SinogramLike", "cgls", "default_tv_lambda", "fbp", "gradient", "gradient_adjoint", "object_attenuation",
           "operator_norm", "os_sart", "poisson_noise_std", "sirt", "total_variation", "tv"]
