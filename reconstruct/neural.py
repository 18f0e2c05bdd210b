"""Coordinate-network reconstruction: build a network from a preset, apply the fit variants, fit it.

Each fit variant is a function from a :class:`reconstruct.fit.FitConfig` to a changed one
(:data:`VARIANTS`); "paper" is the published formulation (no change). Why the recommended set and its
constants: docs/BENCHMARKS.md, "Coordinate networks with the ramp-weighted data term".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

import torch

from sparsect.operators import Geometry, Radon
from sparsect.reconstruct.classical import object_attenuation
from sparsect.reconstruct.fit import CoordinateRamp, FitConfig, FitProgress, FitResult, fit
from sparsect.reconstruct.models import Preset, build_model, get_preset
from sparsect.reconstruct.models.stacked import StackedModels
from sparsect.reconstruct.result import StopLike

#: TV weight of the "tv" variant (objective = normalised data term + weight * TV(image / scale)).
TV_WEIGHT = 1e-2
#: The "fbp_init" variant fits at this fraction of the preset's learning rate: large steps undo the warm start.
FBP_INIT_LR_FACTOR = 0.3
#: Warm-start steps of the "fbp_init" variant.
FBP_INIT_STEPS = 100
#: Coordinate factor at the start of the "coarse_to_fine" ramp (reaches 1 at half of the budget).
COARSE_START = 0.25


def _tv(config: FitConfig) -> FitConfig:
    return dataclasses.replace(config, tv_weight=TV_WEIGHT)


def _fbp_init(config: FitConfig) -> FitConfig:
    return dataclasses.replace(config, warm_start="fbp", warm_start_steps=FBP_INIT_STEPS,
                               lr=config.lr * FBP_INIT_LR_FACTOR)


def _coarse_to_fine(config: FitConfig) -> FitConfig:
    return dataclasses.replace(config, coordinate_ramp=CoordinateRamp(start=COARSE_START, until=0.5))


def _ramp_loss(config: FitConfig) -> FitConfig:
    return dataclasses.replace(config, data_weighting="ramp")


#: Fit variants: name -> FitConfig transform. "tv": TV penalty ``TV_WEIGHT``; "fbp_init": warm start from
#: the FBP image for ``FBP_INIT_STEPS`` steps, then the fit at ``FBP_INIT_LR_FACTOR`` times the preset's rate;
#: "coarse_to_fine": coordinates ramped from ``COARSE_START`` to 1 over the first half of the budget;
#: "ramp_loss": the sinogram residual weighted by the ramp filter (a preconditioner).
VARIANTS: dict[str, Callable[[FitConfig], FitConfig]] = {
    "paper": lambda config: config,
    "tv": _tv,
    "fbp_init": _fbp_init,
    "coarse_to_fine": _coarse_to_fine,
    "ramp_loss": _ramp_loss,
}
#: What the app, the command line and batch jobs fit with unless told otherwise (sorted).
RECOMMENDED_VARIANTS: tuple[str, ...] = ("fbp_init", "ramp_loss")


def canonical_variants(variant: str | Iterable[str] | None) -> tuple[str, ...]:
    """The canonical form of a variant selection: the sorted names, ``("paper",)`` for the published
    formulation (None, "paper" or nothing). Raises ``ValueError`` for unknown names and for "paper"
    combined with other variants."""
    names = set() if variant is None else ({variant} if isinstance(variant, str) else set(variant))
    unknown = names - set(VARIANTS)
    if unknown:
        raise ValueError(f"unknown variant {', '.join(map(repr, sorted(unknown)))}; choose from "
                         f"{', '.join(VARIANTS)} (any combination of the others, or paper alone)")
    if "paper" in names and len(names) > 1:
        raise ValueError("variant 'paper' is the published formulation and cannot be combined with "
                         f"{', '.join(sorted(names - {'paper'}))}")
    return tuple(sorted(names - {"paper"})) or ("paper",)


def fit_config(method: str, preset: str | Preset = "preview", iterations: int | None = None,
               variant: str | Iterable[str] | None = None, **fields) -> FitConfig:
    """The :class:`FitConfig` of network ``method`` under ``preset`` (a name or a :class:`Preset`: its
    optimiser recipe) and ``variant``; ``iterations`` overrides the preset's budget, ``fields`` set further
    FitConfig fields before the variants apply."""
    optim = (preset if isinstance(preset, Preset) else get_preset(method, preset)).optim
    budget = optim.iterations if iterations is None else int(iterations)
    config = FitConfig(iterations=budget, lr=optim.lr, warmup=min(optim.warmup, budget // 2),
                       final_lr_factor=optim.final_lr_factor, schedule="exponential", method=method, **fields)
    for name in canonical_variants(variant):
        config = VARIANTS[name](config)
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
    variant : fit variants (see :data:`VARIANTS`); None or "paper": the published formulation.
    callback, stop : see :func:`reconstruct.fit.fit`.
    fit_fields : further :class:`reconstruct.fit.FitConfig` fields (chunk_size, amp, output_scale, ...).

    Returns
    -------
    :class:`reconstruct.fit.FitResult` (a :class:`reconstruct.result.Reconstruction`), method = ``method``;
    ``parameters`` also records the preset and the canonical variant list.
    """
    spec = preset if isinstance(preset, Preset) else get_preset(method, preset)
    radon = Radon(geometry)
    sinogram = torch.as_tensor(sinogram)
    rows = sinogram.reshape(-1, *geometry.sinogram_shape)
    models = []
    for _ in range(rows.shape[0]):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            models.append(build_model(method, spec))
    model = models[0] if len(models) == 1 else StackedModels(models)
    if "output_scale" not in fit_fields:
        # the network outputs O(1) values: scaled by the object's typical attenuation per pixel
        with torch.no_grad():
            fit_fields["output_scale"] = tuple(object_attenuation(radon.fbp(rows.float().cpu()[:, None])).tolist())
    config = fit_config(method, spec, iterations, variant, seed=seed, device=str(device),
                        pixel_size_mm=pixel_size_mm, **fit_fields)
    result = fit(model, radon, sinogram, config, callback=callback, stop=stop)
    result.parameters.update(preset=spec.name, variant=list(canonical_variants(variant)))
    return result


__all__ = ["COARSE_START", "FBP_INIT_LR_FACTOR", "FBP_INIT_STEPS", "RECOMMENDED_VARIANTS", "TV_WEIGHT", "VARIANTS",
           "canonical_variants", "fit_config", "reconstruct_neural"]
