"""Blending two reconstructions of one slice with a share that depends on spatial frequency.

``blend(base, other, response)`` is ``base + F^-1[response * F(other - base)]``: at each spatial frequency the
result takes ``response`` of ``other`` and the rest of ``base``. A constant response is the plain weighted mean;
:func:`band_response` gives a low share at coarse scales and a high one at fine scales, for two methods whose
errors lie in different bands (TV's at fine scales, a coordinate network's at coarse ones: docs/BENCHMARKS.md,
"The TV blend by frequency band"). The difference is zero-padded to twice its size before the transform, so
what leaves one edge of the image does not wrap round to the other.
"""

from __future__ import annotations

import math

import numpy as np


def radial_frequency(shape: tuple[int, int]) -> np.ndarray:
    """Radial spatial frequency (cycles per pixel) of each bin of an FFT grid of ``shape`` (rows, columns), float64
    of that shape in ``numpy.fft.fftfreq`` order."""
    return np.hypot(*np.meshgrid(np.fft.fftfreq(shape[0]), np.fft.fftfreq(shape[1]), indexing="ij"))


def band_response(shape: tuple[int, int], coarse: float, fine: float, cutoff: float,
                  transition: float) -> np.ndarray:
    """The share of :func:`blend`'s ``other`` image per frequency of an FFT grid of ``shape`` (rows, columns),
    float64 of that shape in ``numpy.fft.fftfreq`` order.

    Parameters
    ----------
    coarse, fine : the share well below and well above ``cutoff`` (in [0, 1]).
    cutoff : radial spatial frequency of the middle of the transition, cycles per pixel (0, 0.5].
    transition : width of the smooth step on a log2 frequency axis, octaves either side of ``cutoff`` (> 0).
    """
    for name, value in (("coarse", coarse), ("fine", fine)):
        if not 0 <= value <= 1:
            raise ValueError(f"{name} share must be in [0, 1], got {value}")
    if not 0 < cutoff <= 0.5 or not (transition > 0 and math.isfinite(transition)):
        raise ValueError(f"cutoff must be in (0, 0.5] cycles/pixel and transition > 0 octaves, got {cutoff}, "
                         f"{transition}")
    octaves = np.log2(np.maximum(radial_frequency(shape), 1e-12) / cutoff)
    t = np.clip((octaves / transition + 1) / 2, 0.0, 1.0)
    return coarse + (fine - coarse) * t * t * (3 - 2 * t)


def blend(base: np.ndarray, other: np.ndarray, response: float | np.ndarray) -> np.ndarray:
    """``base`` with ``response`` of ``other`` per spatial frequency, float64 of ``base``'s shape.

    Parameters
    ----------
    base, other : (..., H, W) images in one unit (HU, attenuation), the same shape.
    response : a share in [0, 1] at every frequency, or an array of shape (2H, 2W) in ``numpy.fft.fftfreq``
        order (:func:`band_response` of ``(2 * H, 2 * W)``: the grid of the zero-padded difference).
    """
    base, other = np.asarray(base, dtype=np.float64), np.asarray(other, dtype=np.float64)
    if base.shape != other.shape:
        raise ValueError(f"images must have one shape, got {base.shape} and {other.shape}")
    if np.isscalar(response) or np.ndim(response) == 0:
        return base + float(response) * (other - base)
    rows, cols = base.shape[-2:]
    if np.shape(response) != (2 * rows, 2 * cols):
        raise ValueError(f"response must have shape {(2 * rows, 2 * cols)} for {rows}x{cols} images, "
                         f"got {np.shape(response)}")
    spectrum = np.fft.rfft2(other - base, s=(2 * rows, 2 * cols))
    filtered = np.fft.irfft2(spectrum * response[:, : cols + 1], s=(2 * rows, 2 * cols))
    return base + filtered[..., :rows, :cols]


__all__ = ["band_response", "blend", "radial_frequency"]
