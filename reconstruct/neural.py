"""High-level neural-field reconstruction: build a coordinate network from a preset and fit it."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

import torch

from sparsect.operators import Geometry, Radon
from sparsect.reconstruct.classical import object_attenuation
from sparsect.reconstruct.fit import FitProgress, FitResult, StopLike, fit
from sparsect.reconstruct.models import build_model, get_preset
from sparsect.reconstruct.models.stacked import StackedModels

VARIANTS = ("paper", "tv", "fbp_init", "coarse_to_fine", "ramp_loss")
#: What the app, the command line and batch jobs fit with unless told otherwise ("paper" gives the
#: published formulation): the ramp-weighted data term (+3.7 to +10.6 dB for LRNN preview at 128²) and the FBP
#: warm start (another +0.8 to +4.7 dB, 15-25 % more time); docs/BENCHMARKS.md. Sorted, as parse_variants
#: returns them.
RECOMMENDED_VARIANTS: tuple[str, ...] = ("fbp_init", "ramp_loss")

#: TV weight of the "tv" variant (objective = MSE / mean(sinogram**2) + weight * TV(image / scale)).
TV_WEIGHT = 1e-2
#: The "fbp_init" variant fits at this fraction of the preset's learning rate: large steps undo the warm start.
#: LRNN preview at 128², 30 views (benchmarks/tune_preset.py --variant fbp_init): lr 0.1 / 0.03 / 0.01 gave
#: 37.65 / 39.33 / 39.08 dB on CT_small and 39.79 / 41.42 / 40.18 dB on Shepp-Logan (lr 0.1 also tripped the
#: divergence guard four times there).
FBP_INIT_LR_FACTOR = 0.3
#: Pre-fit steps of the "fbp_init" variant. 100 instead of fit()'s 300 measured better or within 0.5 dB with the
#: ramp term (Shepp-Logan / head_693 128², 30 views: 44.49 / 44.08 dB against 44.97 / 42.02) at a third of the cost.
FBP_INIT_STEPS = 100
#: coord_scale at the start of the "coarse_to_fine" ramp (reaches 1 at half of the budget).
COARSE_START = 0.25


def _variants(variant: str | Iterable[str] | None) -> set[str]:
    if variant is None:
        return set()
    names = {variant} if isinstance(variant, str) else set(variant)
    unknown = names - set(VARIANTS)
    if unknown:
        raise ValueError(f"unknown variant(s) {sorted(unknown)}; choose from {VARIANTS}")
    return names - {"paper"}


def reconstruct_neural(
    method: str,
    sinogram: torch.Tensor,
    geometry: Geometry,
    pixel_size_mm: float = 1.0,
    preset: str = "preview",
    iterations: int | None = None,
    seed: int = 0,
    device: str | torch.device = "auto",
    variant: str | Iterable[str] | None = None,
    callback: Callable[[FitProgress], None] | None = None,
    stop: StopLike = None,
    **fit_options,
) -> FitResult:
    """Reconstruct an image with coordinate network ``method`` ("lrnn", "wire" or "siren").

    Parameters
    ----------
    sinogram : (n_angles, det_count) line integrals in pixel units (attenuation [1/mm] times pixel size),
        or a (B, 1, n_angles, det_count) stack: B networks (each initialised from ``seed``, as a lone fit
        would be) are fitted side by side and the result holds (B, H, W) images.
    geometry : acquisition geometry; its ``image_size`` is the output grid.
    pixel_size_mm : pixel size in mm, for ``mu`` [1/mm] and ``image_hu``.
    preset : model preset; gives the network and the optimiser (lr, iterations, warm-up, final factor,
        exponential decay).
    iterations : overrides the preset's budget.
    seed : seeds the network initialisation and the fit (the global RNG state is left untouched).
    variant : None / "paper" (plain fit), or any of "tv" (TV penalty ``TV_WEIGHT``), "fbp_init" (warm
        start: pre-fit to the FBP image for ``FBP_INIT_STEPS`` steps, then fit at ``FBP_INIT_LR_FACTOR`` times
        the preset's rate), "coarse_to_fine" (ramp the model's ``coord_scale`` from ``COARSE_START`` to its
        configured value over the first half of the budget), "ramp_loss" (the sinogram
        residual's squared norm weighted by the ramp filter along the detector, which preconditions the
        fit: see :func:`reconstruct.fit.fit`'s ``data_weighting``).
    callback, stop : see :func:`reconstruct.fit.fit`.
    fit_options : further keyword arguments for :func:`reconstruct.fit.fit` (chunk_size, amp, ...).

    Returns
    -------
    :class:`reconstruct.fit.FitResult` (a :class:`reconstruct.result.Reconstruction`), method = ``method``.
    """
    names = _variants(variant)
    spec = get_preset(method, preset) if isinstance(preset, str) else preset
    optim = spec.optim
    budget = optim.iterations if iterations is None else int(iterations)
    radon = Radon(geometry)
    sinogram = torch.as_tensor(sinogram)
    rows = sinogram.reshape(-1, *geometry.sinogram_shape)
    models = []
    for _ in range(rows.shape[0]):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            models.append(build_model(method, spec))
    model = models[0] if len(models) == 1 else StackedModels(models)
    with torch.no_grad():
        fbp_images = radon.fbp(rows.float().cpu()[:, None])  # (B, 1, H, W): output scale and the warm start
    # the network outputs O(1) values: scaled by the object's typical attenuation per pixel
    scale = fit_options.pop("output_scale", None) or object_attenuation(fbp_images).tolist()

    lr = optim.lr * (FBP_INIT_LR_FACTOR if "fbp_init" in names else 1.0)
    options: dict = dict(
        iterations=budget, lr=lr, warmup=min(optim.warmup, budget // 2),
        final_lr_factor=optim.final_lr_factor, schedule="exponential", seed=seed, device=device,
        output_scale=scale, callback=callback, stop=stop, pixel_size_mm=pixel_size_mm, method=method,
    )
    if "tv" in names:
        options["tv_weight"] = TV_WEIGHT
    if "fbp_init" in names:
        options["init_image"] = fbp_images
        options["init_steps"] = FBP_INIT_STEPS
    if "ramp_loss" in names:
        options["data_weighting"] = "ramp"
    if "coarse_to_fine" in names:
        config = getattr(model, "config", None)
        if config is None or not hasattr(config, "coord_scale"):
            raise ValueError(f"variant 'coarse_to_fine' needs a model with config.coord_scale; {method} has none")
        options["callback"] = _coarse_to_fine(model, budget, callback, fit_options.get("callback_every", 10))
        options["callback_every"] = 1
    options.update(fit_options)
    result = fit(model, radon, sinogram, **options)
    result.parameters.update(method=method, preset=getattr(spec, "name", str(preset)),
                             variant=sorted(names) or ["paper"], pixel_size_mm=pixel_size_mm)
    return result


def _coarse_to_fine(model: torch.nn.Module, budget: int, callback: Callable[[FitProgress], None] | None,
                    every: int) -> Callable[[FitProgress], None]:
    """Callback that sets ``model.config.coord_scale`` to a linear ramp from ``COARSE_START * final`` at
    iteration 0 to ``final`` at half the budget, and forwards to ``callback`` at its own cadence."""
    final = float(model.config.coord_scale)
    half = max(1, budget // 2)

    def set_scale(iteration: int) -> None:
        factor = COARSE_START + (1 - COARSE_START) * min(1.0, iteration / half)
        model.config = dataclasses.replace(model.config, coord_scale=final * factor)

    set_scale(0)

    def hook(progress: FitProgress) -> None:
        set_scale(progress.iteration)
        if callback is not None and (progress.image is not None or progress.iteration % every == 0
                                     or progress.iteration == progress.iterations):
            callback(progress)

    return hook


__all__ = ["COARSE_START", "FBP_INIT_LR_FACTOR", "FBP_INIT_STEPS", "RECOMMENDED_VARIANTS", "TV_WEIGHT", "VARIANTS",
           "reconstruct_neural"]
