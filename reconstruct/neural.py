"""Coordinate-network reconstruction: build a network from a preset, apply the fit variants, fit it.

Each fit variant is a function from a :class:`reconstruct.fit.FitConfig` to a changed one
(:data:`VARIANTS`); "paper" is the published formulation (no change). Two more change no fit setting: "ensemble"
(:data:`ENSEMBLE`) fits ``ENSEMBLE_SIZE`` networks from consecutive seeds side by
side and returns their mean image with the per-pixel spread (``uncertainty_hu``); "tv_blend" (:data:`TV_BLEND`)
averages the fitted image with TV's, and "band_blend" (:data:`BAND_BLEND`) blends them by spatial frequency (mostly
TV at coarse scales, mostly the network at fine ones; :mod:`reconstruct.blend`). Why the recommended set and its
constants: docs/BENCHMARKS.md, "Levers for LRNN under the honest simulation", "The TV blend by frequency band"
and "Coordinate networks with the ramp-weighted data term".
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable, Iterable

import numpy as np
import torch

from sparsect.operators import Geometry, Radon
from sparsect.reconstruct import blend, classical
from sparsect.reconstruct.classical import object_attenuation
from sparsect.reconstruct.fit import CoordinateRamp, FitConfig, FitProgress, FitResult, fit
from sparsect.reconstruct.models import Preset, build_model, get_preset
from sparsect.reconstruct.models.stacked import StackedModels
from sparsect.reconstruct.result import IterationProgress, StopLike

#: TV weight of the "tv" variant (objective = normalised data term + weight * TV(image / scale)).
TV_WEIGHT = 1e-2
#: The "fbp_init" variant fits at this fraction of the preset's learning rate: large steps undo the warm start.
FBP_INIT_LR_FACTOR = 0.3
#: Warm-start steps of the "fbp_init" variant.
FBP_INIT_STEPS = 100
#: Coordinate factor at the start of the "coarse_to_fine" ramp (reaches 1 at half of the budget).
COARSE_START = 0.25
#: The "discrepancy" variant stops once the sinogram MSE is this multiple of the noise's expected MSE.
DISCREPANCY_FACTOR = 1.0


def _tv(config: FitConfig) -> FitConfig:
    return dataclasses.replace(config, tv_weight=TV_WEIGHT)


def _warm_start_from(image: str) -> Callable[[FitConfig], FitConfig]:
    """The transform of a warm-start variant: ``FBP_INIT_STEPS`` pre-fit steps to ``image`` ("fbp" or "tv"), then
    the fit at ``FBP_INIT_LR_FACTOR`` times the rate."""
    def transform(config: FitConfig) -> FitConfig:
        return dataclasses.replace(config, warm_start=image, warm_start_steps=FBP_INIT_STEPS,
                                   lr=config.lr * FBP_INIT_LR_FACTOR)

    return transform


def _wls(config: FitConfig) -> FitConfig:
    return dataclasses.replace(config, noise_weighting=True)


def _discrepancy(config: FitConfig) -> FitConfig:
    return dataclasses.replace(config, discrepancy=DISCREPANCY_FACTOR)


def _positive(config: FitConfig) -> FitConfig:
    return dataclasses.replace(config, positive=True)


def _coarse_to_fine(config: FitConfig) -> FitConfig:
    return dataclasses.replace(config, coordinate_ramp=CoordinateRamp(start=COARSE_START, until=0.5))


def _ramp_loss(config: FitConfig) -> FitConfig:
    return dataclasses.replace(config, data_weighting="ramp")


def _unchanged(config: FitConfig) -> FitConfig:
    return config


#: Fit variants: name -> FitConfig transform. "tv": TV penalty ``TV_WEIGHT``; "fbp_init": warm start from
#: the FBP image for ``FBP_INIT_STEPS`` steps, then the fit at ``FBP_INIT_LR_FACTOR`` times the preset's rate;
#: "tv_init": the same with the TV image (its default, noise-aware weight) instead of FBP's;
#: "coarse_to_fine": coordinates ramped from ``COARSE_START`` to 1 over the first half of the budget;
#: "ramp_loss": the sinogram residual weighted by the ramp filter (a preconditioner); "wls": each bin weighted
#: by its inverse Poisson variance; "discrepancy": stop when the residual reaches ``DISCREPANCY_FACTOR`` times
#: the expected noise (needs the photon count); "positive": a softplus keeps attenuation >= 0.
VARIANTS: dict[str, Callable[[FitConfig], FitConfig]] = {
    "paper": _unchanged,
    "tv": _tv,
    "fbp_init": _warm_start_from("fbp"),
    "tv_init": _warm_start_from("tv"),
    "coarse_to_fine": _coarse_to_fine,
    "ramp_loss": _ramp_loss,
    "wls": _wls,
    "discrepancy": _discrepancy,
    "positive": _positive,
}
#: Variants that cannot be combined: each set names alternatives.
EXCLUSIVE_VARIANTS: tuple[frozenset[str], ...] = (frozenset({"fbp_init", "tv_init"}),
                                                  frozenset({"tv_blend", "band_blend"}))
#: The variant that fits an ensemble: ``ENSEMBLE_SIZE`` networks initialised from seeds ``seed, seed + 1, ...``
#: (combinable with the others, which then apply to every member).
ENSEMBLE = "ensemble"
#: Networks fitted by the "ensemble" variant: three keep the recommended 128^2 fit within the CPU preview
#: budget of a minute (docs/BENCHMARKS.md, "Levers for LRNN under the honest simulation").
ENSEMBLE_SIZE = 3
#: The variant that blends the fitted image with TV's: the result is ``TV_BLEND_WEIGHT`` times the network's image
#: plus the rest times :func:`reconstruct.classical.tv`'s (its default, noise-aware weight). The two err in
#: different ways (TV: flat patches and lost texture; the network: ringing at strong edges), so their mean is
#: closer to the object than either on the bundled samples (docs/BENCHMARKS.md). Combinable with the others.
TV_BLEND = "tv_blend"
#: The network's share of the "tv_blend" image.
TV_BLEND_WEIGHT = 0.5
#: The variant that blends the fitted image with TV's by spatial frequency (:func:`reconstruct.blend.blend`): the
#: network's share follows its :data:`BAND_BLEND_SHARES` (low at coarse scales, high at fine ones). Under the honest
#: simulation TV's errors are the smaller ones at coarse scales and the networks' at fine ones (docs/BENCHMARKS.md,
#: "The TV blend by frequency band"). An alternative to "tv_blend".
BAND_BLEND = "band_blend"


@dataclasses.dataclass(frozen=True)
class BandShares:
    """A network's share of the "band_blend" image: ``coarse`` well below ``cutoff`` (cycles per pixel), ``fine``
    well above it, a smooth step of ``transition`` octaves either side (:func:`reconstruct.blend.band_response`)."""

    coarse: float
    fine: float
    cutoff: float
    transition: float


#: Each network's band shares, chosen for it on the two bundled real slices (``benchmarks/blend_shares.py``;
#: docs/BENCHMARKS.md, "Band shares per network"): WIRE's and SIREN's coarse-scale errors are larger than LRNN's,
#: so they leave those scales to TV.
BAND_BLEND_SHARES: dict[str, BandShares] = {
    "lrnn": BandShares(coarse=0.25, fine=0.75, cutoff=0.25, transition=0.5),
    "siren": BandShares(coarse=0.0, fine=0.75, cutoff=0.35, transition=1.0),
    "wire": BandShares(coarse=0.0, fine=0.75, cutoff=0.35, transition=1.0),
}
#: The variant that stands for the network's own :data:`RECOMMENDED_VARIANTS` (alone, like "paper"): what the app, the
#: command line and batch jobs fit with unless told otherwise.
RECOMMENDED = "recommended"
#: Every variant name: the FitConfig transforms, then the ensemble, the two TV blends and "recommended".
VARIANT_NAMES: tuple[str, ...] = (*VARIANTS, ENSEMBLE, TV_BLEND, BAND_BLEND, RECOMMENDED)
#: Each network's recommended fit (sorted). WIRE fits better without the FBP warm start (docs/BENCHMARKS.md, "How
#: firm the comparison is", the warm-start bullets); LRNN and SIREN do not.
RECOMMENDED_VARIANTS: dict[str, tuple[str, ...]] = {
    "lrnn": ("band_blend", "ensemble", "fbp_init", "ramp_loss"),
    "siren": ("band_blend", "ensemble", "fbp_init", "ramp_loss"),
    "wire": ("band_blend", "ensemble", "ramp_loss"),
}


def band_blend_response(method: str, image_shape: tuple[int, ...]) -> np.ndarray:
    """Network ``method``'s "band_blend" share for images of ``image_shape`` (..., H, W): its
    :data:`BAND_BLEND_SHARES` as :func:`reconstruct.blend.band_response` of the (2H, 2W) grid that
    :func:`reconstruct.blend.blend` filters."""
    rows, cols = image_shape[-2:]
    return blend.band_response((2 * rows, 2 * cols), **dataclasses.asdict(BAND_BLEND_SHARES[method]))


def canonical_variants(variant: str | Iterable[str] | None) -> tuple[str, ...]:
    """The canonical form of a variant selection: the sorted names, ``("paper",)`` for the published
    formulation (None, "paper" or nothing), ``("recommended",)`` for each network's own set. Raises ``ValueError``
    for unknown names and for "paper" or "recommended" combined with other variants."""
    names = set() if variant is None else ({variant} if isinstance(variant, str) else set(variant))
    unknown = names - set(VARIANT_NAMES)
    if unknown:
        raise ValueError(f"unknown variant {', '.join(map(repr, sorted(unknown)))}; choose from "
                         f"{', '.join(VARIANT_NAMES)} (any combination of the others, or paper alone)")
    for alternatives in EXCLUSIVE_VARIANTS:
        if len(names & alternatives) > 1:
            raise ValueError(f"variants {' and '.join(sorted(names & alternatives))} are alternatives; choose one")
    for alone, meaning in (("paper", "the published formulation"), (RECOMMENDED, "each network's own recommended set")):
        if alone in names and len(names) > 1:
            raise ValueError(f"variant {alone!r} is {meaning} and cannot be combined with "
                             f"{', '.join(sorted(names - {alone}))}")
    return tuple(sorted(names - {"paper"})) or ("paper",)


def resolve_variants(method: str, variant: str | Iterable[str] | None) -> tuple[str, ...]:
    """The variants network ``method`` fits with: :func:`canonical_variants` of ``variant``, with "recommended"
    replaced by the network's own :data:`RECOMMENDED_VARIANTS`."""
    variants = canonical_variants(variant)
    return RECOMMENDED_VARIANTS[method] if variants == (RECOMMENDED,) else variants


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
    config = FitConfig(**{**recipe, **fields})
    for name in resolve_variants(method, variant):
        config = VARIANTS.get(name, _unchanged)(config)
    return config


