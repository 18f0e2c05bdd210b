"""Reconstruction methods for sparse-view CT (classical solvers and coordinate networks).

:func:`run` reconstructs with any method by name (:data:`METHODS`); the functions themselves are in
:mod:`.classical` (FBP, SIRT, CGLS, OS-SART; TV from :mod:`.tv_solver`) and :mod:`.neural` (LRNN, WIRE, SIREN, fitted
by :mod:`.fit` with the variants of :mod:`.variants`).
"""

from sparsect.reconstruct.classical import TV_LAMBDA_FACTOR, cgls, default_tv_lambda, fbp, os_sart, sirt, tv
from sparsect.reconstruct.metrics import WINDOWS, circle_mask, compare, psnr, rmse_hu, ssim, ssim_map, window_bounds
from sparsect.reconstruct.registry import (
    CLASSICAL_METHODS,
    METHODS,
    NETWORK_METHODS,
    PRESETS,
    RECOMMENDED_VARIANTS,
    VARIANT_NAMES,
    run,
)
from sparsect.reconstruct.result import Reconstruction

__all__ = [
    "CLASSICAL_METHODS", "METHODS", "NETWORK_METHODS", "PRESETS", "RECOMMENDED_VARIANTS", "TV_LAMBDA_FACTOR",
    "VARIANT_NAMES", "WINDOWS", "Reconstruction", "cgls", "circle_mask", "compare", "default_tv_lambda", "fbp",
    "os_sart", "psnr", "rmse_hu", "run", "sirt", "ssim", "ssim_map", "tv", "window_bounds",
]
