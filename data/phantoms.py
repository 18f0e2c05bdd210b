"""Synthetic test images in HU, and an analytic ellipse phantom with exact line integrals."""

from __future__ import annotations

from collections.abc import Sequence

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


#: The modified Shepp-Logan head phantom (Toft 1996) as ellipses ``(value, a, b, x0, y0, phi_degrees)``:
#: semi-axes ``a`` (along the direction ``phi`` counter-clockwise from +x) and ``b``, centre ``(x0, y0)``,
#: all in units of half the field of view (the phantom fills [-1, 1]^2, x to the right, y upwards);
#: values add where ellipses overlap (0 outside, 1 in the skull, 0.2 in the brain).
SHEPP_LOGAN_ELLIPSES: tuple[tuple[float, float, float, float, float, float], ...] = (
    (1.0, 0.69, 0.92, 0.0, 0.0, 0.0),
    (-0.8, 0.6624, 0.874, 0.0, -0.0184, 0.0),
    (-0.2, 0.11, 0.31, 0.22, 0.0, -18.0),
    (-0.2, 0.16, 0.41, -0.22, 0.0, 18.0),
    (0.1, 0.21, 0.25, 0.0, 0.35, 0.0),
    (0.1, 0.046, 0.046, 0.0, 0.1, 0.0),
    (0.1, 0.046, 0.046, 0.0, -0.1, 0.0),
    (0.1, 0.046, 0.023, -0.08, -0.605, 0.0),
    (0.1, 0.023, 0.023, 0.0, -0.606, 0.0),
    (0.1, 0.023, 0.046, 0.06, -0.605, 0.0),
)

Ellipses = Sequence[tuple[float, float, float, float, float, float]]


def _ellipse_frame(x: np.ndarray, y: np.ndarray, ellipse: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates of points (x, y) in the ellipse's own frame, scaled so the ellipse is the unit disc."""
    _, a, b, x0, y0, phi = ellipse
    cos, sin = np.cos(np.radians(phi)), np.sin(np.radians(phi))
    dx, dy = x - x0, y - y0
    return (dx * cos + dy * sin) / a, (-dx * sin + dy * cos) / b


def ellipse_image(size: int, ellipses: Ellipses = SHEPP_LOGAN_ELLIPSES, supersample: int = 8) -> np.ndarray:
    """The ellipse phantom rasterised on a (size, size) grid over [-1, 1]^2, each pixel the mean of
    ``supersample`` x ``supersample`` evenly spread points in it (its area average, approximately).

    Pixel ``(row, col)`` has its centre at ``x = (col - (size - 1) / 2) * 2 / size`` and
    ``y = ((size - 1) / 2 - row) * 2 / size`` (the ``operators`` geometry convention).

    Returns
    -------
    float64 (size, size) phantom values (not HU).
    """
    size, supersample = int(size), int(supersample)
    if size < 1 or supersample < 1:
        raise ValueError(f"size and supersample must be >= 1, got {size}, {supersample}")
    offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
    centres = (np.arange(size) - (size - 1) / 2) * 2 / size
    fine = (centres[:, None] + offsets[None, :] * 2 / size).ravel()  # sample coordinates along one axis
    x, y = fine[None, :], fine[::-1, None]
    image = np.zeros((fine.size, fine.size))
    for ellipse in ellipses:
        u, v = _ellipse_frame(x, y, ellipse)
        image += ellipse[0] * (u * u + v * v <= 1.0)
    return image.reshape(size, supersample, size, supersample).mean(axis=(1, 3))


def ellipse_line_integrals(points: np.ndarray, directions: np.ndarray,
                           ellipses: Ellipses = SHEPP_LOGAN_ELLIPSES) -> np.ndarray:
    """Exact line integrals of the ellipse phantom along the lines ``p + t d`` (closed form).

    In an ellipse's frame scaled to the unit disc the line is ``q + t e`` (``q``, ``e`` the scaled point
    and direction); it meets the disc where ``|e|^2 t^2 + 2 (q . e) t + |q|^2 - 1 = 0``, so the chord has
    length ``sqrt((q . e)^2 - |e|^2 (|q|^2 - 1)) * 2 / |e|^2`` in ``t`` (zero when the root is imaginary),
    which is the length in the phantom's units for unit ``d``. For a parallel-beam ray at angle theta and
    offset s this is the textbook ``2 a b sqrt(r^2 - tau^2) / r^2`` with
    ``r^2 = a^2 cos^2(theta - phi) + b^2 sin^2(theta - phi)`` and ``tau = s - x0 cos theta - y0 sin theta``.

    Parameters
    ----------
    points, directions : (..., 2) arrays (x, y) in units of half the field of view; directions of unit length.
    ellipses : ``(value, a, b, x0, y0, phi_degrees)`` rows (default :data:`SHEPP_LOGAN_ELLIPSES`).

    Returns
    -------
    float64 array of shape ``points.shape[:-1]``: sum of value x chord length (half-field-of-view units).
    """
    points, directions = np.asarray(points, np.float64), np.asarray(directions, np.float64)
    total = np.zeros(np.broadcast_shapes(points.shape, directions.shape)[:-1])
    for ellipse in ellipses:
        value, a, b, _, _, phi = ellipse
        qx, qy = _ellipse_frame(points[..., 0], points[..., 1], ellipse)
        cos, sin = np.cos(np.radians(phi)), np.sin(np.radians(phi))
        ex = (directions[..., 0] * cos + directions[..., 1] * sin) / a
        ey = (-directions[..., 0] * sin + directions[..., 1] * cos) / b
        ee, qe, qq = ex * ex + ey * ey, qx * ex + qy * ey, qx * qx + qy * qy
        total += value * 2.0 * np.sqrt(np.clip(qe * qe - ee * (qq - 1.0), 0.0, None)) / ee
    return total


__all__ = ["PHANTOM_AIR_HU", "PHANTOM_BONE_HU", "SHEPP_LOGAN_ELLIPSES", "ellipse_image", "ellipse_line_integrals",
           "shepp_logan_hu"]
