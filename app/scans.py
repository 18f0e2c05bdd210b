"""The scan every method reconstructs: one :class:`Scan` whether it was simulated from a CT slice or measured.

A :class:`Scan` holds the sinogram the methods get, its geometry and pixel size, the photon count when known, and
what scores compare against: the object the scan saw (a simulated scan) or a method run on every measured view (a
measured scan, :mod:`sparsect.app.measured_scan`). The run layer (:mod:`sparsect.app.run`) takes nothing else.
This module also loads the slice a simulated scan is made from (:func:`load_input`), checking it at the edge.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sparsect import data, operators
from sparsect.app import limits
from sparsect.app.settings import InputError, ScanSettings, did_you_mean

#: The smallest image side that can be scored (SSIM's 11x11 window inside the reconstruction circle).
MIN_IMAGE_SIZE = 16
#: The largest working grid relative to the slice's own: finer grids only interpolate what the slice holds.
MAX_UPSCALE = 4


@dataclass(frozen=True)
class Scan:
    """A sparse-view scan ready to reconstruct.

    Attributes
    ----------
    sinogram : float32 (n_views, det_count) line integrals (mu [1/mm] * mm) the methods get.
    geometry : the ``operators`` geometry of ``sinogram``; its ``image_size`` is the working grid.
    pixel_size_mm : working-grid pixel size in mm.
    photons : incident photons per ray: ``math.inf`` for a noise-free simulation, None when unknown (measured).
    reference_hu : float32 (H, W) HU image the scores compare against when it is known (a simulated scan: the object
        the scan saw); None otherwise.
    reference_method : a measured scan's reference: the method run on every measured view to score against (None:
        unscored).
    check_sinogram, check_geometry : the data the consistency maps and ``data_rmse`` check an image against: every
        measured view of a measured scan, the sinogram itself for a simulated one.
    provenance : JSON-safe facts about how the scan was made (beam, arc, photons, simulation...), copied into
        every record (:data:`sparsect.app.records.SCAN_FIELDS`).
    simulation : the :class:`data.Simulation` behind a simulated scan; measured : the
        :class:`sparsect.app.measured_scan.MeasuredInput` behind a measured one.
    """

    sinogram: torch.Tensor
    geometry: operators.Geometry
    pixel_size_mm: float
    photons: float | None
    reference_hu: np.ndarray | None
    reference_method: str | None
    check_sinogram: torch.Tensor
    check_geometry: operators.Geometry
    provenance: Mapping[str, Any] = field(default_factory=dict)
    simulation: data.Simulation | None = None
    measured: Any = None

    @property
    def views(self) -> int:
        """The number of views the methods get."""
        return int(self.sinogram.shape[-2])

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of the working grid."""
        return tuple(self.geometry.image_size)


def source(ct: data.CTSlice | None, input: str | None, window: str | None = None,
           anonymize: bool = False) -> dict[str, Any]:
    """Where a scan came from, for its records (:data:`sparsect.app.records.SOURCE_FIELDS`): ``input`` as the user
    named it, the slice's SeriesInstanceUID and index, the display ``window``; with ``anonymize`` neither the input
    nor the series (they may name the patient)."""
    dataset = ct.dataset if ct is not None else None
    series = str(dataset.get("SeriesInstanceUID", "")) or None if dataset is not None else None
    index = ct.meta.get("slice_index") if ct is not None else None
    return {"input": None if anonymize else input, "series": None if anonymize else series,
            "slice": None if index is None else int(index), "window": window}


def simulated_scan(simulation: data.Simulation, settings: ScanSettings,
                   origin: Mapping[str, Any] | None = None) -> Scan:
    """The :class:`Scan` of a simulated sparse-view scan (``settings`` made it): scored against the object the scan
    saw; a noise-free scan's photon count is ``math.inf``. ``origin``: where it came from (:func:`source`)."""
    height, width = simulation.simulation_grid
    provenance = {**(origin or {}), "beam": settings.beam, "arc_deg": round(math.degrees(settings.arc), 6),
                  "det_count": int(simulation.sinogram.shape[-1]), "size": int(simulation.reference_hu.shape[-1]),
                  "photons": settings.photons, "noise_seed": settings.seed, "simulation": simulation.label,
                  "simulation_grid": [int(height), int(width)], "sub_rays": int(simulation.sub_rays),
                  "measured_views": None}
    return Scan(simulation.sinogram, simulation.geometry, float(simulation.pixel_size_mm),
                simulation.photons or math.inf, simulation.reference_hu, None, simulation.sinogram,
                simulation.geometry, provenance, simulation=simulation)


