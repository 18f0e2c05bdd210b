"""Where an image disagrees with its data: the data-consistency map of a reconstruction.

The map is the filtered backprojection of the sinogram residual ``A x - y``, converted like an attenuation
image to HU, so it reads as an HU difference: 0 where the image explains the measured rays, positive where
the image holds more than the rays support (a structure the scan never saw), negative where less. An image
that reproduces its sinogram exactly has a zero map, whatever its error against the truth; what the map
shows is therefore the part of an error that the data could have revealed.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from sparsect.data.hu import MU_WATER, mu_difference_to_hu
from sparsect.operators import Geometry, Radon


def _as_stack(values: np.ndarray | torch.Tensor, trailing: tuple[int, int], what: str,
              device: torch.device) -> torch.Tensor:
    tensor = torch.as_tensor(values).detach().to(device=device, dtype=torch.float32)
    if tensor.ndim < 2 or tuple(tensor.shape[-2:]) != tuple(trailing):
        raise ValueError(f"the {what} is {tuple(tensor.shape)}; expected (..., {trailing[0]}, {trailing[1]})")
    return tensor.reshape(-1, 1, *trailing)


def consistency(mu: np.ndarray | torch.Tensor, sinogram: np.ndarray | torch.Tensor, geometry: Geometry,
                pixel_size_mm: float = 1.0, mu_water: float = MU_WATER) -> tuple[np.ndarray, np.ndarray]:
    """(the data-consistency map, the sinogram residual) of an image: ``FBP(A x - y)`` as an HU difference and
    ``A x - y`` itself.

    Parameters
    ----------
    mu : attenuation image(s) in 1/mm, (H, W), (B, H, W) or (B, 1, H, W) on ``geometry``'s grid (a
        :class:`reconstruct.result.Reconstruction`'s ``mu``); computed on its device.
    sinogram : the measured line integrals ``y`` (mu [1/mm] times mm), (n_angles, det_count) or one per
        image, (B, n_angles, det_count) or (B, 1, n_angles, det_count).
    geometry : the scan's geometry (its image grid is the image's).
    pixel_size_mm : pixel size in mm.
    mu_water : attenuation of water in 1/mm: the map is ``1000 * FBP(A x - y) / mu_water`` with the FBP in
        1/mm.

    Returns
    -------
    consistency map : float32, (H, W) for one image, else (B, H, W), in HU (a difference: no -1000 offset).
    sinogram residual : float32, (n_angles, det_count) for one image, else (B, n_angles, det_count), line integrals.
    """
    if not (math.isfinite(pixel_size_mm) and pixel_size_mm > 0):
        raise ValueError(f"pixel_size_mm must be a positive number, got {pixel_size_mm!r}")
    device = mu.device if isinstance(mu, torch.Tensor) else torch.device("cpu")
    images = _as_stack(mu, geometry.image_size, "image", device)
    measured = _as_stack(sinogram, geometry.sinogram_shape, "sinogram", device)
    if measured.shape[0] != images.shape[0]:
        raise ValueError(f"{images.shape[0]} image(s) but {measured.shape[0]} sinogram(s)")
    radon = Radon(geometry)
    with torch.no_grad():
        residual = radon(images * pixel_size_mm) - measured
        delta_mu = radon.fbp(residual)[:, 0] / pixel_size_mm
    maps = mu_difference_to_hu(delta_mu, mu_water).cpu().numpy().astype(np.float32)
    residuals = residual[:, 0].cpu().numpy().astype(np.float32)
    return (maps[0], residuals[0]) if len(mu.shape) == 2 else (maps, residuals)


def data_consistency_hu(mu: np.ndarray | torch.Tensor, sinogram: np.ndarray | torch.Tensor, geometry: Geometry,
                        pixel_size_mm: float = 1.0, mu_water: float = MU_WATER) -> np.ndarray:
    """The data-consistency map of an image: ``FBP(A x - y)`` as an HU difference (0 = consistent); float32,
    (H, W) for one image, else (B, H, W). Arguments as :func:`consistency`."""
    return consistency(mu, sinogram, geometry, pixel_size_mm, mu_water)[0]


__all__ = ["consistency", "data_consistency_hu"]
