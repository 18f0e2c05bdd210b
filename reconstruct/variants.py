"""The fit variants of the coordinate networks, as data: name, label, help and the FitConfig transform.

Each :class:`FitVariant` is one way of fitting a network differently from the published formulation ("paper").
Most change :class:`reconstruct.fit_config.FitConfig` settings (``transform``); "ensemble", "tv_blend" and
"band_blend" change what :func:`reconstruct.neural.reconstruct_neural` does around the fit, and "recommended"
stands for each network's own set (:data:`RECOMMENDED_VARIANTS`). Why the recommended set and its constants:
docs/BENCHMARKS.md, "Levers for LRNN under the honest simulation", "The TV blend by frequency band" and
"Coordinate networks with the ramp-weighted data term".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sparsect.reconstruct.fit_config import CoordinateRamp, FitConfig

#: TV weight of the "tv" variant (objective = normalised data term + weight * mean TV per pixel of image / scale).
TV_WEIGHT = 1e-2
#: The "fbp_init" variant fits at this fraction of the preset's learning rate: large steps undo the warm start.
FBP_INIT_LR_FACTOR = 0.3
#: Warm-start steps of the "fbp_init" variant.
FBP_INIT_STEPS = 100
#: Coordinate factor at the start of the "coarse_to_fine" ramp (reaches 1 at half of the budget).
COARSE_START = 0.25
#: Side of the coarse grid of the "coarse_grid" variant (pixels): the grid the recommended fit was chosen on.
COARSE_GRID = 128
#: Share of the main loop's steps the "coarse_grid" variant runs on the scan's own grid, at the end.
FINE_SHARE = 0.07
#: The "discrepancy" variant stops once the sinogram MSE is this multiple of the noise's expected MSE.
DISCREPANCY_FACTOR = 1.0

#: The published formulation (no change); alone only.
PAPER = "paper"
#: The variant that fits an ensemble: ``ENSEMBLE_SIZE`` networks initialised from seeds ``seed, seed + 1, ...``
#: (combinable with the others, which then apply to every member).
ENSEMBLE = "ensemble"
#: Networks fitted by the "ensemble" variant (docs/BENCHMARKS.md, "Levers for LRNN under the honest simulation").
ENSEMBLE_SIZE = 3
#: The variant that blends the fitted image with TV's (:mod:`reconstruct.tv_blend`). Combinable with the others.
TV_BLEND = "tv_blend"
#: The variant that blends the fitted image with TV's by spatial frequency (:mod:`reconstruct.tv_blend`). An
#: alternative to "tv_blend".
BAND_BLEND = "band_blend"
#: The variant that stands for the network's own :data:`RECOMMENDED_VARIANTS` (alone, like "paper"): what the app, the
#: command line and batch jobs fit with unless told otherwise.
RECOMMENDED = "recommended"


@dataclass(frozen=True)
class FitVariant:
    """One fit variant.

    name : what users type ("ramp_loss").
    label : short words for tables and the page ("Ramp-weighted loss").
    help : one or two sentences, the one wording of the command line's help and the page's.
    transform : the :class:`reconstruct.fit_config.FitConfig` it fits with, from the one it is given; None for a
        variant that changes no fit setting (the ensemble, the TV blends, "recommended").
    """

    name: str
    label: str
    help: str
    transform: Callable[[FitConfig], FitConfig] | None


def _unchanged(config: FitConfig) -> FitConfig:
    return config


def _setting(**changes: object) -> Callable[[FitConfig], FitConfig]:
    """The transform that sets the FitConfig fields ``changes``."""
    def transform(config: FitConfig) -> FitConfig:
        return dataclasses.replace(config, **changes)

    return transform


def _warm_start_from(image: str) -> Callable[[FitConfig], FitConfig]:
    """The transform of a warm-start variant: ``FBP_INIT_STEPS`` pre-fit steps to ``image`` ("fbp" or "tv"), then
    the fit at ``FBP_INIT_LR_FACTOR`` times the rate."""
    def transform(config: FitConfig) -> FitConfig:
        return dataclasses.replace(config, warm_start=image, warm_start_steps=FBP_INIT_STEPS,
                                   lr=config.lr * FBP_INIT_LR_FACTOR)

    return transform


def _two_grids(config: FitConfig) -> FitConfig:
    """The "coarse_grid" transform: the warm start and most steps on a ``COARSE_GRID`` grid, the last
    ``FINE_SHARE`` of the steps on the scan's own (:mod:`reconstruct.grid_levels`)."""
    return dataclasses.replace(config, coarse_grid=COARSE_GRID,
                               fine_iterations=round(FINE_SHARE * config.iterations))


