"""One slice through the whole pipeline: pick the input, simulate the sparse scan, run methods, score.

Shared by ``sparsect reconstruct``, ``sparsect batch`` and the Streamlit page, so all three compute and
score exactly the same thing for the same settings (:func:`score` is the one scoring function).
Settings come validated from :mod:`sparsect.app.settings`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sparsect import data
from sparsect.app import limits
from sparsect.app.settings import InputError, MethodSettings, ScanSettings
from sparsect.reconstruct import metrics, registry
from sparsect.reconstruct.result import Reconstruction, StopLike, stop_requested

#: The smallest image side that can be scored (SSIM's 11x11 window inside the reconstruction circle).
MIN_IMAGE_SIZE = 16


#: The scores a record carries (see :func:`sparsect.reconstruct.metrics.compare`) and their rounding.
SCORE_DIGITS = {"psnr": 4, "ssim": 5, "rmse_hu": 3, "psnr_range": 4, "ssim_range": 5, "rmse_soft_hu": 3}


def rounded_scores(scores: dict[str, float]) -> dict[str, float | None]:
    """The :data:`SCORE_DIGITS` scores of :func:`score`'s output, rounded; None where not a finite number."""
    return {key: round(float(scores[key]), digits) if math.isfinite(scores[key]) else None
            for key, digits in SCORE_DIGITS.items()}


@dataclass
class MethodOutcome:
    """One method's reconstruction and its scores against the object the scan saw."""

    method: str
    reconstruction: Reconstruction
    metrics: dict[str, float] = field(default_factory=dict)

    def record(self, views: int, simulation: data.Simulation | None = None) -> dict[str, Any]:
        """The strict-JSON summary: method, views, psnr, ssim, rmse_hu, psnr_range, ssim_range, rmse_soft_hu,
        seconds, iterations, warm_start_iterations, parameters, device, stop_reason, variant, and with
        ``simulation`` also simulation (its label, e.g. "honest" or "same-grid (inverse crime)"),
        simulation_grid ([H, W] of the image projected) and sub_rays (rays averaged per detector bin).

        stop_reason is "stopped" for a run cut short by a stop request, "diverged" for a network fit that ran out
        of divergence roll-backs; variant is the list of fit variants
        a network was fitted with (e.g. ["fbp_init", "ramp_loss"] or ["paper"]), None for classical methods.
        A score that is not a finite number is null, and ``note`` says why (a PSNR is infinite when the image
        equals the reference; rmse_soft_hu has no value when the reference has no soft tissue), and
        ``fit_note`` what :func:`fit_notes` says, when it says anything.
        """
        r = self.reconstruction
        variant = r.parameters.get("variant") if self.method in registry.NETWORK_METHODS else None
        record = {
            "method": self.method, "views": views, **rounded_scores(self.metrics),
            "seconds": round(float(r.seconds), 3),
            "iterations": int(r.iterations), "warm_start_iterations": int(r.warm_start_iterations),
            "parameters": int(r.n_parameters), "device": r.device, "stop_reason": r.stop_reason,
            "variant": list(variant) if variant is not None else None,
            **(simulation.record() if simulation is not None else {}),
        }
        notes = []
        missing = [key for key in SCORE_DIGITS if key != "rmse_soft_hu" and record[key] is None]
        if missing:
            why = "the image equals the reference" if self.metrics["psnr"] == math.inf else "not a finite number"
            notes.append(f"{', '.join(missing)} null: {why}")
        if record["rmse_soft_hu"] is None:
            notes.append("rmse_soft_hu null: no reference pixel in [-200, 200] HU")
        if notes:
            record["note"] = "; ".join(notes)
        health = fit_notes(r)
        if health:
            record["fit_note"] = "; ".join(health)
        return record


def fit_notes(reconstruction: Reconstruction, index: int = 0) -> list[str]:
    """What a reader must know about how the network fit behind image ``index`` (along the batch) of
    ``reconstruction`` went: it diverged (the image is its last good state), or ensemble members were left out
    because theirs did. Empty for a fit that went well and for the classical methods."""
    notes = []
    if index in reconstruction.diverged:
        notes.append("diverged: the image is the fit's last good state before it blew up, not a converged fit")
    seeds = [str(left["seed"]) for left in reconstruction.parameters.get("ensemble_left_out", ())
             if left["slice"] == index]
    if seeds:
        notes.append(f"ensemble member(s) of seed {', '.join(seeds)} diverged: left out of the mean and the "
                     "uncertainty map")
    return notes


def check_slice(ct: data.CTSlice) -> data.CTSlice:
    """``ct`` if it can be reconstructed and scored: at least ``MIN_IMAGE_SIZE`` pixels on each side and not
    constant (e.g. RescaleSlope 0); else :class:`InputError`."""
    height, width = ct.hu.shape
    if min(height, width) < MIN_IMAGE_SIZE:
        raise InputError(f"the image is {height}x{width} pixels; at least {MIN_IMAGE_SIZE}x{MIN_IMAGE_SIZE} are "
                         "needed to reconstruct and score it")
    if not np.isfinite(ct.hu).all():
        raise InputError("the image holds values that are not finite numbers")
    if float(ct.hu.max()) == float(ct.hu.min()):
        raise InputError(f"the image is constant ({float(ct.hu.min()):g} HU everywhere): nothing to reconstruct")
    return ct


