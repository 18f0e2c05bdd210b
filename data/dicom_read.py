"""Read CT images from DICOM files, folders, .zip archives or in-memory uploads.

Files are classified one by one; anything that is not a usable CT image is *skipped with a reason*
when scanning many files, and raises a :class:`~data.errors.DicomError` subclass when a single file was
asked for. Compressed transfer syntaxes are decoded by pydicom's pixel handlers (pylibjpeg plugins).
HU follow :func:`data.hu.stored_to_hu` (padding and values below -1024 HU become -1024 HU).

The work is split in three: :mod:`data.dicom_inputs` turns paths, archives and uploads into file bytes,
:mod:`data.dicom_frames` decodes one file's frames, and this module groups the frames into series and holds
the public functions.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .dicom_frames import CT_SOP_CLASSES as CT_SOP_CLASSES  # importable from here as before the split
from .dicom_frames import Frame, read_frames
from .dicom_inputs import MAX_ZIP_BYTES as MAX_ZIP_BYTES  # importable from here as before the split
from .dicom_inputs import Entry, PathLike, Upload, has_dicm, is_zip, iter_path, iter_uploads
from .errors import INPUT_HINT, AmbiguousSeriesError, DicomError, DicomNotFoundError, NoCTSeriesError
from .series import CTSeries, CTSlice, ScanResult

# ----------------------------------------------------------------------------------------------------
# Frames -> series
# ----------------------------------------------------------------------------------------------------

def _assemble(frames: list[Frame], skipped: list[tuple[str, str]]) -> list[CTSeries]:
    groups: dict[tuple[str, tuple[int, ...]], list[Frame]] = {}
    for fr in frames:
        groups.setdefault((fr.series_uid, fr.hu.shape), []).append(fr)
    series = []
    for (uid, _shape), members in groups.items():
        seen: dict[tuple[str, int | None], str] = {}
        unique = []
        for fr in members:
            key = (str(fr.dataset.get("SOPInstanceUID", fr.source)), fr.frame)
            if key in seen:
                skipped.append((fr.source, f"duplicate of {seen[key]} (same SOP Instance UID)"))
                continue
            seen[key] = fr.source
            unique.append(fr)
        if all(fr.position is not None for fr in unique):
            unique.sort(key=lambda f: (f.position, f.order_key if f.order_key is not None else 0.0))
        else:
            unique.sort(key=lambda f: (f.order_key if f.order_key is not None else np.inf, f.source))
        positions = np.array([
            fr.position if fr.position is not None
            else (fr.fallback_position if fr.fallback_position is not None else np.nan)
            for fr in unique], dtype=np.float64)
        first = unique[0]
        meta = dict(first.meta)
        meta["n_slices"] = len(unique)
        series.append(CTSeries(
            hu=np.stack([fr.hu for fr in unique]).astype(np.float32, copy=False),
            spacing=first.spacing, positions=positions, uid=uid, description=first.description,
            datasets=[fr.dataset for fr in unique], frames=[fr.frame for fr in unique],
            sources=[fr.source for fr in unique], meta=meta,
        ))
    series.sort(key=lambda s: (-len(s), s.uid))
    return series


def _scan_items(items: Iterable[Entry], strict: bool = False) -> ScanResult:
    frames: list[Frame] = []
    skipped: list[tuple[str, str]] = []
    for name, data, reason in items:
        if data is None:
            skipped.append((name, reason or "unreadable"))
            continue
        try:
            frames.extend(read_frames(name, data))
        except DicomError as exc:
            if strict:
                raise
            prefix = f"{name}: "
            message = str(exc)
            skipped.append((name, message[len(prefix):] if message.startswith(prefix) else message))
    return ScanResult(series=_assemble(frames, skipped), skipped=skipped)


def _check_path(path: PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise DicomNotFoundError(f"No such file or folder: '{p}'. Give a DICOM file, a folder of DICOM files "
                                 "(searched recursively) or a .zip archive.")
    return p


def _single_file(p: Path) -> bool:
    if not p.is_file():
        return False
    with open(p, "rb") as fh:
        head = fh.read(132)
    return has_dicm(head) or not is_zip(head)


def _one_series(result: ScanResult, where: str, series_uid: str | None) -> CTSeries:
    candidates = result.series
    if series_uid is not None:
        candidates = [s for s in candidates if s.uid == series_uid]
        if not candidates:
            found = "; ".join(s.label() for s in result.series) or "none"
            raise NoCTSeriesError(f"No CT series with SeriesInstanceUID {series_uid} in {where}. "
                                  f"CT series found: {found}")
    if not candidates:
        reasons = "; ".join(f"{Path(n).name}: {r}" for n, r in result.skipped[:5])
        more = f" (and {len(result.skipped) - 5} more)" if len(result.skipped) > 5 else ""
        detail = f" Skipped {len(result.skipped)} file(s): {reasons}{more}." if result.skipped else ""
        raise NoCTSeriesError(f"No usable CT image in {where}.{detail} {INPUT_HINT}")
    if len(candidates) > 1:
        raise AmbiguousSeriesError(where, [s.label() for s in candidates], [s.uid for s in candidates])
    return candidates[0]


# ----------------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------------

def scan(path: PathLike) -> ScanResult:
    """Find every CT series in a file, a folder (recursive) or a .zip archive.

    Parameters
    ----------
    path : file, folder or .zip archive.

    Returns
    -------
    ScanResult with ``.series`` (CT series, largest first, slices ordered along the slice normal) and
    ``.skipped`` ((name, reason) for every file not used: non-DICOM, DICOMDIR, non-CT, no pixel data,
    localizer, truncated, duplicate ...). Never raises for unusable files.

    Raises
    ------
    DicomNotFoundError
        ``path`` does not exist (also a ``FileNotFoundError``).
    """
    return _scan_items(iter_path(_check_path(path)))


def scan_bytes(items: Upload | Iterable[Upload | tuple[str, Upload]]) -> ScanResult:
    """Like :func:`scan` for in-memory data (e.g. Streamlit uploads); nothing is written to disk.

    Parameters
    ----------
    items : one upload or an iterable of them; an upload is ``bytes`` or a binary file-like object
        (``.getvalue()`` or ``.read()``; its ``.name`` is used if present) or a ``(name, bytes | file)``
        tuple. ``.zip`` archives (recognised by content) are expanded, folders inside included.
    """
    return _scan_items(iter_uploads(items))


def load(path: PathLike, series_uid: str | None = None) -> CTSeries:
    """Load the one CT series under ``path`` (file, folder or .zip).

    Parameters
    ----------
    path : DICOM file, folder (recursive) or .zip archive.
    series_uid : SeriesInstanceUID to pick when there are several series.

    Returns
    -------
    CTSeries with ``hu`` float32 (n, H, W).

    Raises
    ------
    DicomNotFoundError, NotDicomError, NotCTError, NoPixelDataError, UnsupportedDicomError,
    CorruptDicomError
        ``path`` is missing, or is a single file that cannot be used (the message says why).
    NoCTSeriesError
        No usable CT image was found (the message lists skipped files and reasons).
    AmbiguousSeriesError
        Several CT series were found; the message names each (description, UID, size).
    """
    p = _check_path(path)
    return _one_series(_scan_items(iter_path(p), strict=_single_file(p)), str(p), series_uid)


def load_bytes(items: Upload | Iterable[Upload | tuple[str, Upload]],
               series_uid: str | None = None) -> CTSeries:
    """Like :func:`load` for in-memory uploads (see :func:`scan_bytes` for accepted inputs)."""
    entries = list(iter_uploads(items))
    strict = len(entries) == 1 and entries[0][1] is not None
    where = entries[0][0] if len(entries) == 1 else f"{len(entries)} uploaded file(s)"
    return _one_series(_scan_items(entries, strict=strict), where, series_uid)


def load_slice(path: PathLike, index: int | None = None, series_uid: str | None = None) -> CTSlice:
    """Load one CT slice from a file, a multi-frame file, a folder or a .zip archive.

    Parameters
    ----------
    path : as for :func:`load`.
    index : slice index in the series ordered along the slice normal (negative counts from the end);
        default the middle slice ``n // 2``.
    series_uid : SeriesInstanceUID to pick when there are several series.

    Returns
    -------
    CTSlice with ``hu`` float32 (H, W), ``spacing`` (row, col) in mm, ``meta`` and ``dataset``.
    Raises the errors of :func:`load`, and ``IndexError`` for an out-of-range ``index``.
    """
    return load(path, series_uid).slice(index)


def load_slice_bytes(items: Upload | Iterable[Upload | tuple[str, Upload]], index: int | None = None,
                     series_uid: str | None = None) -> CTSlice:
    """Like :func:`load_slice` for in-memory uploads."""
    return load_bytes(items, series_uid).slice(index)


__all__ = ["load", "load_bytes", "load_slice", "load_slice_bytes", "scan", "scan_bytes"]
