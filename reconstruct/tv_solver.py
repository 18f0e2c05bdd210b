"""Total-variation regularised reconstruction by Chambolle-Pock (PDHG) and its data-scaled default weight.

TV here is :func:`reconstruct.regularisers.total_variation` (isotropic, forward differences with a Neumann
boundary) of the attenuation per pixel ``x = mu * pixel_size_mm``; see :mod:`reconstruct.classical` for the
conventions every classical solver shares (shapes, units, ``stop``, ``callback``).
"""

from __future__ import annotations

import math
import time

import torch

from sparsect import operators
from sparsect.data.hu import MU_WATER
from sparsect.reconstruct.checks import check_iterations, check_photons
from sparsect.reconstruct.regularisers import gradient, gradient_adjoint, total_variation
from sparsect.reconstruct.result import ProgressCallback, Reconstruction, StopLike, report_progress, stop_requested
from sparsect.reconstruct.solver_common import (
    GeometryLike,
    SinogramLike,
    as_operator,
    check_pixel_size,
    finish,
    operator_norm,
    prepare_sinogram,
    synchronize,
)

#: Default TV weight factor when the noise level is unknown: lam = TV_LAMBDA_FACTOR * ||A^T y||_inf / max(H, W)
#: (see :func:`default_tv_lambda`).
TV_LAMBDA_FACTOR: float = 0.01
#: With a known noise level: factor = TV_NOISE_FREE_FACTOR + TV_NOISE_FACTOR * (sigma / x_object)^2, fitted to
#: the best weights of ``benchmarks/tv_lambda.py`` (see :func:`default_tv_lambda`).
TV_NOISE_FREE_FACTOR: float = 0.005
TV_NOISE_FACTOR: float = 0.16


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
    A = as_operator(geometry)
    y, _ = prepare_sinogram(sinogram, A)
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


def _tv_weights(y: torch.Tensor, A: operators.Radon, lam: float | None, lam_factor: float | None,
                photons: float | None) -> torch.Tensor:
    """The TV weight of each of the (B, 1, n_angles, det_count) sinograms ``y``, (B, 1, 1, 1): ``lam``, or the
    data-scaled default (:func:`default_tv_lambda`) when it is None."""
    if lam is None:
        return default_tv_lambda(y, A, lam_factor, photons).to(y.device).view(-1, 1, 1, 1)
    if not (math.isfinite(float(lam)) and float(lam) >= 0):
        raise ValueError(f"lam must be a finite number >= 0, got {lam!r}")
    return torch.full((y.shape[0], 1, 1, 1), float(lam), dtype=torch.float32, device=y.device)


def _chambolle_pock(A: operators.Radon, y: torch.Tensor, lam_b: torch.Tensor, iterations: int, tol: float,
                    nonnegative: bool, init: str, stop: StopLike, callback: ProgressCallback
                    ) -> tuple[torch.Tensor, list[float], int, str, float]:
    """The PDHG iterations of :func:`tv`: (x (B, 1, H, W), objective curve, iterations run, stop reason,
    the primal/dual step)."""
    norm_a = operator_norm(A, y.device, stop=stop)  # stopped there: the loop below returns the start image
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
    (:func:`reconstruct.regularisers.total_variation`). The operator ``K = [A; c grad]`` with
    ``c = ||A|| / sqrt(8)`` balances the two blocks (``||c grad|| <= ||A||``, so ``||K|| <= sqrt(2) ||A||``) and
    the steps are ``sigma = tau = 0.99 / ||K||``; one forward and one back projection per iteration.

    Parameters
    ----------
    sinogram : (n_angles, det_count) or (B, 1, n_angles, det_count), line integrals of mu[1/mm] * mm.
    geometry : acquisition geometry (or a :class:`operators.Radon`).
    lam : TV weight in the units of the objective above; None uses :func:`default_tv_lambda` per
        sinogram, which scales with the data and, when ``photons`` says how noisy they are, with the noise.
    iterations : maximum iterations (default 300).
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
    A = as_operator(geometry)
    pixel_size_mm = check_pixel_size(pixel_size_mm)
    iterations = check_iterations(iterations)
    A.expect_calls(2 * iterations)  # a forward and an adjoint per iteration: the cached matrix may pay
    if init not in ("fbp", "zeros"):
        raise ValueError(f"init must be 'fbp' or 'zeros', got {init!r}")
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, got {tol!r}")
    y, squeeze = prepare_sinogram(sinogram, A)
    synchronize(y.device)
    start = time.perf_counter()
    lam_b = _tv_weights(y, A, lam, lam_factor, photons)
    x, curve, done, stop_reason, step = _chambolle_pock(A, y, lam_b, iterations, tol, nonnegative, init, stop, callback)
    synchronize(y.device)
    lam_out = lam_b.view(-1).tolist()
    return finish(x, squeeze, pixel_size_mm, mu_water, "tv", done, time.perf_counter() - start, curve,
                  {"lam": lam_out[0] if len(lam_out) == 1 else lam_out,
                   "lam_factor": lam_factor if lam is None else None, "photons": photons,
                   "iterations": iterations, "tol": tol, "nonnegative": nonnegative, "init": init,
                   "tau": step, "sigma": step}, stop_reason)


__all__ = ["TV_LAMBDA_FACTOR", "TV_NOISE_FACTOR", "TV_NOISE_FREE_FACTOR", "default_tv_lambda", "object_attenuation",
           "poisson_noise_std", "tv"]
