"""The one place that knows every reconstruction method: names, labels, iteration budgets, presets and
fit variants, and :func:`run`, which reconstructs a sinogram with any of them.

``iterations`` means the same for every method: the number of iterations of its main loop (epochs for
OS-SART, Adam steps for the networks, whose warm-start steps come on top and are reported separately as
``Reconstruction.warm_start_iterations``). FBP has none and ignores it. It must be at least 1.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from sparsect import operators
from sparsect.reconstruct import classical
from sparsect.reconstruct.checks import check_iterations, check_photons
from sparsect.reconstruct.consistency import data_consistency_hu
from sparsect.reconstruct.device import resolve_device
from sparsect.reconstruct.models import PRESET_NAMES, Preset, get_preset
from sparsect.reconstruct.neural import (
    ENSEMBLE_SIZE,
    RECOMMENDED,
    RECOMMENDED_VARIANTS,
    VARIANT_NAMES,
    canonical_variants,
    reconstruct_neural,
    resolve_variants,
)
from sparsect.reconstruct.result import Reconstruction, StopLike


@dataclass(frozen=True)
class Method:
    """A reconstruction method: ``name`` (what users type), ``label`` (what tables show), ``kind``
    ("classical" or "network") and the function that runs it."""

    name: str
    label: str
    kind: str
    function: Callable[..., Reconstruction]

    @property
    def is_network(self) -> bool:
        return self.kind == "network"

    @property
    def iterative(self) -> bool:
        return self.name != "fbp"


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("fbp", "FBP", "classical", classical.fbp),
    Method("sirt", "SIRT", "classical", classical.sirt),
    Method("cgls", "CGLS", "classical", classical.cgls),
    Method("os_sart", "OS-SART", "classical", classical.os_sart),
    Method("tv", "TV", "classical", classical.tv),
    Method("lrnn", "LRNN", "network", reconstruct_neural),
    Method("wire", "WIRE", "network", reconstruct_neural),
    Method("siren", "SIREN", "network", reconstruct_neural),
)}
CLASSICAL_METHODS: tuple[str, ...] = tuple(name for name, m in METHODS.items() if not m.is_network)
NETWORK_METHODS: tuple[str, ...] = tuple(name for name, m in METHODS.items() if m.is_network)
PRESETS: tuple[str, ...] = PRESET_NAMES
PAPER_VARIANT = "paper"


def method(name: str) -> Method:
    """The :class:`Method` called ``name``; ``ValueError`` naming the choices otherwise."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    return METHODS[name]


def label(name: str) -> str:
    """Display name of method ``name`` ("OS-SART"); the name itself for an unknown one."""
    return METHODS[name].label if name in METHODS else name


def iterations_for(name: str, iterations: int | None, preset: str = "preview") -> int | None:
    """The main-loop budget ``name`` runs with: ``iterations``, or its default (a network's from
    ``preset``); None for FBP."""
    spec = method(name)
    if not spec.iterative:
        return None
    if iterations is not None:
        return int(iterations)
    if spec.is_network:
        return get_preset(name, preset).optim.iterations
    return int(inspect.signature(spec.function).parameters["iterations"].default)


def check(name: str, iterations: int | None = None, preset: str | Preset = "preview",
          variant: str | Iterable[str] | None = None) -> None:
    """Raise ``ValueError`` unless :func:`run` accepts these settings (checked before any work)."""
    method(name)
    if iterations is not None:
        check_iterations(iterations)
    if not isinstance(preset, Preset) and preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    canonical_variants(variant)


def run(name: str, sinogram: torch.Tensor, geometry: operators.Geometry, *, pixel_size_mm: float = 1.0,
        iterations: int | None = None, preset: str | Preset = "preview", variant: str | Iterable[str] | None = None,
        seed: int = 0, device: str | torch.device = "auto", photons: float | None = None,
        callback: Callable[[Any], None] | None = None, stop: StopLike = None,
        fit_fields: Mapping[str, Any] | None = None, ensemble_size: int = ENSEMBLE_SIZE) -> Reconstruction:
    """Reconstruct ``sinogram`` with method ``name`` (classical or network).

    Parameters
    ----------
    sinogram : (n_angles, det_count) or (B, 1, n_angles, det_count) line integrals of mu [1/mm] * mm.
    geometry : the scan's geometry; its ``image_size`` is the output grid.
    pixel_size_mm : pixel size in mm.
    iterations : main-loop budget (see the module docstring); None: the method's default.
    preset, variant, seed : the networks' preset (a name or a :class:`Preset`, e.g. with a changed network), fit
        variants (None: the published formulation; the app passes "recommended", each network's own
        :data:`RECOMMENDED_VARIANTS`) and seed; ignored by the classical methods.
    device : "auto", "cpu", "cuda" or "cuda:N"; the sinogram is moved there.
    photons : the scan's noise level (incident photons per ray, ``math.inf`` noise-free, None unknown);
        sets the defaults of the methods that use it (TV's weight; the networks' "discrepancy", "tv_init" and
        "tv_blend" variants).
    callback : progress of the iterative methods (:class:`reconstruct.result.IterationProgress`) and the
        networks (:class:`reconstruct.fit.FitProgress`); FBP reports none.
    stop : ``threading.Event`` or callable; the iterative methods return the result so far with
        ``stop_reason == "stopped"``.
    fit_fields : further :class:`reconstruct.fit.FitConfig` fields of a network fit (e.g. ``tv_weight``);
        ignored by the classical methods.
    ensemble_size : networks fitted by the "ensemble" variant (default :data:`reconstruct.neural.ENSEMBLE_SIZE`).

    Returns
    -------
    :class:`reconstruct.result.Reconstruction` with ``image_hu`` (H, W) or (B, H, W) in HU.
    """
    check(name, iterations, preset, variant)
    check_photons(photons)
    spec = METHODS[name]
    target = resolve_device(device)
    sinogram = torch.as_tensor(sinogram).to(target)
    if spec.is_network:
        return reconstruct_neural(name, sinogram, geometry, pixel_size_mm=pixel_size_mm, preset=preset,
                                  iterations=iterations, seed=seed, device=target, variant=variant,
                                  photons=photons, callback=callback, stop=stop, ensemble_size=ensemble_size,
                                  **(fit_fields or {}))
    if not spec.iterative:
        return classical.fbp(sinogram, geometry, pixel_size_mm=pixel_size_mm)
    options: dict[str, Any] = {"iterations": iterations_for(name, iterations), "stop": stop, "callback": callback}
    if name == "tv" and photons is not None:
        options["photons"] = photons
    return spec.function(sinogram, geometry, pixel_size_mm=pixel_size_mm, **options)


__all__ = ["CLASSICAL_METHODS", "METHODS", "Method", "NETWORK_METHODS", "PAPER_VARIANT", "PRESETS",
           "RECOMMENDED", "RECOMMENDED_VARIANTS", "VARIANT_NAMES", "canonical_variants", "check", "data_consistency_hu",
           "iterations_for", "label", "method", "resolve_variants", "run"]