#: Every fit variant by name: first the FitConfig transforms ("paper" the identity), then the ensemble, the two TV
#: blends and "recommended".
FIT_VARIANTS: dict[str, FitVariant] = {v.name: v for v in (
    FitVariant(PAPER, "Published fit",
               "The published formulation: the plain sinogram loss from the network's random start. Alone only "
               "(an empty selection on the page).", _unchanged),
    FitVariant("tv", "TV penalty",
               "A small total-variation penalty on the image, against streaks and noise.",
               _setting(tv_weight=TV_WEIGHT)),
    FitVariant("fbp_init", "FBP warm start",
               "The network first learns the FBP image, then fits the sinogram.", _warm_start_from("fbp")),
    FitVariant("tv_init", "TV warm start",
               "The same warm start from the TV image instead of FBP's (not with the FBP warm start).",
               _warm_start_from("tv")),
    FitVariant("coarse_to_fine", "Coarse to fine",
               "The coordinate scale ramps up over the first half of the fit.",
               _setting(coordinate_ramp=CoordinateRamp(start=COARSE_START, until=0.5))),
    FitVariant("coarse_grid", f"{COARSE_GRID}² grid first",
               f"Above {COARSE_GRID}x{COARSE_GRID}, the warm start and most steps run on a {COARSE_GRID}x{COARSE_GRID} "
               f"grid over the same field of view and the last {FINE_SHARE:.0%} on the scan's own: a 512x512 fit "
               "in minutes, not half an hour.", _two_grids),
    FitVariant("ramp_loss", "Ramp-weighted loss",
               "The sinogram error is weighted by the ramp filter, a preconditioner worth several dB at the same "
               "iteration budget.", _setting(data_weighting="ramp")),
    FitVariant("wls", "Poisson-weighted loss",
               "Each ray is weighted by its inverse Poisson noise variance.", _setting(noise_weighting=True)),
    FitVariant("discrepancy", "Stop at the noise level",
               "The fit ends once its residual reaches the expected noise (needs a photon count: simulated scans "
               "only).", _setting(discrepancy=DISCREPANCY_FACTOR)),
    FitVariant("positive", "Non-negative attenuation",
               "A softplus keeps the attenuation >= 0 (the image >= -1000 HU).", _setting(positive=True)),
    FitVariant(ENSEMBLE, "Seed ensemble (uncertainty)",
               f"{ENSEMBLE_SIZE} networks from consecutive seeds: the image is their mean and the uncertainty map "
               f"their per-pixel spread in HU ({ENSEMBLE_SIZE}x the work).", None),
    FitVariant(TV_BLEND, "Blend with TV",
               "The image is the mean of the network's and TV's, which err in different ways (TV's time on top).",
               None),
    FitVariant(BAND_BLEND, "Blend with TV by frequency band",
               "TV's and the network's images blended by spatial frequency: mostly TV at coarse scales and mostly "
               "the network at fine ones, where each errs less (instead of the plain blend).", None),
    FitVariant(RECOMMENDED, "Each network's recommended fit",
               "Each network's own recommended set of the variants above. Alone only; the default.", None),
)}
#: Variants that cannot be combined: each set names alternatives.
EXCLUSIVE_VARIANTS: tuple[frozenset[str], ...] = (frozenset({"fbp_init", "tv_init"}),
                                                  frozenset({TV_BLEND, BAND_BLEND}))
#: Every variant name: the FitConfig transforms, then the ensemble, the two TV blends and "recommended".
VARIANT_NAMES: tuple[str, ...] = tuple(FIT_VARIANTS)
#: Each network's recommended fit (sorted). WIRE fits better without the FBP warm start (docs/BENCHMARKS.md, "How
#: firm the comparison is", the warm-start bullets); LRNN and SIREN do not. Every network fits grids above 128² through
#: a 128² one ("coarse_grid"), so the page compares them at one budget.
RECOMMENDED_VARIANTS: dict[str, tuple[str, ...]] = {
    "lrnn": ("band_blend", "coarse_grid", "ensemble", "fbp_init", "ramp_loss"),
    "siren": ("band_blend", "coarse_grid", "ensemble", "fbp_init", "ramp_loss"),
    "wire": ("band_blend", "coarse_grid", "ensemble", "ramp_loss"),
}