def reconstruct_neural(
    method: str,
    sinogram: torch.Tensor,
    geometry: Geometry,
    pixel_size_mm: float = 1.0,
    preset: str | Preset = "preview",
    iterations: int | None = None,
    seed: int = 0,
    device: str | torch.device = "auto",
    variant: str | Iterable[str] | None = None,
    callback: Callable[[FitProgress], None] | None = None,
    stop: StopLike = None,
    ensemble_size: int = ENSEMBLE_SIZE,
    photons: float | None = None,
    **fit_fields,
) -> FitResult:
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
    variant : fit variants (see :data:`VARIANTS` and :data:`ENSEMBLE`); None or "paper": the published
        formulation; "recommended": the network's own :data:`RECOMMENDED_VARIANTS`.
    callback, stop : see :func:`reconstruct.fit.fit`.
    ensemble_size : networks per sinogram with the "ensemble" variant (seeds ``seed`` to
        ``seed + ensemble_size - 1``, fitted side by side); ignored without it.
    photons : the scan's noise level (incident photons per bin, ``math.inf`` noise-free, None unknown), read
        by the "discrepancy", "tv_init", "tv_blend" and "band_blend" variants.
    fit_fields : further :class:`reconstruct.fit.FitConfig` fields (chunk_size, amp, output_scale, ...).

    Returns
    -------
    :class:`reconstruct.fit.FitResult` (a :class:`reconstruct.result.Reconstruction`), method = ``method``;
    ``parameters`` also records the preset and the variant list fitted (canonical, "recommended" resolved). With
    "tv_blend" every image is the blend (``TV_BLEND_WEIGHT`` network, the rest TV) and ``parameters["tv_blend_weight"]``
    records the share; with "band_blend" the blend by frequency band, ``parameters["band_blend"]`` its shares, cutoff
    and transition. Either way ``uncertainty_hu`` is the spread of the blended members and
    ``timings["tv_blend_seconds"]`` TV's time. With the "ensemble" variant the images (``image_hu``, ``mu``, ``image``)
    are the members' mean, ``uncertainty_hu`` is their per-pixel standard deviation (HU, ddof 0; zeros for one member)
    and ``parameters`` adds ``ensemble_size``, ``ensemble_seeds`` and ``ensemble_left_out`` (``{"slice", "seed"}`` of
    each member left out of both because it ran out of divergence roll-backs, see :func:`reconstruct.fit.fit`);
    ``curve`` is the mean loss over the members. ``diverged`` names the sinograms whose every network ran out of
    roll-backs.
    """
    spec = preset if isinstance(preset, Preset) else get_preset(method, preset)
    variants = resolve_variants(method, variant)
    members = _members(variants, ensemble_size)
    radon = Radon(geometry)
    sinogram = torch.as_tensor(sinogram)
    rows = sinogram.reshape(-1, *geometry.sinogram_shape).repeat_interleave(members, dim=0)
    models = [_seeded_model(method, spec, seed + k) for _ in range(rows.shape[0] // members) for k in range(members)]
    model = models[0] if len(models) == 1 else StackedModels(models)
    if "output_scale" not in fit_fields:
        # the network outputs O(1) values: scaled by the object's typical attenuation per pixel
        with torch.no_grad():
            fit_fields["output_scale"] = tuple(object_attenuation(radon.fbp(rows.float().cpu()[:, None])).tolist())
    config = fit_config(method, spec, iterations, variants, seed=seed, device=str(device),
                        pixel_size_mm=pixel_size_mm, photons=photons, **fit_fields)
    target = sinogram if ENSEMBLE not in variants else rows[:, None]
    single = rows.shape[0] == members
    result = fit(model, radon, target, config, stop=stop,
                 callback=callback if ENSEMBLE not in variants else _mean_progress(callback, members, single))
    result.parameters.update(preset=spec.name, variant=list(variants))
    ensemble = None
    if ENSEMBLE in variants:
        seeds = [seed + k for k in range(members)]
        ensemble = _reduce_ensemble(result, members, single, seeds)
        result.parameters.update(ensemble_size=members, ensemble_seeds=seeds)
    if TV_BLEND in variants or BAND_BLEND in variants:
        _blend_with_tv(result, sinogram, radon, photons, stop, callback,
                       band=method if BAND_BLEND in variants else None, members=ensemble)
    return result


def _blend_with_tv(result: FitResult, sinogram: torch.Tensor, radon: Radon, photons: float | None,
                   stop: StopLike, callback: Callable[[FitProgress], None] | None, band: str | None,
                   members: tuple[np.ndarray, np.ndarray] | None) -> None:
    """Replace ``result``'s images by their blend with TV's of ``sinogram``: ``TV_BLEND_WEIGHT`` of the network
    at every frequency, or by frequency band with network ``band``'s :data:`BAND_BLEND_SHARES` (None: not).
    ``uncertainty_hu`` becomes the spread of the blended ensemble ``members`` (the ensemble's HU images
    (n, members, H, W) and which are kept (n, members); None without an ensemble, which has no map).
    TV's iterations are reported to ``callback`` as phase "tv_blend"."""
    pixel_size_mm = float(result.parameters["pixel_size_mm"])
    start = time.perf_counter()

    def report(step: IterationProgress) -> None:
        callback(FitProgress(step.iteration, step.iterations, step.loss, result.seconds + time.perf_counter() - start,
                             lr=0.0, phase="tv_blend"))

    tv = classical.tv(sinogram, radon, photons=photons, pixel_size_mm=pixel_size_mm, stop=stop,
                      callback=report if callback is not None else None)
    if band is not None:
        shares = BAND_BLEND_SHARES[band]
        share: float | np.ndarray = band_blend_response(band, result.image_hu.shape)
        result.parameters["band_blend"] = dict(coarse=shares.coarse, fine=shares.fine,
                                               cutoff_cycles_per_pixel=shares.cutoff,
                                               transition_octaves=shares.transition)
        how = (f"by frequency band, network share {shares.coarse:g} below and {shares.fine:g} above "
               f"{shares.cutoff:g} cycles/pixel")
    else:
        share = TV_BLEND_WEIGHT
        result.parameters["tv_blend_weight"] = TV_BLEND_WEIGHT
        how = f"network share {TV_BLEND_WEIGHT:g}"

    def blended(network: np.ndarray | torch.Tensor, tv_image: np.ndarray | torch.Tensor) -> np.ndarray:
        network = np.asarray(network.detach().cpu() if isinstance(network, torch.Tensor) else network)
        tv_image = np.asarray(tv_image.detach().cpu() if isinstance(tv_image, torch.Tensor) else tv_image)
        return blend.blend(tv_image.reshape(network.shape), network, share)

    result.image_hu = blended(result.image_hu, tv.image_hu).astype(np.float32)
    result.mu = torch.from_numpy(blended(result.mu, tv.mu)).to(result.mu)
    result.image = torch.from_numpy(blended(result.image, tv.mu * pixel_size_mm)).to(result.image)
    if members is not None:
        members_hu, kept = members
        spread = _member_spread(members_hu, kept, lambda deviations: blend.blend(np.zeros_like(deviations),
                                                                                deviations, share))
        result.uncertainty_hu = spread.reshape(result.uncertainty_hu.shape).astype(np.float32)
    result.timings["tv_blend_seconds"] = tv.seconds
    result.seconds += tv.seconds
    result.events.append(f"blended with TV ({tv.iterations} iterations), {how}")


