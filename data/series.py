"""Containers for CT data read from DICOM (or made synthetically)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from skimage.transform import resize


@dataclass
class CTSlice:
    """One axial CT image.

    Attributes
    ----------
    hu : float32 (H, W) image in Hounsfield units (padding and values below -1024 set to -1024).
    spacing : (row, col) pixel spacing in mm, i.e. distance between rows and between columns.
    meta : non-identifying information (modality, kvp, series_description, manufacturer, ...).
    dataset : source DICOM header without pixel data (None for synthetic images); used to write
        derived series.
    frame : 1-based frame number in a multi-frame source, else None.
    source : file name or path the slice came from (None for synthetic images).
    """

    hu: np.ndarray
    spacing: tuple[float, float]
    meta: dict[str, Any] = field(default_factory=dict)
    dataset: Dataset | None = None
    frame: int | None = None
    source: str | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) in pixels."""
        return tuple(self.hu.shape)  # type: ignore[return-value]


def resample(ct: CTSlice, size: int) -> CTSlice:
    """``ct`` resampled to (size, size) pixels (anti-aliased, bilinear), pixel spacing scaled so the field of
    view is kept; the source header is kept for writing derived series."""

    if size < 8:
        raise ValueError(f"size must be >= 8, got {size}")
    if ct.hu.shape == (size, size):
        return ct
    h, w = ct.hu.shape
    hu = resize(ct.hu.astype(np.float64), (size, size), order=1, anti_aliasing=True, preserve_range=True)
    return CTSlice(hu=hu.astype(np.float32), spacing=(ct.spacing[0] * h / size, ct.spacing[1] * w / size),
                   meta=dict(ct.meta, resampled_from=(h, w)), dataset=ct.dataset, frame=ct.frame, source=ct.source)


@dataclass
class CTSeries:
    """A stack of CT slices from one series, ordered along the slice normal.

    Attributes
    ----------
    hu : float32 (n, H, W) in HU.
    spacing : (row, col) pixel spacing in mm.
    positions : float64 (n,) slice positions in mm along the slice normal (ImagePositionPatient projected
        on the normal of ImageOrientationPatient); SliceLocation, else NaN, when the position is unknown.
    uid : SeriesInstanceUID.
    description : SeriesDescription ('' if absent).
    datasets : per-slice DICOM headers without pixel data (patient/study/frame-of-reference modules,
        SOP Class/Instance UIDs); frames of one multi-frame file share one object.
    frames : per-slice 1-based frame number for multi-frame sources, else None.
    sources : per-slice file name or path.
    meta : non-identifying information of the first slice.
    """

    hu: np.ndarray
    spacing: tuple[float, float]
    positions: np.ndarray
    uid: str
    description: str
    datasets: list[Dataset]
    frames: list[int | None]
    sources: list[str]
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.hu.shape[0])

    @property
    def shape(self) -> tuple[int, int, int]:
        """(n, H, W)."""
        return tuple(self.hu.shape)  # type: ignore[return-value]

    def label(self) -> str:
        """Human-readable name: description, UID, slice count and size."""
        desc = self.description or "(no description)"
        n, h, w = self.hu.shape
        return f"'{desc}' (SeriesInstanceUID {self.uid}, {n} slice(s) of {h}x{w})"

    def slice(self, index: int | None = None) -> CTSlice:
        """The slice at ``index`` (default: the middle one, ``n // 2``) as a :class:`CTSlice`."""
        n = len(self)
        if index is None:
            index = n // 2
        if not -n <= index < n:
            raise IndexError(f"slice index {index} out of range for {self.label()}")
        index %= n
        meta = dict(self.meta)
        meta["slice_index"] = index
        meta["slice_position_mm"] = float(self.positions[index])
        return CTSlice(hu=self.hu[index].copy(), spacing=self.spacing, meta=meta,
                       dataset=self.datasets[index], frame=self.frames[index], source=self.sources[index])


@dataclass
class ScanResult:
    """Outcome of scanning files: the CT series found and the inputs that were skipped.

    Attributes
    ----------
    series : CT series, largest first.
    skipped : (name, reason) for every file or frame that was not used.
    """

    series: list[CTSeries] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


__all__ = ["CTSeries", "CTSlice", "ScanResult"]
