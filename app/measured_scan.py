"""Measured scans in the app (``sparsect reconstruct --scan``, the page's "Measured scan" mode).

:func:`prepare` turns the user's choices into the dense (all measured views) and sparse (``--views N``
evenly spaced measured views) scans with one reconstruction grid, and :func:`measured_scan` into the
:class:`sparsect.app.scans.Scan` the run layer reconstructs. A sparse-view study on real data has no ground
truth: scores are against a named method run on the dense scan, and without one the data-consistency maps
show how well an image explains the measured sinogram.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from sparsect import data
from sparsect.app.scans import Scan
from sparsect.app.settings import InputError
from sparsect.reconstruct import registry


@dataclass(frozen=True)
class MeasuredInput:
    """A measured scan ready to reconstruct.

    dense : the centred scan with all its measured views; sparse : the views the methods get (``dense`` when
    no subsampling was asked for); image_size : (H, W) pixels; pixel_size_mm : reconstruction pixel size;
    reference : method run on ``dense`` to score against, or None (no scores, data-consistency map instead).
    center_warning : the one-line warning of :func:`data.center_disagreement` when the centre the file states
        disagrees with the data's own estimate (None when it agrees, or the centre was given or estimated).
    """

    dense: data.MeasuredScan
    sparse: data.MeasuredScan
    image_size: tuple[int, int]
    pixel_size_mm: float
    reference: str | None
    center_warning: str | None = None

    def geometry(self, scan: data.MeasuredScan) -> Any:
        """The operators geometry of ``scan`` (``dense`` or ``sparse``) on this input's grid."""
        return scan.geometry(self.image_size, self.pixel_size_mm)


def parse_center(value: str | float | None) -> float | str | None:
    """``--center``: None (as the file says), "auto" (estimate from opposing views) or a number of bins."""
    if value is None or isinstance(value, float | int):
        return value
    text = str(value).strip().lower()
    if text == "auto":
        return "auto"
    try:
        number = float(text)
    except ValueError:
        raise data.ScanError(f"--center must be auto or a number of detector bins, got {value!r}") from None
    if not math.isfinite(number):
        raise data.ScanError(f"--center must be finite, got {value!r}")
    return number


def prepare(path: str | os.PathLike, geometry: str | os.PathLike | None = None, views: int | None = None,
            center: str | float | None = None, row: int | None = None, size: int | None = None,
            reference: str | None = "auto") -> MeasuredInput:
    """:func:`data.load_scan` (``path``, ``geometry``, ``row``), then :func:`prepare_scan`."""
    return prepare_scan(data.load_scan(path, geometry, row=row), views, center, size, reference)


def prepare_scan(scan: data.MeasuredScan, views: int | None = None, center: str | float | None = None,
                 size: int | None = None, reference: str | None = "auto") -> MeasuredInput:
    """Centre and subsample a measured scan and fix the reconstruction grid.

    Parameters
    ----------
    scan : as read by :func:`data.load_scan` / :func:`data.load_scan_bytes`.
    views : keep this many evenly spaced measured views for the methods; None keeps all.
    center : see :func:`parse_center`.
    size : reconstruction grid size N (N x N); default the detector bin count. The field of view stays the
        detector's at the rotation centre, so the pixel is ``isocentre_pixel_mm * det_count / N``.
    reference : a method of :data:`sparsect.reconstruct.registry.REFERENCE_METHODS` (run on all measured views),
        None for no reference, or "auto": :data:`~sparsect.reconstruct.registry.DEFAULT_REFERENCE` when views are
        subsampled, else none.

    Raises :class:`data.ScanError` for unusable settings.
    """
    center = parse_center(center)
    center_warning = data.center_disagreement(scan) if center is None else None
    if center == "auto":
        scan = scan.with_center_offset(data.estimate_center_offset(scan))
    elif center is not None:
        scan = scan.with_center_offset(center)
    measured_bins = scan.det_count
    dense = scan.centred()
    sparse = dense if views is None or views == dense.n_views else dense.subsample(views)
    if reference == "auto":
        reference = registry.DEFAULT_REFERENCE if sparse is not dense else None
    if reference is not None and reference not in registry.REFERENCE_METHODS:
        raise data.ScanError(f"the reference must be one of {', '.join(registry.REFERENCE_METHODS)} or none, "
                             f"got {reference!r}")
    n = measured_bins if size is None else int(size)
    if n < 8:
        raise data.ScanError(f"the image size must be at least 8 pixels, got {size}")
    pixel = dense.isocentre_pixel_mm * measured_bins / n
    return MeasuredInput(dense, sparse, (n, n), pixel, reference, center_warning)


def parse_reference(value: str | None) -> str | None:
    """``--reference``: a reference method, "none" (None), or None (automatic: "auto")."""
    if value is None:
        return "auto"
    text = value.strip().lower()
    if text == "none":
        return None
    if text not in registry.REFERENCE_METHODS:
        raise InputError(f"--reference must be {', '.join(registry.REFERENCE_METHODS)} or none, got {value!r}")
    return text


def measured_scan(measured: MeasuredInput, origin: Mapping[str, Any] | None = None) -> Scan:
    """The :class:`Scan` of a prepared measured scan: the sparse views for the methods, every measured view for
    the reference and the consistency maps; the photon count is unknown. ``origin``: where it came from
    (:func:`sparsect.app.scans.source`)."""
    dense, sparse = measured.dense, measured.sparse
    provenance = {**(origin or {}), "beam": dense.beam, "arc_deg": None, "det_count": int(dense.det_count),
                  "size": int(measured.image_size[0]), "photons": None, "noise_seed": None, "simulation": None,
                  "simulation_grid": None, "sub_rays": None, "measured_views": int(dense.n_views)}
    return Scan(torch.from_numpy(np.ascontiguousarray(sparse.sinogram, dtype=np.float32)), measured.geometry(sparse),
                measured.pixel_size_mm, None, None, measured.reference,
                torch.from_numpy(np.ascontiguousarray(dense.sinogram, dtype=np.float32)), measured.geometry(dense),
                provenance, measured=measured)


__all__ = ["MeasuredInput", "measured_scan", "parse_center", "parse_reference", "prepare", "prepare_scan"]
