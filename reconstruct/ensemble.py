"""The "ensemble" fit variant: several networks per sinogram from consecutive seeds, fitted side by side, and
their mean image with its per-pixel spread (``uncertainty_hu``).

The members of each sinogram are ``members`` consecutive networks of one stacked fit (:func:`reconstruct.fit.fit`);
a member that ran out of divergence roll-backs is left out of the mean and the spread.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable

import numpy as np
import torch

from sparsect.reconstruct.fit_result import FitProgress, FitResult
from sparsect.reconstruct.variants import ENSEMBLE


def ensemble_members(variants: tuple[str, ...], ensemble_size: int) -> int:
    """Networks fitted per sinogram: ``ensemble_size`` with the ensemble variant, else 1."""
    if ENSEMBLE not in variants:
        return 1
    if isinstance(ensemble_size, bool) or not isinstance(ensemble_size, int) or ensemble_size < 1:
        raise ValueError(f"ensemble_size must be a whole number >= 1, got {ensemble_size!r}")
    return ensemble_size



def mean_progress(callback: Callable[[FitProgress], None] | None, members: int, single: bool
                   ) -> Callable[[FitProgress], None] | None:
    """``callback`` seeing an ensemble fit's progress as one fit per sinogram: previews averaged over members."""
    if callback is None:
        return None

    def report(progress: FitProgress) -> None:
        if progress.image is not None:
            image = progress.image.reshape(-1, members, *progress.image.shape[-2:]).mean(axis=1)
            progress = dataclasses.replace(progress, image=image[0] if single else image)
        callback(progress)

    return report


def reduce_ensemble(result: FitResult, members: int, single: bool, seeds: list[int]
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Replace the members' images of ``result`` (``members`` consecutive ones per sinogram, from ``seeds``) by
    the mean of those whose fit went well and set ``uncertainty_hu``, their per-pixel standard deviation in HU
    (population, ddof 0). A member out of roll-backs (``result.diverged``) is left out, with a warning, unless
    every member of its sinogram is; ``result.diverged`` then names those sinograms.
    Returns the members' HU images, (n_sinograms, members, H, W) float64, and which are kept, (n, members)."""
    shape = result.image_hu.shape[-2:]
    hu = np.asarray(result.image_hu, dtype=np.float64).reshape(-1, members, *shape)
    failed = np.zeros(hu.shape[:2], dtype=bool)
    failed.flat[result.diverged] = True
    kept = ~failed
    kept[failed.all(axis=1)] = True  # nothing better to average
    for index, member in zip(*np.nonzero(~kept), strict=True):
        message = (f"ensemble member with seed {seeds[member]}{'' if single else f' of slice {index}'} ran out of "
                   "roll-backs: left out of the mean and the uncertainty map")
        result.events.append(message)
        result.warnings.append(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)
    weights = kept / kept.sum(axis=1, keepdims=True)

    def mean(images: torch.Tensor) -> torch.Tensor:  # a member left out may hold anything, NaN included
        images = images.reshape(-1, members, *shape)
        mask = torch.from_numpy(kept).to(images.device)[:, :, None, None]
        return torch.einsum("nk,nkhw->nhw", torch.from_numpy(weights).to(images), images.where(mask, 0))

    mu, image = mean(result.mu)[:, None], mean(result.image)
    result.image_hu = np.einsum("nk,nkhw->nhw", weights, np.where(kept[:, :, None, None], hu, 0)).astype(np.float32)
    result.uncertainty_hu = member_spread(hu, kept).astype(np.float32)
    result.mu, result.image = mu, image
    result.diverged = np.flatnonzero(failed.all(axis=1)).tolist()
    result.settings["ensemble_left_out"] = [{"slice": int(index), "seed": seeds[member]}
                                              for index, member in zip(*np.nonzero(~kept), strict=True)]
    if single:
        result.image_hu, result.uncertainty_hu = result.image_hu[0], result.uncertainty_hu[0]
        result.mu, result.image = mu[0, 0], image[0]
    return hu, kept


def member_spread(members_hu: np.ndarray, kept: np.ndarray,
                  transform: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """Per-pixel population standard deviation (ddof 0) over the kept members of an ensemble.

    members_hu : (n, members, H, W) HU images; kept : (n, members) bool, at least one per row.
    transform : applied to the members' deviations from the kept members' mean, (n, members, H, W) (0 for the
        members left out), before the spread is taken (e.g. the band blend's share of them); None: the plain
        spread.
    Returns (n, H, W), HU.
    """
    weights = kept / kept.sum(axis=1, keepdims=True)
    mask = kept[:, :, None, None]
    members_hu = np.where(mask, members_hu, 0)  # a member left out may hold anything, NaN included
    deviations = np.where(mask, members_hu - np.einsum("nk,nkhw->nhw", weights, members_hu)[:, None], 0)
    if transform is not None:
        deviations = transform(deviations)
    return np.sqrt(np.einsum("nk,nkhw->nhw", weights, deviations ** 2))


__all__ = ["ensemble_members", "mean_progress", "member_spread", "reduce_ensemble"]
