"""Read CT images from DICOM files, folders, .zip archives or in-memory uploads.

Files are classified one by one; anything that is not a usable CT image is *skipped with a reason*
when scanning many files, and raises a :class:`~data.errors.DicomError` subclass when a single file was
asked for. Compressed transfer syntaxes are decoded by pydicom's pixel handlers (pylibjpeg plugins).
HU follow :func:`data.hu.stored_to_hu` (padding and values below -1024 HU become -1024 HU).
"""

from __future__ import annotations

import io
import os
import re
import warnings
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import (
    CTImageStorage,
    EnhancedCTImageStorage,
    LegacyConvertedEnhancedCTImageStorage,
    MediaStorageDirectoryStorage,
)

from .errors import (
    INPUT_HINT,
    AmbiguousSeriesError,
    CorruptDicomError,
    DicomError,
    DicomNotFoundError,
    NoCTSeriesError,
    NoPixelDataError,
    NotCTError,
    NotDicomError,
    UnsupportedDicomError,
)
from .hu import stored_to_hu
from .series import CTSeries, CTSlice, ScanResult

CT_SOP_CLASSES = frozenset({CTImageStorage, EnhancedCTImageStorage, LegacyConvertedEnhancedCTImageStorage})
#: Uncompressed size limit for the members of one .zip archive (bytes).
MAX_ZIP_BYTES = 4 * 1024**3
_MAX_ZIP_DEPTH = 2
_BULK_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})

PathLike = str | os.PathLike
Upload = bytes | bytearray | memoryview | BinaryIO | Any


@dataclass
class _Frame:
    """One decoded 2D image with what is needed to order it and to reference it."""

    hu: np.ndarray
    spacing: tuple[float, float]
    spacing_assumed: bool
    position: float | None
    fallback_position: float | None
    order_key: float | None
    series_uid: str
    description: str
    dataset: Dataset
    frame: int | None
    source: str
    meta: dict[str, Any]


# ----------------------------------------------------------------------------------------------------
# Input enumeration
# ----------------------------------------------------------------------------------------------------

def _is_zip(data: bytes) -> bool:
    return data[:4] == b"PK\x03\x04" or data[:4] == b"PK\x05\x06"


def _has_dicm(data: bytes) -> bool:
    return len(data) >= 132 and data[128:132] == b"DICM"


def _looks_like_bare_dataset(data: bytes) -> bool:
    """A DICOM data set written without preamble/file meta starts with a group 0x0008 (or 0x0002) tag."""
    return len(data) >= 8 and data[:2] in (b"\x08\x00", b"\x00\x08", b"\x02\x00", b"\x00\x02")