def source_slice(ct: data.CTSlice, size: int | None) -> data.CTSlice:
    """``ct`` as the scan's source: unchanged when square (the honest simulation uses its own pixels and
    ``ScanSettings.size`` sets the working grid), else resampled to a square of ``size`` (None: its larger
    side), the working grid being square. :class:`InputError` before resampling when that alone would not
    fit in the available memory (:func:`sparsect.app.limits.check_resample`)."""
    height, width = ct.hu.shape
    if height == width:
        return ct
    side = int(size or max(height, width))
    limits.check_resample((height, width), side)
    return data.resample(ct, side)


def load_input(source: str, size: int | None = None, index: int | None = None,
               series_uid: str | None = None) -> data.CTSlice:
    """A CT slice from a sample name, a DICOM file or a folder, as :func:`source_slice` makes it for a
    ``size`` x ``size`` working grid (checked here; the grid itself is ``ScanSettings.size``).
    ``series_uid`` picks one series where the path holds several.

    Raises :class:`data.DicomError` for unusable files and :class:`InputError` for bad settings.
    """
    if size is not None and size < MIN_IMAGE_SIZE:
        raise InputError(f"--size must be at least {MIN_IMAGE_SIZE} pixels, got {size}")
    if not Path(source).exists():
        if source in data.samples():
            if series_uid is not None:
                raise InputError(f"--series applies to DICOM input; the sample {source!r} is a single slice")
            return check_slice(source_slice(data.load_sample(source), size))
        raise InputError(f"no such file or folder: {source!r}; give a DICOM file, a folder of DICOM files, "
                         f"a .zip archive or a sample name ({', '.join(data.samples())})")
    series = data.load(source, series_uid=series_uid)
    if index is not None and not -len(series) <= index < len(series):
        raise InputError(f"--slice {index} is out of range: the series has {len(series)} slice(s), 0-{len(series) - 1}")
    return check_slice(source_slice(series.slice(index), size))


def simulate(ct: data.CTSlice, scan: ScanSettings) -> data.Simulation:
    """The sparse-view sinogram of ``ct`` under ``scan`` (line integrals of mu [1/mm] * mm) on the working
    grid ``scan.size`` (None: the slice's own)."""
    return data.simulate(ct, scan.views, arc=scan.arc, det_count=scan.det_count, photons=scan.photons,
                         electronic_noise=scan.electronic_noise, seed=scan.seed, geometry=scan.geometry,
                         size=scan.size, simulation=scan.simulation, source_distance_mm=scan.source_distance_mm,
                         detector_distance_mm=scan.detector_distance_mm)


def run_method(method: str, simulation: data.Simulation, settings: MethodSettings,
               callback: Callable[[Any], None] | None = None, stop: StopLike = None) -> Reconstruction:
    """Reconstruct ``simulation.sinogram`` with ``method`` through :func:`sparsect.reconstruct.run`; the
    ground truth is never passed in. The scan's noise level (noise-free without photons) sets the
    defaults of the methods that use it (TV)."""
    return registry.run(method, simulation.sinogram, simulation.geometry, pixel_size_mm=simulation.pixel_size_mm,
                        iterations=settings.iterations, preset=settings.preset, variant=settings.variant,
                        seed=settings.seed, device=settings.device, photons=simulation.photons or math.inf,
                        callback=callback, stop=stop)


def score(image_hu: np.ndarray, simulation: data.Simulation,
          window: metrics.WindowLike = metrics.DEFAULT_WINDOW) -> dict[str, float]:
    """The scores of a reconstruction of ``simulation`` (:func:`sparsect.reconstruct.metrics.compare`: PSNR (dB)
    and SSIM in ``window``, RMSE in HU, psnr_range, ssim_range, rmse_soft_hu) inside the reconstruction circle,
    against ``simulation.reference_hu`` (the object the scan saw)."""
    return {key: float(value) for key, value in metrics.compare(image_hu, simulation.reference_hu, window).items()}


def run_methods(ct: data.CTSlice, methods: tuple[str, ...], scan: ScanSettings, settings: MethodSettings,
                on_progress: Callable[[str, Any], None] | None = None, stop: StopLike = None
                ) -> tuple[data.Simulation, list[MethodOutcome]]:
    """Simulate once, then run every method on the same sinogram and :func:`score` each.

    ``stop`` (see :func:`run_method`), once it fires, ends the running method at its next check with the
    result so far (``stop_reason == "stopped"``, still scored and returned) and skips the methods after it:
    the outcomes are those of the methods started, in order, so fewer than ``methods`` when stopped.
    """
    simulation = simulate(ct, scan)
    outcomes = []
    for method in methods:
        if stop_requested(stop):
            break
        callback = (lambda progress, m=method: on_progress(m, progress)) if on_progress else None
        reconstruction = run_method(method, simulation, settings, callback=callback, stop=stop)
        outcomes.append(MethodOutcome(method, reconstruction, score(reconstruction.image_hu, simulation)))
    return simulation, outcomes


__all__ = ["MIN_IMAGE_SIZE", "SCORE_DIGITS", "InputError", "MethodOutcome", "check_slice", "fit_notes", "load_input",
           "rounded_scores", "run_method", "run_methods", "score", "simulate", "source_slice"]
