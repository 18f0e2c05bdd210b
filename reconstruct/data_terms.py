"""The objective of a network fit: the data term (how the sinogram residual is weighted, what noise it should end
at) and :class:`FitObjective`, which adds the TV and TGV penalties of :mod:`reconstruct.regularisers`.

Every function takes a batch of sinograms, (B, 1, n_angles, det_count) line integrals in pixel units (the
projector's), and returns one value per slice or weights of the same shape.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from sparsect.operators import Radon
from sparsect.operators.filters import padded_length, ramp_response
from sparsect.reconstruct.fit_config import DATA_WEIGHTINGS
from sparsect.reconstruct.regularisers import TGV_SECOND_ORDER, smoothed_total_variation, total_generalized_variation

#: The norms :func:`data_norm` knows ("uniform": plain mean square; "ramp": weighted by the ramp filter).


def poisson_weights(sinogram: torch.Tensor) -> torch.Tensor:
    """Inverse Poisson variance of each bin of (B, 1, n_angles, det_count) line integrals, up to a constant:
    ``exp(-y)`` normalised to a mean of 1 per slice (same shape). The variance of ``-log(counts / photons)``
    is ``exp(y) / photons`` to first order, so the photon count drops out of the normalised weights."""
    weights = torch.exp(-sinogram.clamp_min(0))
    return weights / weights.mean(dim=(1, 2, 3), keepdim=True)


def expected_noise_mse(sinogram: torch.Tensor, photons: float) -> torch.Tensor:
    """Expected mean square of the Poisson noise on (B, 1, n_angles, det_count) line integrals measured with
    ``photons`` incident photons per bin, shape (B,): ``mean(exp(y)) / photons`` (0 for ``math.inf``)."""
    if math.isinf(photons):
        return torch.zeros(sinogram.shape[0], dtype=sinogram.dtype, device=sinogram.device)
    return torch.exp(sinogram.clamp_min(0)).mean(dim=(1, 2, 3)) / float(photons)


def data_norm(weighting: str, det_count: int, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    """Per-slice squared norm (B,) of (B, 1, n_angles, det_count) sinograms: plain mean square ("uniform") or
    weighted by the ramp filter's response along the detector ("ramp"), floored at its first non-zero bin."""
    if weighting == "uniform":
        return lambda x: x.pow(2).mean(dim=(1, 2, 3))
    n = padded_length(det_count)
    ramp = ramp_response(det_count, dtype=torch.float32, device=device)
    weights = ramp.clamp_min(float(ramp[1]))
    weights[1:-1] *= 2  # rfft keeps one of each pair of conjugate interior bins

    def norm(x: torch.Tensor) -> torch.Tensor:
        spectrum = torch.fft.rfft(x, n=n, dim=-1)
        # / (n * det_count): with all weights 1 this is the plain mean square (Parseval)
        return ((spectrum.real.pow(2) + spectrum.imag.pow(2)) * weights).sum(-1).mean(dim=(1, 2)) / (n * det_count)

    return norm


class FitObjective:
    """What a network fit minimises for (B, H, W) images: each slice's data term over its sinogram's power, plus
    ``tv_weight`` times the mean TV per pixel and ``tgv_weight`` times TGV of the normalised image ``image / scale``.

    radon : the projector; target : (B, 1, n_angles, det_count) measured line integrals on the fitting device.
    data_weighting : "uniform" or "ramp" (:func:`data_norm`); noise_weighting : weight each bin by
    :func:`poisson_weights` (its root multiplies the residual). scale : the output scales (B, 1, 1).
    ``tgv_field`` (set by the loop when ``tgv_weight`` > 0): TGV's vector field, (B, 2, H, W).
    """

    def __init__(self, radon: Radon, target: torch.Tensor, data_weighting: str, noise_weighting: bool,
                 scale: torch.Tensor, tv_weight: float = 0.0, tgv_weight: float = 0.0) -> None:
        self.radon, self.target, self.scale = radon, target, scale
        self.data_weighting, self.tv_weight, self.tgv_weight = data_weighting, tv_weight, tgv_weight
        self.data_norm = data_norm(data_weighting, radon.geometry.det_count, target.device)
        self.root_weights = poisson_weights(target).sqrt() if noise_weighting else None
        weighted_target = target if self.root_weights is None else target * self.root_weights
        self.power = self.data_norm(weighted_target).clamp_min(1e-30)  # normalises each slice's data term
        self.tgv_field: nn.Parameter | None = None

    def __call__(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(objective to minimise, plain sinogram MSE per slice (B,)) of a (B, H, W) float32 image."""
        residual = self.radon(image[:, None]) - self.target
        mse = residual.pow(2).mean(dim=(1, 2, 3))
        if self.root_weights is not None:
            data_term = self.data_norm(residual * self.root_weights)
        else:
            data_term = mse if self.data_weighting == "uniform" else self.data_norm(residual)
        total = (data_term / self.power).sum()
        if self.tv_weight:
            total = total + self.tv_weight * smoothed_total_variation(image / self.scale).sum()
        if self.tgv_field is not None:
            total = total + self.tgv_weight * total_generalized_variation(
                image / self.scale, self.tgv_field, TGV_SECOND_ORDER).sum()
        return total, mse


__all__ = ["DATA_WEIGHTINGS", "FitObjective", "data_norm", "expected_noise_mse", "poisson_weights"]