def simulate(ct: data.CTSlice, settings: ScanSettings, origin: Mapping[str, Any] | None = None,
             callback: operators.PhaseCallback = None, stop: operators.StopLike = None) -> Scan:
    """The sparse-view scan of ``ct`` under ``settings`` on the working grid ``settings.size`` (None: the slice's
    own), as a :class:`Scan`; ``origin``: where it came from (:func:`source`). :class:`InputError` for a grid more
    than :data:`MAX_UPSCALE` times the slice's. ``callback`` receives the simulation's
    :class:`sparsect.operators.PhaseProgress`; once ``stop`` fires it raises :class:`data.SimulationStopped`."""
    check_size(ct.hu.shape, settings.size)
    simulation = data.simulate(ct, settings.views, arc=settings.arc, det_count=settings.det_count,
                               photons=settings.photons, electronic_noise=settings.electronic_noise, seed=settings.seed,
                               beam=settings.beam, size=settings.size, simulation=settings.simulation,
                               source_distance_mm=settings.source_distance_mm,
                               detector_distance_mm=settings.detector_distance_mm, callback=callback, stop=stop)
    return simulated_scan(simulation, settings, origin)


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


def check_size(shape: tuple[int, int], size: int | None, option: str = "--size") -> None:
    """:class:`InputError` before any work when a ``size`` x ``size`` working grid would upscale an (H, W) slice more
    than :data:`MAX_UPSCALE` times (a finer grid only interpolates, at a cost that grows with its square)."""
    side = max(shape)
    if size is not None and size > MAX_UPSCALE * side:
        raise InputError(f"{option} {size} would upscale the {shape[0]}x{shape[1]} slice {size / side:.3g}x; at most "
                         f"{MAX_UPSCALE}x ({option} {MAX_UPSCALE * side}) is allowed, since a finer grid only "
                         "interpolates what the slice holds")


def prepare_slice(ct: data.CTSlice, size: int | None) -> data.CTSlice:
    """``ct`` as the source of a scan on a ``size`` working grid (:func:`source_slice`), checked
    (:func:`check_size`, :func:`check_slice`)."""
    check_size(ct.hu.shape, size)
    return check_slice(source_slice(ct, size))


def _check_index(index: int | None, count: int) -> None:
    if index is not None and not -count <= index < count:
        raise InputError(f"--slice {index} is out of range: the input has {count} slice(s), 0-{count - 1}")


def load_input(source: str, size: int | None = None, index: int | None = None,
               series_uid: str | None = None) -> data.CTSlice:
    """A CT slice from a sample name, a DICOM file or a folder, as :func:`prepare_slice` makes it for a
    ``size`` x ``size`` working grid. ``series_uid`` picks one series where the path holds several; ``index``
    one slice (None: the middle one); a bundled sample is one slice, so only 0 and -1 exist.

    Raises :class:`data.DicomError` for unusable files and :class:`InputError` for bad settings.
    """
    if size is not None and size < MIN_IMAGE_SIZE:
        raise InputError(f"--size must be at least {MIN_IMAGE_SIZE} pixels, got {size}")
    if Path(source).exists():
        series = data.load(source, series_uid=series_uid)
        _check_index(index, len(series))
        return prepare_slice(series.slice(index), size)
    if source not in data.samples():
        raise InputError(f"no such file or folder: {source!r}{did_you_mean(source, data.samples())}; give a DICOM "
                         f"file, a folder of DICOM files, a .zip archive or a sample name "
                         f"({', '.join(data.samples())})")
    if series_uid is not None:
        raise InputError(f"--series applies to DICOM input; the sample {source!r} is a single slice")
    _check_index(index, 1)
    return prepare_slice(data.load_sample(source), size)


__all__ = ["MAX_UPSCALE", "MIN_IMAGE_SIZE", "Scan", "check_size", "check_slice", "load_input", "prepare_slice",
           "simulate", "simulated_scan", "source", "source_slice"]
