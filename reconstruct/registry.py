"""The one place that knows every reconstruction method and fit variant, as data, and :func:`run`, which
reconstructs a sinogram with any of them.

Each :class:`Method` says what tables call it, how many iterations it runs by default, which of a run's settings
change its result (for cache keys and batch fingerprints), whether it reads the scan's photon count, and the
function :func:`run` calls. Each fit variant is a :class:`reconstruct.variants.FitVariant` record in
:data:`VARIANTS`. Adding a method is one function in its own module and one :class:`Method` line here
(docs/ARCHITECTURE.md shows it).

``iterations`` means the same for every method: the number of iterations of its main loop (epochs for
OS-SART, Adam steps for the networks, whose warm-start steps come on top and are reported separately as
``Reconstruction.warm_start_iterations``). A direct method has none and ignores it. It must be at least 1.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sparsect.reconstruct.checks import check_iterations, check_photons
from sparsect.reconstruct.models.presets import PRESET_NAMES, Preset, get_preset
from sparsect.reconstruct.variants import (
    ENSEMBLE_SIZE,
    FIT_VARIANTS,
    RECOMMENDED,
    RECOMMENDED_VARIANTS,
    VARIANT_NAMES,
    FitVariant,
    canonical_variants,
    describe_fit,
    resolve_variants,
)

if TYPE_CHECKING:  # the methods' modules load torch: imported when a method runs, not to list them
    import torch

    from sparsect import operators
    from sparsect.reconstruct.result import Reconstruction, StopLike


@dataclass(frozen=True)
class MethodCall:
    """Everything :func:`run` hands a method's function (each function reads what it uses).

    sinogram : (n_angles, det_count) or (B, 1, n_angles, det_count) line integrals, on the computing device.
    iterations : the resolved main-loop budget (None for a direct method).
    photons : incident photons per ray (``math.inf`` noise-free, None unknown).
    """

    sinogram: torch.Tensor
    geometry: operators.Geometry
    pixel_size_mm: float
    iterations: int | None
    photons: float | None
    callback: Callable[[Any], None] | None
    stop: StopLike
    preset: str | Preset
    variant: str | Iterable[str] | None
    seed: int
    device: torch.device
    fit_fields: Mapping[str, Any]
    ensemble_size: int


#: The settings every method's result depends on (the device changes the rounding of every sum).
_ALWAYS = ("device",)


@dataclass(frozen=True)
class Method:
    """A reconstruction method.

    name : what users type ("os_sart"); label : what tables show ("OS-SART").
    kind : "direct" (no iterations), "iterative" (a classical solver) or "network" (a coordinate network).
    function : called by :func:`run` with a :class:`MethodCall`.
    default_iterations : the main-loop budget without ``iterations`` (None: direct, or a network's preset's).
    depends_on : the :class:`sparsect.app.settings.MethodSettings` fields that change its result.
    uses_photons : whether the scan's photon count sets its defaults (TV's weight, some network variants).
    cost : how :mod:`reconstruct.estimate` times it (:attr:`cost_model`); None: from ``kind``.
    """

    name: str
    label: str
    kind: str
    function: Callable[[MethodCall], Reconstruction]
    default_iterations: int | None = None
    depends_on: tuple[str, ...] = _ALWAYS
    uses_photons: bool = False
    cost: str | None = None

    @property
    def cost_model(self) -> str:
        """"backprojection" (one filtered back-projection), "projector_pairs" (a projector pair per iteration),
        "total_variation" (those, TV's operator norm and image work) or "network": ``cost``, else from ``kind``."""
        by_kind = {"direct": "backprojection", "iterative": "projector_pairs", "network": "network"}
        return self.cost or by_kind[self.kind]

    @property
    def is_network(self) -> bool:
        return self.kind == "network"

    @property
    def iterative(self) -> bool:
        return self.kind != "direct"


def _fbp(call: MethodCall) -> Reconstruction:
    from sparsect.reconstruct import classical

    return classical.fbp(call.sinogram, call.geometry, pixel_size_mm=call.pixel_size_mm)


def _solver(name: str) -> Callable[[MethodCall], Reconstruction]:
    def solve(call: MethodCall) -> Reconstruction:
        from sparsect.reconstruct import classical

        return getattr(classical, name)(call.sinogram, call.geometry, pixel_size_mm=call.pixel_size_mm,
                                        iterations=call.iterations, stop=call.stop, callback=call.callback)
    return solve


def _tv(call: MethodCall) -> Reconstruction:
    from sparsect.reconstruct import classical

    photons = {} if call.photons is None else {"photons": call.photons}
    return classical.tv(call.sinogram, call.geometry, pixel_size_mm=call.pixel_size_mm, iterations=call.iterations,
                        stop=call.stop, callback=call.callback, **photons)


def _network(name: str) -> Callable[[MethodCall], Reconstruction]:
    def fit_network(call: MethodCall) -> Reconstruction:
        from sparsect.reconstruct.neural import reconstruct_neural

        return reconstruct_neural(name, call.sinogram, call.geometry, pixel_size_mm=call.pixel_size_mm,
                                  preset=call.preset, iterations=call.iterations, seed=call.seed, device=call.device,
                                  variant=call.variant, photons=call.photons, callback=call.callback, stop=call.stop,
                                  ensemble_size=call.ensemble_size, **call.fit_fields)
    return fit_network


_SOLVER_SETTINGS = ("iterations", "device")
_NETWORK_SETTINGS = ("iterations", "preset", "seed", "device", "variant")


def _networks(*names_labels: tuple[str, str]) -> tuple[Method, ...]:
    return tuple(Method(name, label, "network", _network(name), None, _NETWORK_SETTINGS, uses_photons=True)
                 for name, label in names_labels)


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("fbp", "FBP", "direct", _fbp),
    Method("sirt", "SIRT", "iterative", _solver("sirt"), 100, _SOLVER_SETTINGS),
    Method("cgls", "CGLS", "iterative", _solver("cgls"), 20, _SOLVER_SETTINGS),
    Method("os_sart", "OS-SART", "iterative", _solver("os_sart"), 10, _SOLVER_SETTINGS),
    Method("tv", "TV", "iterative", _tv, 300, _SOLVER_SETTINGS, uses_photons=True, cost="total_variation"),
    *_networks(("lrnn", "LRNN"), ("wire", "WIRE"), ("siren", "SIREN")),
)}
CLASSICAL_METHODS: tuple[str, ...] = tuple(name for name, m in METHODS.items() if not m.is_network)
NETWORK_METHODS: tuple[str, ...] = tuple(name for name, m in METHODS.items() if m.is_network)
PRESETS: tuple[str, ...] = PRESET_NAMES
PAPER_VARIANT = "paper"
#: Every fit variant as a record (name, label, help, transform), in the order the help lists them.
VARIANTS: dict[str, FitVariant] = FIT_VARIANTS

