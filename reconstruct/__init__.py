"""Reconstruction methods for sparse-view CT (classical solvers and coordinate networks).

:func:`run` reconstructs with any method by name (:data:`METHODS`); the functions themselves are in
:mod:`.classical` (FBP, SIRT, CGLS, OS-SART; TV from :mod:`.tv_solver`) and :mod:`.neural` (LRNN, WIRE, SIREN, fitted
by :mod:`.fit` with the variants of :mod:`.variants`).
"""

from sparsect.lazy_exports import lazy_exports

#: submodule -> the public names it defines (imported on first use)
_EXPORTS = {
    "classical": ["TV_LAMBDA_FACTOR", "cgls", "default_tv_lambda", "fbp", "os_sart", "sirt", "tv"],
    "metrics": ["circle_mask", "compare", "psnr", "rmse_hu", "ssim", "ssim_map"],
    "registry": [
        "CLASSICAL_METHODS", "METHODS", "NETWORK_METHODS", "PRESETS", "RECOMMENDED_VARIANTS", "VARIANT_NAMES",
        "run",
    ],
    "result": ["Reconstruction"],
    "windows": ["WINDOWS", "window_bounds"],
}
lazy_exports(__name__, _EXPORTS)
__all__ = sorted(name for names in _EXPORTS.values() for name in names)
