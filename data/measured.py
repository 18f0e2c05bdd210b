"""Measured 2D CT scans: a sinogram of line integrals with the geometry it was measured in.

:func:`load_scan` reads a file (see :mod:`data.measured_formats` for the formats) and a JSON geometry file
(:mod:`data.measured_geometry`) into a :class:`MeasuredScan`. Raw detector intensities are flat/dark
corrected and log transformed on the way in (:func:`flat_dark_correct`).

Conventions are those of :mod:`operators.geometry` (ASTRA's ``parallel`` and ``fanflat``): angles in
radians, detector bin ``k`` of ``det_count`` along ``e_u = (cos theta, sin theta)``. ``center_offset`` is
the number of detector bins by which the projection of the rotation axis (for a fan beam: where the ray
from the source through the rotation centre meets the detector) lies above the detector's middle
``(det_count - 1) / 2``. The operators' geometries have the axis at the middle, so :meth:`MeasuredScan.centred`
resamples the rows first. Problems raise :class:`data.ScanError` (a ``ValueError``) with a one-line message.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from .errors import ScanError, ScanNotFoundError
from .measured_formats import read_scan_bytes, read_scan_file, read_tiff_bytes
from .measured_geometry import BEAMS, merge_geometry, read_geometry

#: Transmissions below this (after flat/dark correction) are raised to it before the log, so dead or
#: saturated bins give a large finite line integral (-log 1e-6 = 13.8) instead of infinity.
MIN_TRANSMISSION = 1e-6


def _positive(name: str, value: Any) -> float:
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ScanError(f"{name} must be a positive finite number, got {value!r}")
    return value


@dataclass(frozen=True, eq=False)
class MeasuredScan:
    """One measured 2D scan.

    Attributes
    ----------
    sinogram : float32 (n_views, det_count) line integrals (attenuation [1/mm] times path length [mm]).
    angles : float64 (n_views,) view angles in radians, one per sinogram row.
    beam : "parallel" or "fan" (flat detector).
    detector_pixel_mm : width of one detector bin at the detector, in mm.
    center_offset : detector bins from the detector's middle to the projected rotation axis (see module).
    source_distance_mm, detector_distance_mm : source to rotation centre and rotation centre to detector
        (fan beam only; None for parallel beams).
    source : the file the scan was read from.
    format : the reader that read it ("npy", "npz", "hdf5", "tiff", "htc2022").
    notes : what was done to the data on the way (flat/dark correction, row chosen, subsampling, ...).
    """

    sinogram: np.ndarray
    angles: np.ndarray
    beam: str
    detector_pixel_mm: float
    center_offset: float = 0.0
    source_distance_mm: float | None = None
    detector_distance_mm: float | None = None
    source: str = ""
    format: str = ""
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        sinogram = np.asarray(self.sinogram, dtype=np.float32)
        angles = np.asarray(self.angles, dtype=np.float64).reshape(-1)
        if sinogram.ndim != 2 or min(sinogram.shape) < 1:
            raise ScanError(f"the sinogram must be 2D (views, detector bins), got shape {sinogram.shape}")
        bad = np.flatnonzero(~np.isfinite(sinogram))
        if bad.size:
            view, column = np.unravel_index(bad[0], sinogram.shape)
            raise ScanError(f"the sinogram has {bad.size} NaN or infinite values (first at view {view}, "
                            f"bin {column})")
        if angles.size != sinogram.shape[0]:
            raise ScanError(f"{angles.size} angles for {sinogram.shape[0]} sinogram rows (views): "
                            "there must be one angle per view")
        if not np.isfinite(angles).all():
            raise ScanError("the angles contain NaN or infinite values")
        if self.beam not in BEAMS:
            raise ScanError(f"beam must be 'parallel' or 'fan', got {self.beam!r}")
        detector_pixel = _positive("detector_pixel_mm", self.detector_pixel_mm)
        offset = float(self.center_offset)
        if not math.isfinite(offset) or abs(offset) >= sinogram.shape[1] / 2:
            raise ScanError(f"center_offset {self.center_offset!r} bins must be finite and within the detector "
                            f"(|offset| < {sinogram.shape[1] / 2})")
        distances = (self.source_distance_mm, self.detector_distance_mm)
        if self.beam == "fan":
            if None in distances:
                raise ScanError("a fan-beam scan needs source_distance_mm (source to rotation centre) and "
                                "detector_distance_mm (rotation centre to detector)")
            distances = (_positive("source_distance_mm", distances[0]),
                         _positive("detector_distance_mm", distances[1]))
        elif distances != (None, None):
            raise ScanError("source_distance_mm and detector_distance_mm are fan-beam settings, but beam is "
                            "'parallel'")
        for name, value in (("sinogram", sinogram), ("angles", angles), ("detector_pixel_mm", detector_pixel),
                            ("center_offset", offset), ("source_distance_mm", distances[0]),
                            ("detector_distance_mm", distances[1]), ("notes", tuple(self.notes))):
            object.__setattr__(self, name, value)

    @property
    def n_views(self) -> int:
        return int(self.sinogram.shape[0])

    @property
    def det_count(self) -> int:
        return int(self.sinogram.shape[1])

    @property
    def magnification(self) -> float:
        """(source_distance + detector_distance) / source_distance; 1 for parallel beams."""
        if self.beam == "parallel":
            return 1.0
        return (self.source_distance_mm + self.detector_distance_mm) / self.source_distance_mm

    @property
    def isocentre_pixel_mm(self) -> float:
        """Detector bin width scaled to the rotation centre (mm): the natural reconstruction pixel size."""
        return self.detector_pixel_mm / self.magnification

    def subsample(self, n_views: int) -> MeasuredScan:
        """Keep ``n_views`` views evenly spaced in acquisition order (indices ``round(i * n / n_views)``)."""
        if int(n_views) != n_views or not 1 <= n_views <= self.n_views:
            raise ScanError(f"cannot keep {n_views!r} views of a scan with {self.n_views}: choose 1 to "
                            f"{self.n_views}")
        keep = np.round(np.arange(int(n_views)) * (self.n_views / int(n_views))).astype(np.int64)
        return dataclasses.replace(self, sinogram=self.sinogram[keep], angles=self.angles[keep],
                                   notes=(*self.notes, f"kept {int(n_views)} of {self.n_views} views"))

    def with_center_offset(self, offset: float) -> MeasuredScan:
        """The same scan with ``center_offset`` set (e.g. to :func:`data.estimate_center_offset`)."""
        return dataclasses.replace(self, center_offset=offset,
                                   notes=(*self.notes, f"centre offset set to {float(offset):.3f} bins"))

    def centred(self) -> MeasuredScan:
        """The scan resampled along each row (cubic spline) so the rotation axis projects onto the detector's
        middle. The detector grows by ``2 * ceil(|offset|)`` bins so no measured bin is lost; outside the
        measured detector the line integrals are taken as 0 (no attenuation). A centred scan comes back as it
        is."""
        offset = self.center_offset
        if offset == 0.0:
            return self
        margin = math.ceil(abs(offset))
        width = self.det_count + 2 * margin
        padded = np.zeros((self.n_views, width))
        padded[:, margin:margin + self.det_count] = self.sinogram
        # New bin j is old bin j - margin + offset; linear interpolation would blur a half-bin shift visibly.
        rows = ndimage.shift(padded, (0.0, -offset), order=3, mode="grid-constant", cval=0.0)
        return dataclasses.replace(self, sinogram=rows, center_offset=0.0,
                                   notes=(*self.notes, f"centred: shifted {offset:.3f} bins, detector widened "
                                                       f"{self.det_count} -> {width} bins"))

    def geometry(self, image_size: int | tuple[int, int] | None = None, pixel_size_mm: float | None = None) -> Any:
        """The :class:`operators.ParallelBeam` / :class:`operators.FanBeam` of this (centred) scan.

        Parameters
        ----------
        image_size : (H, W) of the reconstruction in pixels; default (det_count, det_count), which covers
            the detector's field of view at the default pixel size.
        pixel_size_mm : reconstruction pixel size in mm; default :attr:`isocentre_pixel_mm`. Lengths are
            converted to pixel units of this size, as the operators expect; pass the same value as
            ``pixel_size_mm`` to the reconstruction methods.
        """
        from sparsect import operators  # physics package; imported lazily so reading files does not need it

        if self.center_offset != 0.0:
            raise ScanError(f"the rotation axis is {self.center_offset:.3f} bins off the detector's middle: "
                            "use scan.centred() first")
        pixel = self.isocentre_pixel_mm if pixel_size_mm is None else _positive("pixel_size_mm", pixel_size_mm)
        size = self.det_count if image_size is None else image_size
        spacing = self.detector_pixel_mm / pixel
        try:
            if self.beam == "parallel":
                return operators.ParallelBeam(self.angles, self.det_count, spacing, size)
            return operators.FanBeam(self.angles, self.det_count, self.source_distance_mm / pixel,
                                     self.detector_distance_mm / pixel, spacing, size)
        except ValueError as exc:
            raise ScanError(f"the scan's geometry does not fit the reconstruction grid: {exc}") from exc

    def provenance(self) -> dict[str, Any]:
        """JSON-able description: source file, format, geometry and the processing notes."""
        return {"source": self.source, "format": self.format, "beam": self.beam, "views": self.n_views,
                "det_count": self.det_count, "detector_pixel_mm": self.detector_pixel_mm,
                "center_offset": self.center_offset, "source_distance_mm": self.source_distance_mm,
                "detector_distance_mm": self.detector_distance_mm,
                "angles_deg": [round(float(a), 6) for a in np.degrees(self.angles)], "notes": list(self.notes)}


def _field_mean(field: np.ndarray, det_count: int, name: str) -> np.ndarray:
    field = np.asarray(field, dtype=np.float64)
    field = field.reshape(-1, field.shape[-1]) if field.ndim else field.reshape(1, 1)
    if field.shape[-1] != det_count:
        raise ScanError(f"the {name} field has {field.shape[-1]} detector bins, the projections {det_count}")
    if not np.isfinite(field).all():
        raise ScanError(f"the {name} field contains NaN or infinite values")
    return field.mean(axis=0)


def flat_dark_correct(projections: np.ndarray, flat: np.ndarray, dark: np.ndarray | None = None,
                      min_transmission: float = MIN_TRANSMISSION) -> tuple[np.ndarray, int]:
    """Line integrals ``-log((raw - dark) / (flat - dark))`` of raw detector intensities.

    Parameters
    ----------
    projections : (n_views, det_count) raw intensities (any units, any real dtype).
    flat : flat (white) field(s), (det_count,) or (n_flat, det_count): the beam without the object; averaged.
    dark : dark field(s), same shapes as ``flat``: the detector without beam; averaged; None for zero.
    min_transmission : transmissions below this are raised to it before the log.

    Returns
    -------
    (float32 (n_views, det_count) line integrals, number of bins raised to ``min_transmission``).
    """
    raw = np.asarray(projections, dtype=np.float64)
    if raw.ndim != 2:
        raise ScanError(f"projections must be 2D (views, detector bins), got shape {raw.shape}")
    if not np.isfinite(raw).all():
        raise ScanError("the projections contain NaN or infinite values")
    white = _field_mean(flat, raw.shape[1], "flat")
    black = np.zeros_like(white) if dark is None else _field_mean(dark, raw.shape[1], "dark")
    beam = white - black
    dead = np.flatnonzero(beam <= 0)
    if dead.size:
        raise ScanError(f"the flat field is not above the dark field at {dead.size} of {beam.size} detector "
                        f"bins (first at bin {dead[0]}): check the flat and dark fields")
    transmission = (raw - black) / beam
    low = transmission < min_transmission
    return (-np.log(np.maximum(transmission, min_transmission))).astype(np.float32), int(low.sum())


def load_scan(path: str | os.PathLike, geometry: str | os.PathLike | Mapping[str, Any] | None = None,
              row: int | None = None) -> MeasuredScan:
    """Read a measured scan and its geometry.

    Parameters
    ----------
    path : a ``.npy`` / ``.npz`` file, an HDF5 Data Exchange file (``.h5``, ``.hdf5``, ``.hdf``, ``.dxf``), a
        TIFF stack (a multi-page ``.tif`` or a folder of ``.tif`` files) or a Helsinki Tomography Challenge
        2022 ``.mat`` file; see :mod:`data.measured_formats` for what each must hold.
    geometry : a JSON geometry file (or its parsed dict) that fills what the file lacks, see
        :mod:`data.measured_geometry`. A value given in both must agree.
    row : detector row of 3D projection data (views, rows, columns); default the middle row.

    Returns
    -------
    :class:`MeasuredScan` (not yet centred or subsampled).
    """
    path = Path(path)
    if not path.exists():
        raise ScanNotFoundError(f"no such scan file or folder: {str(path)!r}")
    return _assemble(read_scan_file(path, row), geometry, str(path), path.name)


def load_scan_bytes(name: str, content: bytes, geometry: str | os.PathLike | Mapping[str, Any] | None = None,
                    row: int | None = None) -> MeasuredScan:
    """:func:`load_scan` of one file held in memory (an upload named ``name``; its suffix picks the reader);
    TIFF stacks are folders and need :func:`load_scan`."""
    return _assemble(read_scan_bytes(name, content, row), geometry, name, name)


def load_tiff_bytes(files: Sequence[tuple[str, bytes]],
                    geometry: str | os.PathLike | Mapping[str, Any] | None = None, row: int | None = None
                    ) -> MeasuredScan:
    """:func:`load_scan` of a TIFF stack uploaded as files held in memory: ``files`` are (name, bytes) of
    the projections (one image per view, natural name order), the ``flat*`` and optional ``dark*`` fields;
    ``row`` the detector row (image row) to reconstruct, default the middle one. Nothing is written to disk."""
    return _assemble(read_tiff_bytes(files, row), geometry, "uploaded TIFF stack", "the uploaded TIFF stack")


def _assemble(found: Any, geometry: str | os.PathLike | Mapping[str, Any] | None, source: str,
              name: str) -> MeasuredScan:
    extra = read_geometry(geometry) if geometry is not None else {}
    fields = merge_geometry(found.geometry, extra, str(geometry) if isinstance(geometry, str | os.PathLike)
                            else "the geometry")
    notes = list(found.notes)
    if found.sinogram is not None:
        sinogram = found.sinogram
    else:
        sinogram, clipped = flat_dark_correct(found.projections, found.flat, found.dark)
        notes.append("flat/dark corrected and log transformed" + ("" if found.dark is not None else " (no dark field)")
                     + (f"; {clipped} bins below transmission {MIN_TRANSMISSION:g} raised to it" if clipped else ""))
    if "angles" not in fields:
        raise ScanError(f"{name} has no view angles: give angles_deg in a geometry JSON file")
    for key in ("beam", "detector_pixel_mm"):
        if key not in fields:
            raise ScanError(f"{name} does not say its {key}: give it in a geometry JSON file, e.g. "
                            '{"beam": "parallel", "detector_pixel_mm": 0.5}')
    return MeasuredScan(sinogram=sinogram, angles=fields["angles"], beam=fields["beam"],
                        detector_pixel_mm=fields["detector_pixel_mm"], center_offset=fields.get("center_offset", 0.0),
                        source_distance_mm=fields.get("source_distance_mm"),
                        detector_distance_mm=fields.get("detector_distance_mm"), source=source,
                        format=found.format, notes=tuple(notes))


__all__ = ["MIN_TRANSMISSION", "MeasuredScan", "flat_dark_correct", "load_scan", "load_scan_bytes",
           "load_tiff_bytes"]
