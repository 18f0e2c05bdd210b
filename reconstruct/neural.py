"""Coordinate-network reconstruction: build a network from a preset, apply the fit variants, fit it.

The fit variants are :data:`reconstruct.variants.FIT_VARIANTS`: most are a function from a
:class:`reconstruct.fit_config.FitConfig` to a changed one (:data:`VARIANTS`; "paper" is the published formulation,
no change); "ensemble" fits ``ENSEMBLE_SIZE`` networks from consecutive seeds side by side and returns their mean
image with the per-pixel spread (:mod:`reconstruct.ensemble`); "tv_blend" and "band_blend" blend the fitted image
with TV's (:mod:`reconstruct.tv_blend`). This module re-exports the public names of those modules.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from sparsect.operators import Geometry, Radon
from sparsect.reconstruct.ensemble import ensemble_members, mean_progress, reduce_ensemble
from sparsect.reconstruct.fit import FitConfig, FitProgress, FitResult, fit
from sparsect.reconstruct.models import Preset, build_model, get_preset
from sparsect.reconstruct.models.stacked import StackedModels
from sparsect.reconstruct.result import StopLike
from sparsect.reconstruct.tv_blend import (
    BAND_BLEND_SHARES,
    LARGE_GRID_BAND_SHARES,
    TV_BLEND_WEIGHT,
    BandShares,
    band_blend_response,
    band_shares,
    blend_with_tv,
)
from sparsect.reconstruct.tv_solver import object_attenuation
from sparsect.reconstruct.variants import (
    BAND_BLEND,
    COARSE_START,
    DISCREPANCY_FACTOR,
    ENSEMBLE,
    ENSEMBLE_SIZE,
    EXCLUSIVE_VARIANTS,
    FBP_INIT_LR_FACTOR,
    FBP_INIT_STEPS,
    FIT_VARIANTS,
    RECOMMENDED,
    RECOMMENDED_VARIANTS,
    TV_BLEND,
    TV_WEIGHT,
    VARIANT_NAMES,
    apply_variants,
    canonical_variants,
    resolve_variants,
)

#: The fit variants that are FitConfig transforms: name -> transform ("paper" the identity).
VARIANTS: dict[str, Callable[[FitConfig], FitConfig]] = {
    name: v.transform for name, v in FIT_VARIANTS.items() if v.transform is not None}


def fit_config(method: str, preset: str | Preset = "preview", iterations: int | None = None,
               variant: str | Iterable[str] | None = None, **fields) -> FitConfig:
    """The :class:`FitConfig` of network ``method`` under ``preset`` (a name or a :class:`Preset`: its
    optimiser recipe) and ``variant``; ``iterations`` overrides the preset's budget, ``fields`` set further
    FitConfig fields, or replace the recipe's (``lr``, ``warmup``, ``final_lr_factor``), before the variants
    apply (so "fbp_init" scales a given ``lr`` too)."""
    optim = (preset if isinstance(preset, Preset) else get_preset(method, preset)).optim
    budget = optim.iterations if iterations is None else int(iterations)
    recipe = dict(iterations=budget, lr=optim.lr, warmup=min(optim.warmup, budget // 2),
                  final_lr_factor=optim.final_lr_factor, schedule="exponential", method=method)
    return apply_variants(FitConfig(**{**recipe, **fields}), resolve_variants(method, variant))


def reconstruct_neural(method: str, sinogram: torch.Tensor, geometry: Geometry, pixel_size_mm: float = 1.0,
                       preset: str | Preset = "preview", iterations: int | None = None, seed: int = 0,
                       device: str | torch.device = "auto", variant: str | Iterable[str] | None = None,
                       callback: Callable[[FitProgress], None] | None = None, stop: StopLike = None,
                       ensemble_size: int = ENSEMBLE_SIZE, photons: float | None = None, **fit_fields) -> FitResult:
    """Reconstruct an image with coordinate network ``method`` ("lrnn", "wire" or "siren").

    Parameters
    ----------
    sinogram : (n_angles, det_count) line integrals in pixel units (attenuation [1/mm] times pixel size),
        or a (B, 1, n_angles, det_count) stack: B networks (each initialised from ``seed``, as a lone fit
        would be) are fitted side by side and the result holds (B, H, W) images.
    geometry : acquisition geometry; its ``image_size`` is the output grid.
    pixel_size_mm : pixel size in mm, for ``mu`` [1/mm] and ``image_hu``.
    preset : model preset ("preview", "paper", "quality"): the network and the optimiser recipe.
    iterations : overrides the preset's main-loop budget (warm-start steps come on top).
    seed : seeds the network initialisation and the fit (the global RNG state is left untouched).
    variant : fit variants (:data:`reconstruct.variants.FIT_VARIANTS`); None or "paper": the published
        formulation; "recommended": the network's own :data:`RECOMMENDED_VARIANTS`.
    callback, stop : see :func:`reconstruct.fit.fit`.
    ensemble_size : networks per sinogram with the "ensemble" variant (seeds ``seed`` to
        ``seed + ensemble_size - 1``, fitted side by side); ignored without it.
    photons : the scan's noise level (incident photons per bin, ``math.inf`` noise-free, None unknown), read
        by the "discrepancy", "tv_init", "tv_blend" and "band_blend" variants.
    fit_fields : further :class:`reconstruct.fit.FitConfig` fields (chunk_size, amp, output_scale, ...).

    Returns
    -------
    :class:`reconstruct.fit.FitResult`, method = ``method``; ``settings`` also records the preset and the variant
    list fitted (canonical, "recommended" resolved). The "ensemble" and blend variants replace the images and set
    ``uncertainty_hu`` as :func:`reconstruct.ensemble.reduce_ensemble` and :func:`reconstruct.tv_blend.blend_with_tv`
    say, and record their settings; ``curve`` is then the mean loss over the members. ``diverged`` names the
    sinograms whose every network ran out of roll-backs.
    """
    spec = preset if isinstance(preset, Preset) else get_preset(method, preset)
    variants = resolve_variants(method, variant)
    members = ensemble_members(variants, ensemble_size)
    radon = Radon(geometry)
    sinogram = torch.as_tensor(sinogram)
    rows = sinogram.reshape(-1, *geometry.sinogram_shape).repeat_interleave(members, dim=0)
    model = _seeded_models(method, spec, seed, rows.shape[0] // members, members)
    if "output_scale" not in fit_fields:
        fit_fields["output_scale"] = _output_scales(radon, rows)
    config = fit_config(method, spec, iterations, variants, seed=seed, device=str(device),
                        pixel_size_mm=pixel_size_mm, photons=photons, **fit_fields)
    target = sinogram if ENSEMBLE not in variants else rows[:, None]
    single = rows.shape[0] == members
    result = fit(model, radon, target, config, stop=stop,
                 callback=callback if ENSEMBLE not in variants else mean_progress(callback, members, single))
    result.settings.update(preset=spec.name, variant=list(variants))
    ensemble = None
    if ENSEMBLE in variants:
        seeds = [seed + k for k in range(members)]
        ensemble = reduce_ensemble(result, members, single, seeds)
        result.settings.update(ensemble_size=members, ensemble_seeds=seeds)
    if TV_BLEND in variants or BAND_BLEND in variants:
        blend_with_tv(result, sinogram, radon, photons, stop, callback,
                      band=method if BAND_BLEND in variants else None, members=ensemble)
    return result


def _output_scales(radon: Radon, rows: torch.Tensor) -> tuple[float, ...]:
    """Each network's output scale (the networks output O(1) values): the object's typical attenuation per pixel
    (:func:`reconstruct.tv_solver.object_attenuation`) in the FBP of its sinogram, one of the (N, n_angles,
    det_count) ``rows``."""
    with torch.no_grad():
        return tuple(object_attenuation(radon.fbp(rows.float().cpu()[:, None])).tolist())


def _seeded_models(method: str, spec: Preset, seed: int, sinograms: int, members: int) -> torch.nn.Module:
    """The networks of a fit: for each of ``sinograms`` sinograms, ``members`` networks from seeds ``seed`` to
    ``seed + members - 1``; one network alone, else a :class:`StackedModels` of them, sinogram by sinogram."""
    models = [_seeded_model(method, spec, seed + k) for _ in range(sinograms) for k in range(members)]
    return models[0] if len(models) == 1 else StackedModels(models)


def _seeded_model(method: str, spec: Preset, seed: int) -> torch.nn.Module:
    """Network ``method`` of ``spec`` initialised from ``seed`` (the global RNG state is left untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(method, spec)


__all__ = ["BAND_BLEND", "BAND_BLEND_SHARES", "COARSE_START", "DISCREPANCY_FACTOR", "ENSEMBLE", "ENSEMBLE_SIZE",
           "EXCLUSIVE_VARIANTS", "FBP_INIT_LR_FACTOR", "FBP_INIT_STEPS", "LARGE_GRID_BAND_SHARES", "RECOMMENDED",
           "RECOMMENDED_VARIANTS", "TV_BLEND", "TV_BLEND_WEIGHT", "TV_WEIGHT", "VARIANTS", "VARIANT_NAMES",
           "BandShares", "band_blend_response", "band_shares", "canonical_variants", "fit_config",
           "reconstruct_neural", "resolve_variants"]