def _members(variants: tuple[str, ...], ensemble_size: int) -> int:
    """Networks fitted per sinogram: ``ensemble_size`` with the ensemble variant, else 1."""
    if ENSEMBLE not in variants:
        return 1
    if isinstance(ensemble_size, bool) or not isinstance(ensemble_size, int) or ensemble_size < 1:
        raise ValueError(f"ensemble_size must be a whole number >= 1, got {ensemble_size!r}")
    return ensemble_size


def _seeded_model(method: str, spec: Preset, seed: int) -> torch.nn.Module:
    """Network ``method`` of ``spec`` initialised from ``seed`` (the global RNG state is left untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(method, spec)


def _mean_progress(callback: Callable[[FitProgress], None] | None, members: int, single: bool
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


def _reduce_ensemble(result: FitResult, members: int, single: bool, seeds: list[int]
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
        warnings.warn(message, RuntimeWarning, stacklevel=3)
    weights = kept / kept.sum(axis=1, keepdims=True)

    def mean(images: torch.Tensor) -> torch.Tensor:  # a member left out may hold anything, NaN included
        images = images.reshape(-1, members, *shape)
        mask = torch.from_numpy(kept).to(images.device)[:, :, None, None]
        return torch.einsum("nk,nkhw->nhw", torch.from_numpy(weights).to(images), images.where(mask, 0))

    mu, image = mean(result.mu)[:, None], mean(result.image)
    result.image_hu = np.einsum("nk,nkhw->nhw", weights, np.where(kept[:, :, None, None], hu, 0)).astype(np.float32)
    result.uncertainty_hu = _member_spread(hu, kept).astype(np.float32)
    result.mu, result.image = mu, image
    result.diverged = np.flatnonzero(failed.all(axis=1)).tolist()
    result.parameters["ensemble_left_out"] = [{"slice": int(index), "seed": seeds[member]}
                                              for index, member in zip(*np.nonzero(~kept), strict=True)]
    if single:
        result.image_hu, result.uncertainty_hu = result.image_hu[0], result.uncertainty_hu[0]
        result.mu, result.image = mu[0, 0], image[0]
    return hu, kept


def _member_spread(members_hu: np.ndarray, kept: np.ndarray,
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


__all__ = ["COARSE_START", "DISCREPANCY_FACTOR", "ENSEMBLE", "ENSEMBLE_SIZE", "EXCLUSIVE_VARIANTS",
           "FBP_INIT_LR_FACTOR", "FBP_INIT_STEPS", "TV_BLEND", "TV_BLEND_WEIGHT", "BAND_BLEND", "BAND_BLEND_SHARES",
           "BandShares", "band_blend_response",
           "RECOMMENDED", "RECOMMENDED_VARIANTS", "TV_WEIGHT", "VARIANTS", "VARIANT_NAMES", "canonical_variants",
           "fit_config", "resolve_variants",
           "reconstruct_neural"]
