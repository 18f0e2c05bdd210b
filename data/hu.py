"""Hounsfield units: conversion to linear attenuation and the stored-value -> HU rule for DICOM.

Conventions
-----------
- ``AIR_HU = -1024``: padding pixels (PixelPaddingValue / PixelPaddingRangeLimit) and every value below
  -1024 HU (out-of-field-of-view fill such as -2000 or -3024 HU) are set to -1024 HU, the bottom of the
  conventional 12-bit CT range. :func:`hu_to_mu` maps it to attenuation 0 (clipped), like -1000 HU.
- Linear attenuation ``mu = mu_water * (1 + HU / 1000)`` in 1/mm, clipped at 0; the default
  ``MU_WATER = 0.0192`` /mm is water at about 70 keV.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import TYPE_CHECKING, TypeVar

import numpy as np

if TYPE_CHECKING:
    import torch

AIR_HU: float = -1024.0
MU_WATER: float = 0.0192

ArrayT = TypeVar("ArrayT", np.ndarray, "torch.Tensor")


def _torch_of(value: object) -> ModuleType | None:
    """torch if ``value`` is a tensor, else None: a tensor exists only once torch is loaded, so an array
    never makes this module load it."""
    torch = sys.modules.get("torch")
    return torch if torch is not None and isinstance(value, torch.Tensor) else None


def _check_mu_water(mu_water: float) -> float:
    mu_water = float(mu_water)
    if not np.isfinite(mu_water) or mu_water <= 0:
        raise ValueError(f"mu_water must be a positive attenuation in 1/mm, got {mu_water!r}")
    return mu_water


def hu_to_mu(hu: ArrayT, mu_water: float = MU_WATER) -> ArrayT:
    """Convert Hounsfield units to linear attenuation.

    Parameters
    ----------
    hu : numpy array or torch tensor, any shape, in HU.
    mu_water : attenuation of water in 1/mm.

    Returns
    -------
    Same type and shape (floating point): ``mu_water * (1 + hu / 1000)`` in 1/mm, clipped at 0.
    """
    mu_water = _check_mu_water(mu_water)
    if (torch := _torch_of(hu)) is not None:
        hu_f = hu if hu.is_floating_point() else hu.to(torch.float32)
        return torch.clamp(mu_water * (1.0 + hu_f / 1000.0), min=0.0)
    hu_arr = np.asarray(hu)
    if not np.issubdtype(hu_arr.dtype, np.floating):
        hu_arr = hu_arr.astype(np.float64)
    return np.maximum(mu_water * (1.0 + hu_arr / 1000.0), 0.0).astype(hu_arr.dtype, copy=False)


def mu_to_hu(mu: ArrayT, mu_water: float = MU_WATER, clip_negative: bool = True) -> ArrayT:
    """Convert linear attenuation (1/mm) to Hounsfield units: ``1000 * (mu / mu_water - 1)``.

    Parameters
    ----------
    mu : numpy array or torch tensor, any shape, in 1/mm.
    mu_water : attenuation of water in 1/mm.
    clip_negative : treat negative attenuation as 0 (air), so the result is >= -1000 HU. Reconstructions
        pass False, so undershoot (e.g. FBP streaks in air) stays visible and counts in the metrics.

    Returns
    -------
    Same type and shape (floating point), in HU.
    """
    mu_water = _check_mu_water(mu_water)
    if (torch := _torch_of(mu)) is not None:
        mu_f = mu if mu.is_floating_point() else mu.to(torch.float32)
        if clip_negative:
            mu_f = torch.clamp(mu_f, min=0.0)
        return 1000.0 * (mu_f / mu_water - 1.0)
    mu_arr = np.asarray(mu)
    if not np.issubdtype(mu_arr.dtype, np.floating):
        mu_arr = mu_arr.astype(np.float64)
    if clip_negative:
        mu_arr = np.maximum(mu_arr, 0.0)
    return (1000.0 * (mu_arr / mu_water - 1.0)).astype(mu_arr.dtype, copy=False)


def mu_difference_to_hu(delta_mu: ArrayT, mu_water: float = MU_WATER) -> ArrayT:
    """Convert a difference of linear attenuation (1/mm) to a difference of Hounsfield units: the slope of
    :func:`mu_to_hu`, ``1000 * delta_mu / mu_water`` (no -1000 offset, no clipping).

    Parameters
    ----------
    delta_mu : numpy array or torch tensor (floating point), any shape, in 1/mm.
    mu_water : attenuation of water in 1/mm.

    Returns
    -------
    Same type and shape, in HU.
    """
    mu_water = _check_mu_water(mu_water)
    return 1000.0 * delta_mu / mu_water


def padding_mask(raw: np.ndarray, padding_value: int | None, padding_limit: int | None = None) -> np.ndarray:
    """Boolean mask of padding pixels in stored (raw) pixel values.

    Parameters
    ----------
    raw : stored pixel values, any shape.
    padding_value : PixelPaddingValue (stored-value units) or None.
    padding_limit : PixelPaddingRangeLimit or None; with it, every value between the two (inclusive) is
        padding.
    """
    if padding_value is None:
        return np.zeros(raw.shape, dtype=bool)
    if padding_limit is None:
        return raw == padding_value
    lo, hi = sorted((int(padding_value), int(padding_limit)))
    return (raw >= lo) & (raw <= hi)


def stored_to_hu(raw: np.ndarray, slope: float, intercept: float, padding_value: int | None = None,
                 padding_limit: int | None = None) -> np.ndarray:
    """Stored pixel values -> HU with the package's padding rule.

    ``hu = raw * slope + intercept`` (computed in float64); padding pixels and values below
    ``AIR_HU`` (-1024) become ``AIR_HU``.

    Parameters
    ----------
    raw : stored pixel values (any shape, integer or float).
    slope, intercept : RescaleSlope and RescaleIntercept.
    padding_value, padding_limit : see :func:`padding_mask`.

    Returns
    -------
    float32 array of the same shape, in HU.
    """
    hu = raw.astype(np.float64) * float(slope) + float(intercept)
    hu[padding_mask(raw, padding_value, padding_limit)] = AIR_HU
    np.maximum(hu, AIR_HU, out=hu)
    return hu.astype(np.float32)


__all__ = ["AIR_HU", "MU_WATER", "hu_to_mu", "mu_difference_to_hu", "mu_to_hu", "padding_mask", "stored_to_hu"]
