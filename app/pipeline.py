"""One slice through the whole pipeline: pick the input, simulate the sparse scan, run methods, score.

Shared by ``sparsect reconstruct``, ``sparsect batch`` and the Streamlit page, so all three compute
exactly the same thing for the same settings.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sparsect import data
from sparsect.reconstruct import classical, fit, metrics
from sparsect.reconstruct.result import Reconstruction, StopLike, stop_requested

CLASSICAL_METHODS = ("fbp", "sirt", "cgls", "os_sart", "tv")
NEURAL_METHODS = ("lrnn", "wire", "siren")
METHODS = CLASSICAL_METHODS + NEURAL_METHODS
PRESETS = ("preview", "paper", "quality")
#: The variant name of the published network formulation (no modification of the fit).
PAPER_VARIANT = "paper"


class InputError(ValueError):
    """Settings or input the pipeline cannot use; the message says what and how to fix it."""


@dataclass(frozen=True)
class ScanSettings:
    """How the sparse-view scan is simulated from a slice (angles in radians, photons per ray)."""

    views: int = 60
    arc: float = math.pi
    photons: float | None = None
    electronic_noise: float = 0.0
    det_count: int | None = None
    seed: int = 0
    geometry: str = "parallel"


def _variant_choices() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(every variant name, the recommended ones) from :mod:`reconstruct.neural`, imported only when asked
    for (it is optional: a build without the coordinate networks offers only the plain "paper" fit)."""
    try:
        from sparsect.reconstruct.neural import RECOMMENDED_VARIANTS, VARIANTS
    except ImportError:
        return (PAPER_VARIANT,), (PAPER_VARIANT,)
    return tuple(VARIANTS), tuple(RECOMMENDED_VARIANTS)


def variant_names() -> tuple[str, ...]:
    """Every network fit variant, "paper" (the published formulation) first."""
    return _variant_choices()[0]


def recommended_variants() -> tuple[str, ...]:
    """The variants networks fit with unless told otherwise (``reconstruct.neural.RECOMMENDED_VARIANTS``),
    in the canonical form of :func:`parse_variants`."""
    return _canonical(_variant_choices()[1])


def _canonical(names: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(set(names) - {PAPER_VARIANT})) or (PAPER_VARIANT,)


def parse_variants(values: str | Iterable[str] | None) -> tuple[str, ...]:
    """Network fit variants from repeated and/or comma-separated names, in canonical form.

    The canonical form is the sorted tuple of the names, ``("paper",)`` for the published formulation:
    exactly what :func:`reconstruct.neural.reconstruct_neural` records as ``parameters["variant"]``.
    ``None`` gives :func:`recommended_variants`; an empty list (no option ticked) gives ``("paper",)``.
    Raises :class:`InputError` for unknown names, for "paper" combined with other variants and for
    option text that holds no name at all.
    """
    if values is None:
        return recommended_variants()
    items = [values] if isinstance(values, str) else [str(v) for v in values]
    names = [name.strip().lower() for item in items for name in item.split(",") if name.strip()]
    choices = variant_names()
    if items and not names:
        raise InputError(f"no variant given; choose from {', '.join(choices)}")
    unknown = [name for name in dict.fromkeys(names) if name not in choices]
    if unknown and choices == (PAPER_VARIANT,):
        raise InputError(f"variant {', '.join(map(repr, unknown))} needs the coordinate networks, which are not "
                         "installed in this build; only 'paper' is available")
    if unknown:
        raise InputError(f"unknown variant {', '.join(map(repr, unknown))}; choose from {', '.join(choices)} "
                         "(any combination of the others, or paper alone)")
    if PAPER_VARIANT in names and len(set(names)) > 1:
        raise InputError(f"variant 'paper' is the published formulation and cannot be combined with "
                         f"{', '.join(sorted(set(names) - {PAPER_VARIANT}))}")
    return _canonical(names)


@dataclass(frozen=True)
class MethodSettings:
    """How each method runs: iteration budget (None: the method's default), network preset, seed, device
    and network fit variants (canonical form of :func:`parse_variants`; default the recommended ones;
    ignored by the classical methods)."""

    iterations: int | None = None
    preset: str = "preview"
    seed: int = 0
    device: str = "auto"
    variant: tuple[str, ...] = field(default_factory=recommended_variants)


@dataclass
class MethodOutcome:
    """One method's reconstruction and its scores against the slice it was simulated from."""

    method: str
    reconstruction: Reconstruction
    metrics: dict[str, float] = field(default_factory=dict)

    def record(self, views: int) -> dict[str, Any]:
        """The JSON-able summary (keys: method, views, psnr, ssim, rmse_hu, seconds, iterations,
        parameters, device, stop_reason, variant; stop_reason is "stopped" for a run cut short by a stop
        request, see :class:`reconstruct.result.Reconstruction`; variant is the list of fit variants a
        network was fitted with, e.g. ["ramp_loss"] or ["paper"], and None for the classical methods)."""
        r = self.reconstruction
        variant = r.parameters.get("variant") if self.method in NEURAL_METHODS else None
        return {
            "method": self.method, "views": views,
            "psnr": round(float(self.metrics["psnr"]), 4), "ssim": round(float(self.metrics["ssim"]), 5),
            "rmse_hu": round(float(self.metrics["rmse_hu"]), 3), "seconds": round(float(r.seconds), 3),
            "iterations": int(r.iterations), "parameters": int(r.n_parameters), "device": r.device,
            "stop_reason": r.stop_reason, "variant": list(variant) if variant is not None else None,
        }


