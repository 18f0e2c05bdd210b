"""Moving an image between pixel grids that cover the same field of view.

Both grids span the same square or rectangle: pixel ``i`` of an ``n``-pixel axis covers
``[i, i + 1] * L / n`` of an axis of length ``L``, so changing the pixel count changes the pixel size,
never the extent.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from skimage.transform import resize


def _shape(shape: int | Sequence[int]) -> tuple[int, int]:
    size = (int(shape), int(shape)) if isinstance(shape, int | np.integer) else tuple(int(s) for s in shape)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"grid shape must be (H, W) with H, W >= 1, got {shape!r}")
    return size  # type: ignore[return-value]


def _overlap_matrix(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) float64: the fraction of output pixel ``i`` that input pixel ``j`` covers (rows sum to 1)."""
    ratio = n_in / n_out  # output pixel length in input pixels
    low = np.arange(n_out)[:, None] * ratio
    j = np.arange(n_in)[None, :]
    overlap = np.minimum(low + ratio, j + 1.0) - np.maximum(low, j)
    return np.clip(overlap, 0.0, None) / ratio


def area_average(image: np.ndarray, shape: int | Sequence[int]) -> np.ndarray:
    """``image`` (H, W) area-averaged onto a ``shape`` grid over the same field of view.

    Each output pixel is the mean of the piecewise-constant input over the output pixel's square
    (exact overlaps, any size ratio: a block mean when the ratio is an integer).

    Parameters
    ----------
    image : (H, W) array, any units.
    shape : output (H', W') or a side length.

    Returns
    -------
    float64 (H', W') array in the units of ``image``.
    """
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 2:
        raise ValueError(f"image must be 2D (H, W), got shape {image.shape}")
    height, width = _shape(shape)
    if (height, width) == image.shape:
        return image.copy()
    return _overlap_matrix(height, image.shape[0]) @ image @ _overlap_matrix(width, image.shape[1]).T


def upsample_bilinear(image: np.ndarray, shape: int | Sequence[int]) -> np.ndarray:
    """``image`` (H, W) interpolated bilinearly at the pixel centres of a finer ``shape`` grid (float64).

    Bilinear, not cubic, so no over- or undershoot at air/bone edges: the values stay within the
    input's range (attenuation stays non-negative).
    """

    height, width = _shape(shape)
    return resize(np.asarray(image, dtype=np.float64), (height, width), order=1, mode="edge",
                  anti_aliasing=False, preserve_range=True)


__all__ = ["area_average", "upsample_bilinear"]
