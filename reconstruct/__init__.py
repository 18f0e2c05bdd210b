"""Reconstruction methods for sparse-view CT (classical solvers and coordinate networks)."""

from sparsect.reconstruct.classical import (
    METHODS,
    TV_LAMBDA_FACTOR,
    cgls,
    default_tv_lambda,
    fbp,
    operator_norm,
    os_sart,
    reconstruct,
    sirt,
    total_variation,
    tv,
)
from sparsect.reconstruct.metrics import WINDOWS, circle_mask, compare, psnr, rmse_hu, ssim, ssim_map, window_bounds
from sparsect.reconstruct.result import MU_WATER, Reconstruction, mu_to_hu

__all__ = [
    "METHODS", "MU_WATER", "TV_LAMBDA_FACTOR", "WINDOWS", "Reconstruction", "cgls", "circle_mask", "compare",
    "default_tv_lambda", "fbp", "mu_to_hu", "operator_norm", "os_sart", "psnr", "reconstruct", "rmse_hu",
    "sirt", "ssim", "ssim_map", "total_variation", "tv", "window_bounds",
]
