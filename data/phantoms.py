"""Synthetic test images in HU."""

from __future__ import annotations

import numpy as np
from skimage.data import shepp_logan_phantom
from skimage.transform import resize

#: HU of phantom value 0 (air) and of phantom value 1 (the skull, a bone-like value).
PHANTOM_AIR_HU = -1000.0
PHANTOM_BONE_HU = 1000.0


def shepp_logan_hu(size: int = 256) -> np.ndarray:
    """The (modified) Shepp-Logan phantom of scikit-image in HU.

    The phantom's values (0 ... 1) are mapped linearly, ``HU = -1000 + 2000 * value``: 0 -> -1000 HU
    (air), 1 (skull) -> +1000 HU (bone-like), 0.2 (brain region) -> -600 HU. Linear in HU means linear in
    attenuation (``mu = 2 * mu_water * value``), so the classical phantom's contrast ratios are kept.
    The 400 x 400 original is mapped first, then resized with anti-aliasing (bilinear).

    Parameters
    ----------
    size : output side length in pixels (>= 8).

    Returns
    -------
    float32 (size, size) image in HU.
    """
    size = int(size)
    if size < 8:
        raise ValueError(f"size must be an integer >= 8, got {size!r}")
    hu = PHANTOM_AIR_HU + (PHANTOM_BONE_HU - PHANTOM_AIR_HU) * shepp_logan_phantom().astype(np.float64)
    if hu.shape != (size, size):
        hu = resize(hu, (size, size), order=1, anti_aliasing=True, preserve_range=True)
    return hu.astype(np.float32)


__all__ = ["PHANTOM_AIR_HU", "PHANTOM_BONE_HU", "shepp_logan_hu"]