def canonical_variants(variant: str | Iterable[str] | None) -> tuple[str, ...]:
    """The canonical form of a variant selection: the sorted names, ``("paper",)`` for the published
    formulation (None, "paper" or nothing), ``("recommended",)`` for each network's own set. Raises ``ValueError``
    for unknown names and for "paper" or "recommended" combined with other variants."""
    names = set() if variant is None else ({variant} if isinstance(variant, str) else set(variant))
    unknown = names - set(FIT_VARIANTS)
    if unknown:
        raise ValueError(f"unknown variant {', '.join(map(repr, sorted(unknown)))}; choose from "
                         f"{', '.join(FIT_VARIANTS)} (any combination of the others, or paper alone)")
    for alternatives in EXCLUSIVE_VARIANTS:
        if len(names & alternatives) > 1:
            raise ValueError(f"variants {' and '.join(sorted(names & alternatives))} are alternatives; choose one")
    for alone, meaning in ((PAPER, "the published formulation"), (RECOMMENDED, "each network's own recommended set")):
        if alone in names and len(names) > 1:
            raise ValueError(f"variant {alone!r} is {meaning} and cannot be combined with "
                             f"{', '.join(sorted(names - {alone}))}")
    return tuple(sorted(names - {PAPER})) or (PAPER,)


def resolve_variants(method: str, variant: str | Iterable[str] | None) -> tuple[str, ...]:
    """The variants network ``method`` fits with: :func:`canonical_variants` of ``variant``, with "recommended"
    replaced by the network's own :data:`RECOMMENDED_VARIANTS`."""
    variants = canonical_variants(variant)
    return RECOMMENDED_VARIANTS[method] if variants == (RECOMMENDED,) else variants


def apply_variants(config: FitConfig, variants: Iterable[str]) -> FitConfig:
    """``config`` with the transforms of ``variants`` applied in the given order (those without one skipped)."""
    for name in variants:
        transform = FIT_VARIANTS[name].transform
        if transform is not None:
            config = transform(config)
    return config


#: How :func:`describe_fit` words the variants whose label does not read well inside a sentence.
_IN_A_SENTENCE = {PAPER: "published fit", RECOMMENDED: "recommended fit", TV_BLEND: "blended with TV",
                  BAND_BLEND: "blended with TV by frequency band", "wls": "Poisson-weighted loss"}


def _phrase(name: str, ensemble_size: int) -> str:
    if name == ENSEMBLE:
        return f"{ensemble_size} seed{'' if ensemble_size == 1 else 's'}"
    if name in _IN_A_SENTENCE:
        return _IN_A_SENTENCE[name]
    label = FIT_VARIANTS[name].label
    first = label.split()[0]
    return label if first.isupper() else label[0].lower() + label[1:]  # "FBP warm start", "ramp-weighted loss"


def describe_fit(method_label: str, variants: tuple[str, ...], ensemble_size: int) -> str:
    """A network's fit in words for tables, e.g. "LRNN, 3 seeds, FBP warm start, ramp-weighted loss, blended with
    TV by frequency band" (LRNN's recommended set) or "LRNN, published fit" (``("paper",)``).

    method_label : the network's label ("LRNN"). variants : the variant names fitted (any order; empty means
    "paper"). ensemble_size : networks of the "ensemble" variant. The order is fixed: the ensemble, the FitConfig
    transforms in :data:`FIT_VARIANTS` order, then the blend.
    """
    chosen = set(variants) or {PAPER}
    unknown = chosen - set(FIT_VARIANTS)
    if unknown:
        raise ValueError(f"unknown variant {', '.join(map(repr, sorted(unknown)))}")
    order = [ENSEMBLE, *(name for name in FIT_VARIANTS if name != ENSEMBLE)]
    return ", ".join([method_label, *(_phrase(name, ensemble_size) for name in order if name in chosen)])


__all__ = ["BAND_BLEND", "COARSE_GRID", "COARSE_START", "DISCREPANCY_FACTOR", "ENSEMBLE", "ENSEMBLE_SIZE",
           "EXCLUSIVE_VARIANTS", "FBP_INIT_LR_FACTOR", "FBP_INIT_STEPS", "FINE_SHARE", "FIT_VARIANTS", "PAPER",
           "RECOMMENDED", "RECOMMENDED_VARIANTS", "TV_BLEND", "TV_WEIGHT", "VARIANT_NAMES", "FitVariant",
           "apply_variants", "canonical_variants", "describe_fit", "resolve_variants"]