#: What ``sparsect reconstruct`` and ``sparsect batch`` run without ``--method``.
DEFAULT_METHODS: tuple[str, ...] = ("fbp",)
#: The methods the page ticks by default.
PAGE_METHODS: tuple[str, ...] = ("fbp", "tv", "wire", "lrnn")
#: The methods a measured scan's scores can be against (run on all measured views), and the automatic one.
REFERENCE_METHODS: tuple[str, ...] = ("fbp", "tv")
DEFAULT_REFERENCE = "fbp"
#: The methods the page's measured-scan mode ticks by default.
MEASURED_PAGE_METHODS: tuple[str, ...] = ("fbp", "sirt")


def method(name: str) -> Method:
    """The :class:`Method` called ``name``; ``ValueError`` naming the choices otherwise."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    return METHODS[name]


def label(name: str) -> str:
    """Display name of method ``name`` ("OS-SART"); the name itself for an unknown one."""
    return METHODS[name].label if name in METHODS else name


def variant_label(name: str) -> str:
    """Display name of fit variant ``name`` ("Ramp-weighted loss"); the name itself for an unknown one."""
    return VARIANTS[name].label if name in VARIANTS else name


def fit_description(name: str, variant: Iterable[str] | None = None, ensemble_size: int = ENSEMBLE_SIZE) -> str:
    """Method ``name``'s fit in words for a table a person reads: the label of a classical method ("TV"), and for
    a network what it was fitted with (e.g. "LRNN, 3 seeds, FBP warm start, ramp-weighted loss, blended with TV by
    frequency band"); ``variant`` as recorded (canonical, "recommended" resolved or not)."""
    spec = method(name)
    if not spec.is_network:
        return spec.label
    return describe_fit(spec.label, resolve_variants(name, variant), ensemble_size)


def iterations_for(name: str, iterations: int | None, preset: str = "preview") -> int | None:
    """The main-loop budget ``name`` runs with: ``iterations``, or its default (a network's from
    ``preset``); None for a direct method."""
    spec = method(name)
    if not spec.iterative:
        return None
    if iterations is not None:
        return int(iterations)
    if spec.is_network:
        return get_preset(name, preset).optim.iterations
    return spec.default_iterations


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
    """Reconstruct ``sinogram`` with method ``name`` (classical or network): always ``METHODS[name].function``.

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
        sets the defaults of the methods that use it (:attr:`Method.uses_photons`).
    callback : progress of the iterative methods (:class:`reconstruct.result.IterationProgress`) and the
        networks (:class:`reconstruct.fit.FitProgress`); a direct method reports none.
    stop : ``threading.Event`` or callable; the iterative methods return the result so far with
        ``stop_reason == "stopped"``.
    fit_fields : further :class:`reconstruct.fit.FitConfig` fields of a network fit (e.g. ``tv_weight``);
        ignored by the classical methods.
    ensemble_size : networks fitted by the "ensemble" variant (default :data:`reconstruct.neural.ENSEMBLE_SIZE`).

    Returns
    -------
    :class:`reconstruct.result.Reconstruction` with ``image_hu`` (H, W) or (B, H, W) in HU.
    """
    import torch

    from sparsect.reconstruct.device import resolve_device

    check(name, iterations, preset, variant)
    check_photons(photons)
    spec = METHODS[name]
    target = resolve_device(device)
    budget = iterations if spec.is_network else iterations_for(name, iterations)  # a network's: from its preset
    call = MethodCall(torch.as_tensor(sinogram).to(target), geometry, pixel_size_mm, budget, photons, callback, stop,
                      preset, variant, seed, target, dict(fit_fields or {}), ensemble_size)
    return spec.function(call)


def __getattr__(name: str) -> Any:
    if name == "data_consistency_hu":  # deprecated re-export (0.1): import it from reconstruct.consistency
        import warnings

        from sparsect.reconstruct.consistency import data_consistency_hu

        warnings.warn("sparsect.reconstruct.registry.data_consistency_hu is deprecated; use "
                      "sparsect.reconstruct.consistency.data_consistency_hu", DeprecationWarning, stacklevel=2)
        return data_consistency_hu
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["CLASSICAL_METHODS", "DEFAULT_METHODS", "DEFAULT_REFERENCE", "MEASURED_PAGE_METHODS", "METHODS", "Method",
           "MethodCall", "NETWORK_METHODS", "PAGE_METHODS", "PAPER_VARIANT", "PRESETS", "RECOMMENDED",
           "RECOMMENDED_VARIANTS", "REFERENCE_METHODS", "VARIANTS", "VARIANT_NAMES", "canonical_variants", "check",
           "fit_description", "iterations_for", "label", "method", "resolve_variants", "run",
           "variant_label"]