def _expand_zip(name: str, data: bytes, depth: int) -> Iterator[tuple[str, bytes | None, str | None]]:
    """Yield (member name, bytes or None, skip reason or None) for the files of a zip archive."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = [i for i in archive.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        yield name, None, f"unreadable .zip archive ({exc})"
        return
    total = 0
    with archive:
        for info in infos:
            member = f"{name}/{info.filename}"
            total += info.file_size
            if total > MAX_ZIP_BYTES:
                yield member, None, f"archive expands beyond {MAX_ZIP_BYTES // 1024**3} GiB; member ignored"
                continue
            try:
                content = archive.read(info)
            except (RuntimeError, zipfile.BadZipFile, OSError, NotImplementedError) as exc:
                yield member, None, f"cannot extract from archive ({exc})"
                continue
            yield from _expand(member, content, depth + 1)


def _expand(name: str, data: bytes, depth: int = 0) -> Iterator[tuple[str, bytes | None, str | None]]:
    if not _has_dicm(data) and _is_zip(data):
        if depth >= _MAX_ZIP_DEPTH:
            yield name, None, "nested .zip archive too deep; not opened"
            return
        yield from _expand_zip(name, data, depth)
    else:
        yield name, data, None


def _iter_path(root: Path) -> Iterator[tuple[str, bytes | None, str | None]]:
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    for path in files:
        try:
            data = path.read_bytes()
        except OSError as exc:
            yield str(path), None, f"cannot read file ({exc.strerror or exc})"
            continue
        yield from _expand(str(path), data)


def _upload_bytes(content: Upload) -> bytes:
    if isinstance(content, bytes | bytearray | memoryview):
        return bytes(content)
    if hasattr(content, "getvalue"):
        return bytes(content.getvalue())
    if hasattr(content, "read"):
        pos = content.tell() if hasattr(content, "seekable") and content.seekable() else None
        data = content.read()
        if pos is not None:
            content.seek(pos)
        return bytes(data)
    raise TypeError(f"expected bytes or a binary file-like object, got {type(content).__name__}")


def _iter_uploads(items: Upload | Iterable[Upload | tuple[str, Upload]]
                  ) -> Iterator[tuple[str, bytes | None, str | None]]:
    if isinstance(items, bytes | bytearray | memoryview) or hasattr(items, "read"):
        items = [items]
    for k, item in enumerate(items):
        if isinstance(item, tuple):
            name, content = item
        else:
            name, content = getattr(item, "name", None) or f"upload-{k + 1}", item
        yield from _expand(str(name), _upload_bytes(content))


# ----------------------------------------------------------------------------------------------------
# One file -> frames
# ----------------------------------------------------------------------------------------------------

def _parse(name: str, data: bytes) -> Dataset:
    if _has_dicm(data):
        force = False
    elif _looks_like_bare_dataset(data):
        force = True
    elif _is_zip(data):
        raise UnsupportedDicomError(f"{name}: nested .zip archive; extract it first")
    else:
        raise NotDicomError(f"{name}: not a DICOM file (no 'DICM' marker at byte 128)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(io.BytesIO(data), force=force)
            for elem in ds:  # touch every element: raises on a header cut short
                _ = elem.value
    except InvalidDicomError as exc:
        raise NotDicomError(f"{name}: not a DICOM file ({exc})") from exc
    except Exception as exc:  # pydicom raises many types on damaged files
        detail = f"{type(exc).__name__}: {exc}"
        raise CorruptDicomError(f"{name}: truncated or damaged DICOM file ({detail})") from exc
    if len(ds) == 0:
        raise CorruptDicomError(f"{name}: truncated DICOM file (no data set after the file meta header)")
    if force and "SOPClassUID" not in ds and "Modality" not in ds:
        raise NotDicomError(f"{name}: not a DICOM file (no DICM marker, SOP Class or Modality)")
    return ds


def _image_type(ds: Dataset) -> list[str]:
    value = ds.get("ImageType", [])
    values = [value] if isinstance(value, str) else list(value)
    return [str(v).strip().upper() for v in values]


def _check_ct(name: str, ds: Dataset) -> None:
    file_meta = getattr(ds, "file_meta", None)
    sop = str(ds.get("SOPClassUID", "") or "")
    if not sop and file_meta is not None:
        sop = str(file_meta.get("MediaStorageSOPClassUID", "") or "")
    if sop == MediaStorageDirectoryStorage or "DirectoryRecordSequence" in ds:
        raise NotCTError(f"{name}: DICOMDIR (a media directory index, not an image); the images it lists "
                         "are read from the folder directly")
    modality = str(ds.get("Modality", "") or "").strip().upper()
    if sop not in CT_SOP_CLASSES and modality != "CT":
        what = modality or "unknown"
        sop_name = pydicom.uid.UID(sop).name if sop else "no SOP Class"
        raise NotCTError(f"{name}: modality {what} ({sop_name}) is not CT")
    if not any(t in ds for t in (0x7FE00010, 0x7FE00008, 0x7FE00009)):
        if sop in CT_SOP_CLASSES or "Rows" in ds:  # a CT image always has pixel data: cut short or stripped
            raise NoPixelDataError(f"{name}: truncated or damaged CT image (no pixel data)")
        raise NoPixelDataError(f"{name}: CT object without pixel data; only CT images can be used")
    if "LOCALIZER" in _image_type(ds):
        raise UnsupportedDicomError(f"{name}: localizer (scout/topogram) image, not an axial CT slice")
    if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
        raise UnsupportedDicomError(f"{name}: colour image (SamplesPerPixel={ds.SamplesPerPixel}); "
                                    "only grayscale CT images are supported")


def _decode(name: str, ds: Dataset) -> np.ndarray:
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    ts_name = pydicom.uid.UID(ts).name if ts else "unknown transfer syntax"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.asarray(ds.pixel_array)
    except (NotImplementedError, RuntimeError) as exc:
        text = str(exc).lower()
        if isinstance(exc, NotImplementedError) or "plugin" in text or "handler" in text:
            raise UnsupportedDicomError(
                f"{name}: cannot decode pixel data in transfer syntax '{ts_name}' ({exc})"
            ) from exc
        raise CorruptDicomError(f"{name}: pixel data cannot be decoded ({exc})") from exc
    except Exception as exc:
        short = re.search(r"\((\d+) vs (\d+) bytes\)", str(exc))
        detail = f"{short[1]} of {short[2]} bytes present" if short else f"{type(exc).__name__}: {exc}"
        raise CorruptDicomError(f"{name}: truncated or damaged pixel data ({detail})") from exc


def _group_item(ds: Dataset, index: int, sequence: str) -> Dataset | None:
    """Item of functional-group ``sequence`` for frame ``index`` (per-frame first, then shared)."""
    groups = []
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame is not None and index < len(per_frame):
        groups.append(per_frame[index])
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        groups.append(shared[0])
    for group in groups:
        seq = group.get(sequence)
        if seq:
            return seq[0]
    return None


def _lookup(ds: Dataset, index: int, sequence: str, keyword: str) -> Any:
    item = _group_item(ds, index, sequence)
    if item is not None and keyword in item and item[keyword].value not in (None, ""):
        return item[keyword].value
    value = ds.get(keyword)
    return None if value in (None, "") else value


def _as_int(value: Any, signed: bool) -> int | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        if len(value) < 2:
            return None
        return int(np.frombuffer(value[:2], dtype="<i2" if signed else "<u2")[0])
    if isinstance(value, list | tuple | pydicom.multival.MultiValue):
        value = value[0] if len(value) else None
        return _as_int(value, signed)
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _floats(value: Any, n: int) -> list[float] | None:
    try:
        out = [float(v) for v in value]
    except (TypeError, ValueError):
        return None
    return out if len(out) == n and all(np.isfinite(out)) else None


def _header(ds: Dataset) -> Dataset:
    """Copy of ``ds`` without bulk pixel data (the elements themselves are shared)."""
    header = Dataset()
    for elem in ds:
        if elem.tag in _BULK_TAGS or (elem.tag.group & 0xFF01 == 0x6000 and elem.tag.element == 0x3000):
            continue
        header.add(elem)
    if hasattr(ds, "file_meta"):
        header.file_meta = ds.file_meta
    return header


def _meta(ds: Dataset, n_frames: int) -> dict[str, Any]:
    """Non-identifying acquisition/description attributes."""
    def text(keyword: str) -> str | None:
        value = ds.get(keyword)
        if value in (None, ""):
            return None
        if isinstance(value, list | tuple | pydicom.multival.MultiValue):
            return "\\".join(str(v) for v in value)
        return str(value)

    def number(keyword: str) -> float | None:
        try:
            value = ds.get(keyword)
            if isinstance(value, list | tuple | pydicom.multival.MultiValue):
                value = value[0]
            return None if value in (None, "") else float(value)
        except (TypeError, ValueError):
            return None

    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    sop = ds.get("SOPClassUID")
    return {
        "modality": text("Modality") or "CT",
        "sop_class": pydicom.uid.UID(sop).name if sop else None,
        "transfer_syntax": pydicom.uid.UID(ts).name if ts else None,
        "series_description": text("SeriesDescription"),
        "study_description": text("StudyDescription"),
        "body_part": text("BodyPartExamined"),
        "image_type": text("ImageType"),
        "manufacturer": text("Manufacturer"),
        "model": text("ManufacturerModelName"),
        "kvp": number("KVP"),
        "tube_current_ma": number("XRayTubeCurrent"),
        "exposure_mas": number("Exposure"),
        "convolution_kernel": text("ConvolutionKernel"),
        "slice_thickness_mm": number("SliceThickness"),
        "window_center": number("WindowCenter"),
        "window_width": number("WindowWidth"),
        "rows": int(ds.get("Rows", 0) or 0),
        "columns": int(ds.get("Columns", 0) or 0),
        "n_frames": n_frames,
    }


def _read_frames(name: str, data: bytes) -> list[_Frame]:
    """Decode every usable frame of one file; raises DicomError subclasses."""
    ds = _parse(name, data)
    _check_ct(name, ds)
    raw = _decode(name, ds)
    multi = "NumberOfFrames" in ds
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    if raw.ndim == 2:
        raw = raw[None]
    if raw.ndim != 3 or raw.shape[0] != n_frames:
        raise UnsupportedDicomError(f"{name}: unexpected pixel array shape {raw.shape} for "
                                    f"{n_frames} frame(s); only grayscale 2D frames are supported")
    header = _header(ds)
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    pad_value = _as_int(ds.get("PixelPaddingValue"), signed)
    pad_limit = _as_int(ds.get("PixelPaddingRangeLimit"), signed)
    series_uid = str(ds.get("SeriesInstanceUID", "") or f"(no SeriesInstanceUID: {name})")
    description = str(ds.get("SeriesDescription", "") or "")
    meta = _meta(ds, n_frames)
    instance = _as_int(ds.get("InstanceNumber"), True)
    slice_location = ds.get("SliceLocation")
    frames: list[_Frame] = []
    for i in range(n_frames):
        item = _group_item(ds, i, "CTImageFrameTypeSequence")
        if item is not None and "LOCALIZER" in [str(v).upper() for v in item.get("FrameType", [])]:
            continue
        slope = _lookup(ds, i, "PixelValueTransformationSequence", "RescaleSlope")
        intercept = _lookup(ds, i, "PixelValueTransformationSequence", "RescaleIntercept")
        slope = 1.0 if slope is None else float(slope)
        intercept = 0.0 if intercept is None else float(intercept)
        spacing = _floats(_lookup(ds, i, "PixelMeasuresSequence", "PixelSpacing") or [], 2)
        ipp = _floats(_lookup(ds, i, "PlanePositionSequence", "ImagePositionPatient") or [], 3)
        iop = _floats(_lookup(ds, i, "PlaneOrientationSequence", "ImageOrientationPatient") or [], 6)
        position = None
        if ipp is not None and iop is not None:
            normal = np.cross(iop[:3], iop[3:])
            if np.linalg.norm(normal) > 1e-6:
                position = float(np.dot(ipp, normal / np.linalg.norm(normal)))
        order_key: float | None = instance if not multi else i + 1
        stack = _group_item(ds, i, "FrameContentSequence")
        if multi and stack is not None and "InStackPositionNumber" in stack:
            order_key = float(stack.InStackPositionNumber)
        fallback = None
        if not multi and slice_location not in (None, ""):
            try:
                fallback = float(slice_location)
            except (TypeError, ValueError):
                fallback = None
        frame_meta = dict(meta, rescale_slope=slope, rescale_intercept=intercept,
                          pixel_spacing_assumed=spacing is None)
        frames.append(_Frame(
            hu=stored_to_hu(raw[i], slope, intercept, pad_value, pad_limit),
            spacing=(spacing[0], spacing[1]) if spacing is not None else (1.0, 1.0),
            spacing_assumed=spacing is None, position=position, fallback_position=fallback,
            order_key=None if order_key is None else float(order_key), series_uid=series_uid,
            description=description, dataset=header, frame=i + 1 if multi else None, source=name,
            meta=frame_meta,
        ))
    if not frames:
        raise UnsupportedDicomError(f"{name}: every frame is a localizer; no cross-sectional CT slice")
    return frames


# ----------------------------------------------------------------------------------------------------
# Frames -> series
# ----------------------------------------------------------------------------------------------------

def _assemble(frames: list[_Frame], skipped: list[tuple[str, str]]) -> list[CTSeries]:
    groups: dict[tuple[str, tuple[int, ...]], list[_Frame]] = {}
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


def _scan_items(items: Iterable[tuple[str, bytes | None, str | None]], strict: bool = False) -> ScanResult:
    frames: list[_Frame] = []
    skipped: list[tuple[str, str]] = []
    for name, data, reason in items:
        if data is None:
            skipped.append((name, reason or "unreadable"))
            continue
        try:
            frames.extend(_read_frames(name, data))
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
    return _has_dicm(head) or not _is_zip(head)


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
    return _scan_items(_iter_path(_check_path(path)))


def scan_bytes(items: Upload | Iterable[Upload | tuple[str, Upload]]) -> ScanResult:
    """Like :func:`scan` for in-memory data (e.g. Streamlit uploads); nothing is written to disk.

    Parameters
    ----------
    items : one upload or an iterable of them; an upload is ``bytes`` or a binary file-like object
        (``.getvalue()`` or ``.read()``; its ``.name`` is used if present) or a ``(name, bytes | file)``
        tuple. ``.zip`` archives (recognised by content) are expanded, folders inside included.
    """
    return _scan_items(_iter_uploads(items))


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
    return _one_series(_scan_items(_iter_path(p), strict=_single_file(p)), str(p), series_uid)


def load_bytes(items: Upload | Iterable[Upload | tuple[str, Upload]],
               series_uid: str | None = None) -> CTSeries:
    """Like :func:`load` for in-memory uploads (see :func:`scan_bytes` for accepted inputs)."""
    entries = list(_iter_uploads(items))
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
