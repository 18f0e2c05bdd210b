"""The page's inputs: uploaded DICOM files read in memory, and what the page may show of a slice.

Nothing uploaded is ever written to disk. Identifying DICOM fields are shown only when the user asks.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparsect import data

log = logging.getLogger("sparsect.page")

#: DICOM attributes that identify a patient, study or institution; shown only when the user asks.
IDENTIFYING_FIELDS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge", "StudyDate",
                      "StudyTime", "AccessionNumber", "StudyID", "InstitutionName", "ReferringPhysicianName",
                      "OperatorsName", "StationName")


@dataclass
class UploadSummary:
    """What a set of uploaded files holds: CT series (largest first), skipped files and a fatal error."""

    series: list[data.CTSeries] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    error: str | None = None
    digest: str = ""


def upload_digest(files: Sequence[tuple[str, bytes]]) -> str:
    """A content hash of named uploads (used as the cache key of everything derived from them)."""
    h = hashlib.sha256()
    for name, content in files:
        h.update(name.encode("utf-8", "replace") + b"\0" + hashlib.sha256(content).digest())
    return h.hexdigest()[:16]


def read_uploads(files: Sequence[tuple[str, bytes]]) -> UploadSummary:
    """Scan uploaded files (DICOM files and/or .zip archives) in memory; never raises for bad files.

    Returns an :class:`UploadSummary` whose ``error`` is a user-facing message when nothing is usable.
    """
    files = [(str(name), bytes(content)) for name, content in files]
    summary = UploadSummary(digest=upload_digest(files))
    if not files:
        summary.error = "No file uploaded."
        return summary
    try:
        result = data.scan_bytes(files)
    except data.DicomError as exc:
        summary.error = str(exc)
        return summary
    except Exception as exc:  # a reader bug must not show a traceback
        log.exception("reading uploads failed")
        summary.error = f"The upload could not be read ({type(exc).__name__}: {exc})."
        return summary
    summary.series, summary.skipped = list(result.series), list(result.skipped)
    if not summary.series:
        if len(summary.skipped) == 1:
            name, reason = summary.skipped[0]
            detail = f"{Path(name).name}: {reason}. "
        else:
            detail = f"{len(summary.skipped)} files skipped (reasons below). " if summary.skipped else ""
        summary.error = ("No usable CT image in the upload. " + detail
                         + "Upload CT DICOM files (a series, or a .zip of its folder).")
    return summary


def series_label(series: data.CTSeries) -> str:
    """Non-identifying description of a series: description, slice count and matrix size."""
    n, h, w = series.shape
    return f"{series.description or 'CT series'} - {n} slice(s), {h}x{w}"


def identifying_fields(ct: data.CTSlice) -> dict[str, str]:
    """Identifying DICOM attributes of ``ct``'s header that are present (for an explicit opt-in view)."""
    ds = ct.dataset
    if ds is None:
        return {}
    return {k: str(ds.get(k)) for k in IDENTIFYING_FIELDS if k in ds and str(ds.get(k) or "").strip()}


def describe(ct: data.CTSlice) -> dict[str, Any]:
    """Non-identifying facts about a slice for display."""
    keep = ("series_description", "manufacturer", "model", "kvp", "tube_current_ma", "convolution_kernel",
            "slice_thickness_mm", "slice_index", "resampled_from")
    info: dict[str, Any] = {"matrix": f"{ct.hu.shape[0]} x {ct.hu.shape[1]}",
                            "pixel spacing (mm)": f"{ct.spacing[0]:.3g} x {ct.spacing[1]:.3g}",
                            "HU range": f"{float(ct.hu.min()):.0f} to {float(ct.hu.max()):.0f}"}
    for key in keep:
        value = ct.meta.get(key)
        if value not in (None, ""):
            info[key.replace("_", " ")] = value if not isinstance(value, tuple) else " x ".join(map(str, value))
    return info


__all__ = ["IDENTIFYING_FIELDS", "UploadSummary", "describe", "identifying_fields", "read_uploads", "series_label",
           "upload_digest"]