def parse_methods(values: Iterable[str]) -> list[str]:
    """Method names from repeated and/or comma-separated options, validated, order kept, no repeats."""
    methods: list[str] = []
    for value in values:
        for name in value.split(","):
            name = name.strip().lower()
            if not name:
                continue
            if name not in METHODS:
                raise InputError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
            if name not in methods:
                methods.append(name)
    if not methods:
        raise InputError(f"no method given; choose from {', '.join(METHODS)}")
    return methods


def load_input(source: str, size: int | None = None, index: int | None = None) -> data.CTSlice:
    """A CT slice from a sample name, a DICOM file or a folder; optionally resampled to size x size.

    Raises :class:`data.DicomError` for unusable files and :class:`InputError` for bad settings.
    """
    if size is not None and size < 8:
        raise InputError(f"--size must be at least 8 pixels, got {size}")
    if not Path(source).exists():
        if source in data.samples():
            return data.load_sample(source, size)
        raise InputError(f"no such file or folder: {source!r}; give a DICOM file, a folder of DICOM files, "
                         f"a .zip archive or a sample name ({', '.join(data.samples())})")
    ct = data.load_slice(source, index=index)
    return data.resample(ct, size) if size else ct


def simulate(ct: data.CTSlice, scan: ScanSettings) -> data.Simulation:
    """The sparse-view sinogram of ``ct`` under ``scan`` (line integrals of mu [1/mm] * mm)."""
    if scan.views < 2:
        raise InputError(f"--views must be at least 2, got {scan.views}")
    if scan.photons is not None and scan.photons <= 0:
        raise InputError(f"--photons must be positive, got {scan.photons}")
    return data.simulate(ct, scan.views, arc=scan.arc, det_count=scan.det_count, photons=scan.photons,
                         electronic_noise=scan.electronic_noise, seed=scan.seed, geometry=scan.geometry)


def resolve_device(device: str) -> str:
    """"auto" -> "cuda" when a GPU is present, else "cpu"; validates explicit CUDA devices."""
    if device == "auto":
        return str(fit.resolve_device("auto"))
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device {device!r} requested but no CUDA GPU is available; use --device cpu")
    if device != "cpu" and not device.startswith("cuda"):
        raise InputError(f"device must be auto, cpu, cuda or cuda:N, got {device!r}")
    return device


def run_method(method: str, simulation: data.Simulation, pixel_size_mm: float, settings: MethodSettings,
               callback: Callable[[Any], None] | None = None, stop: StopLike = None) -> Reconstruction:
    """Reconstruct ``simulation.sinogram`` with ``method``; the ground truth is never passed in.

    ``callback`` receives progress: :class:`reconstruct.fit.FitProgress` from network fits,
    :class:`reconstruct.result.IterationProgress` from the iterative classical methods (FBP reports
    none). ``stop`` (None, a ``threading.Event`` or a callable returning True to stop) interrupts the
    iterative methods between iterations: the result so far comes back with
    ``stop_reason == "stopped"``; FBP ignores it.
    """
    device = resolve_device(settings.device)
    sinogram = simulation.sinogram.to(device)
    if method in CLASSICAL_METHODS:
        kwargs: dict[str, Any] = {}
        if settings.iterations is not None and method != "fbp":
            kwargs["iterations"] = settings.iterations
        # The scan's noise level (noise-free without photons) sets the defaults of the methods that use it (TV).
        return classical.reconstruct(method, sinogram, simulation.geometry, pixel_size_mm=pixel_size_mm, stop=stop,
                                     callback=callback, photons=simulation.photons or math.inf, **kwargs)
    if method in NEURAL_METHODS:
        from sparsect.reconstruct.neural import reconstruct_neural

        if settings.preset not in PRESETS:
            raise InputError(f"unknown preset {settings.preset!r}; choose from {', '.join(PRESETS)}")
        return reconstruct_neural(method, sinogram, simulation.geometry, pixel_size_mm=pixel_size_mm,
                                  preset=settings.preset, iterations=settings.iterations, seed=settings.seed,
                                  device=device, variant=settings.variant, callback=callback, stop=stop)
    raise InputError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")


def score(image_hu: np.ndarray, reference_hu: np.ndarray, window: metrics.WindowLike = metrics.DEFAULT_WINDOW
          ) -> dict[str, float]:
    """PSNR (dB) and SSIM in ``window``, RMSE in HU, inside the reconstruction circle."""
    return {key: float(value) for key, value in metrics.compare(image_hu, reference_hu, window).items()}


def run_methods(ct: data.CTSlice, methods: list[str], scan: ScanSettings, settings: MethodSettings,
                on_progress: Callable[[str, Any], None] | None = None, stop: StopLike = None
                ) -> tuple[data.Simulation, list[MethodOutcome]]:
    """Simulate once, then run every method on the same sinogram and score each against the object the scan
    sees (``simulation.reference_hu``: ``ct`` with anything below -1000 HU as air).

    ``stop`` (see :func:`run_method`), once it fires, ends the running method at its next check with the
    result so far (``stop_reason == "stopped"``, still scored and returned) and skips the methods after it:
    the outcomes are those of the methods started, in order, so fewer than ``methods`` when stopped.
    """
    simulation = simulate(ct, scan)
    pixel_size_mm = float(ct.spacing[1])
    outcomes = []
    for method in methods:
        if stop_requested(stop):
            break
        callback = (lambda progress, m=method: on_progress(m, progress)) if on_progress else None
        reconstruction = run_method(method, simulation, pixel_size_mm, settings, callback=callback, stop=stop)
        outcomes.append(MethodOutcome(method, reconstruction,
                                      score(reconstruction.image_hu, simulation.reference_hu)))
    return simulation, outcomes
