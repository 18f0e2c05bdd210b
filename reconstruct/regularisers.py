"""The image gradient and the total variations built on it: one convention for TV's Chambolle-Pock
(:mod:`reconstruct.tv_solver`) and the network penalties of :func:`reconstruct.fit.fit`.

Convention
----------
:func:`gradient` takes forward differences with a Neumann boundary: an (..., H, W) image gives an
(..., 2, H, W) field, component 0 the difference down a column (to the next row), component 1 the difference
along a row (to the next column), and the last difference along each axis is 0. :func:`gradient_adjoint` is its
exact adjoint (minus the divergence). :func:`total_variation` is the isotropic sum ``sum |D x|`` over all
pixels; the network penalties are per-pixel means of the same field (so a weight does not depend on the image
size), smoothed with ``eps`` to stay differentiable: at ``eps = 0``, :func:`smoothed_total_variation` is
``total_variation / (H W)``.
"""

from __future__ import annotations

import torch

#: Weight of TGV's second-order term relative to its first (the usual choice of 2).
TGV_SECOND_ORDER = 2.0


def gradient(x: torch.Tensor) -> torch.Tensor:
    """Forward differences with Neumann boundary: (..., H, W) -> (..., 2, H, W) (rows, then columns);
    the last difference along each axis is 0. Its norm is at most sqrt(8)."""
    g = torch.zeros((*x.shape[:-2], 2, *x.shape[-2:]), dtype=x.dtype, device=x.device)
    g[..., 0, :-1, :] = x[..., 1:, :] - x[..., :-1, :]
    g[..., 1, :, :-1] = x[..., :, 1:] - x[..., :, :-1]
    return g


def gradient_adjoint(g: torch.Tensor) -> torch.Tensor:
    """Exact adjoint of :func:`gradient` (minus the divergence): (..., 2, H, W) -> (..., H, W)."""
    rows, cols = g[..., 0, :, :], g[..., 1, :, :]
    out = torch.zeros_like(rows)
    out[..., :-1, :] -= rows[..., :-1, :]
    out[..., 1:, :] += rows[..., :-1, :]
    out[..., :, :-1] -= cols[..., :, :-1]
    out[..., :, 1:] += cols[..., :, :-1]
    return out


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Isotropic TV ``sum sqrt(d_row^2 + d_col^2)`` of :func:`gradient` over the last two axes: (..., H, W) ->
    (...), in the image's units times pixels."""
    g = gradient(x)
    return torch.sqrt((g * g).sum(dim=-3)).sum(dim=(-2, -1))


def smoothed_total_variation(image: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Mean isotropic total variation per pixel of (..., H, W) images, one value per image (shape (...)):
    ``mean sqrt(|D x|^2 + eps)`` with ``D`` :func:`gradient`, smoothed with ``eps`` (image units squared) to
    stay differentiable; :func:`total_variation` / (H W) at ``eps = 0``."""
    return torch.sqrt(gradient(image).pow(2).sum(dim=-3) + eps).mean(dim=(-2, -1))


def symmetrised_gradient_norm_sq(field: torch.Tensor) -> torch.Tensor:
    """Squared Frobenius norm of the symmetrised gradient ``E w = (D w + (D w)^T) / 2`` of an (..., 2, H, W)
    vector field laid out as :func:`gradient`, per pixel: (..., H, W). Each component is differentiated with
    :func:`gradient`."""
    d_rows, d_cols = gradient(field[..., 0, :, :]), gradient(field[..., 1, :, :])
    shear = 0.5 * (d_rows[..., 1, :, :] + d_cols[..., 0, :, :])
    return d_rows[..., 0, :, :].pow(2) + d_cols[..., 1, :, :].pow(2) + 2 * shear.pow(2)


def total_generalized_variation(image: torch.Tensor, field: torch.Tensor, second_order: float = TGV_SECOND_ORDER,
                                eps: float = 1e-8) -> torch.Tensor:
    """Second-order total generalized variation of (..., H, W) images at a vector field ``w`` (..., 2, H, W)
    laid out as :func:`gradient`, one value per image (shape (...)).

    ``mean sqrt(|D u - w|^2 + eps) + second_order * mean sqrt(|E w|^2 + eps)``, ``E w`` the symmetrised gradient
    of ``w`` (Frobenius norm, :func:`symmetrised_gradient_norm_sq`), means over the H W pixels. Minimised over ``w`` too
    this is TGV (Bredies, Kunisch and Pock 2010): affine regions cost nothing away from the boundary, where TV
    prefers staircases. At ``w = 0`` the first term is :func:`smoothed_total_variation`.
    """
    first = torch.sqrt((gradient(image) - field).pow(2).sum(dim=-3) + eps).mean(dim=(-2, -1))
    second = torch.sqrt(symmetrised_gradient_norm_sq(field) + eps).mean(dim=(-2, -1))
    return first + second_order * second


__all__ = ["TGV_SECOND_ORDER", "gradient", "gradient_adjoint", "smoothed_total_variation",
           "symmetrised_gradient_norm_sq", "total_generalized_variation", "total_variation"]
