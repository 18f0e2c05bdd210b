"""One DICOM file -> its decoded CT frames (HU images with what is needed to order and reference them).

:func:`read_frames` parses a file, checks that it is a usable CT image (raising a
:class:`~data.errors.DicomError` subclass saying why not), decodes the pixel data (compressed transfer
syntaxes through pydicom's pixel handlers, pylibjpeg plugins) and converts every non-localizer frame to HU
with :func:`data.hu.stored_to_hu`. Grouping frames into series is :mod:`data.dicom_read`'s job.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass
from typing import Any

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

from .dicom_inputs import has_dicm, is_zip, looks_like_bare_dataset
from .errors import CorruptDicomError, NoPixelDataError, NotCTError, NotDicomError, UnsupportedDicomError
from .hu import stored_to_hu

CT_SOP_CLASSES = frozenset({CTImageStorage, EnhancedCTImageStorage, LegacyConvertedEnhancedCTImageStorage})
_BULK_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})


@dataclass
class Frame:
    """One decoded 2D image with what is needed to order it and to reference it.

    ``hu`` is float32 (H, W) in HU; ``spacing`` (row, col) in mm; ``position`` in mm along the slice
    normal (None when unknown), ``fallback_position`` the SliceLocation in mm; ``frame`` the 1-based frame
    number in a multi-frame file, else None; ``dataset`` the file's header without pixel data.
    """

    hu: np.ndarray
    spacing: tuple[float, float]
    position: float | None
    fallback_position: float | None
    order_key: float | None
    series_uid: str
    description: str
    dataset: Dataset
    frame: int | None
    source: str
    meta: dict[str, Any]


def parse(name: str, data: bytes) -> Dataset:
    """The DICOM data set of one file.

    Parameters
    ----------
    name : the file's name or path, for messages.
    data : the file's bytes (with the ``DICM`` preamble, or a bare data set without file meta).

    Returns
    -------
    The parsed ``pydicom`` data set, every element read. Raises NotDicomError (not DICOM), CorruptDicomError
    (truncated or damaged) or UnsupportedDicomError (a .zip archive inside an archive).
    """
    if has_dicm(data):
        force = False
    elif looks_like_bare_dataset(data):
        force = True
    elif is_zip(data):
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


def check_ct(name: str, ds: Dataset) -> None:
    """Check that ``ds`` (from file ``name``) is a usable CT image; returns None.

    Raises NotCTError (DICOMDIR, other modality), NoPixelDataError (no pixel data) or UnsupportedDicomError
    (localizer, colour image), each with a one-line message naming ``name``.
    """
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
    if not any(t in ds for t in _BULK_TAGS):
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


def _stored_frames(name: str, ds: Dataset) -> np.ndarray:
    """The stored pixel values as (n_frames, H, W); raises UnsupportedDicomError for other shapes."""
    raw = _decode(name, ds)
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    if raw.ndim == 2:
        raw = raw[None]
    if raw.ndim != 3 or raw.shape[0] != n_frames:
        raise UnsupportedDicomError(f"{name}: unexpected pixel array shape {raw.shape} for "
                                    f"{n_frames} frame(s); only grayscale 2D frames are supported")
    return raw


def group_item(ds: Dataset, index: int, sequence: str) -> Dataset | None:
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


def lookup(ds: Dataset, index: int, sequence: str, keyword: str) -> Any:
    """The value of attribute ``keyword`` for one frame.

    Parameters
    ----------
    ds : the data set.
    index : 0-based frame number.
    sequence : the functional-group macro holding ``keyword`` in enhanced (multi-frame) objects, e.g.
        ``"PixelMeasuresSequence"`` for ``"PixelSpacing"``.
    keyword : the attribute.

    Returns
    -------
    The value from the frame's (per-frame, then shared) functional group, else from the top level; None when
    absent or empty. Units are the attribute's (PixelSpacing in mm, ImagePositionPatient in mm, ...).
    """
    item = group_item(ds, index, sequence)
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


def floats(value: Any, n: int) -> list[float] | None:
    """``value`` as ``n`` finite floats, else None."""
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


def _is_localizer_frame(ds: Dataset, index: int) -> bool:
    item = group_item(ds, index, "CTImageFrameTypeSequence")
    return item is not None and "LOCALIZER" in [str(v).upper() for v in item.get("FrameType", [])]


def _position(ds: Dataset, index: int) -> float | None:
    """Frame ``index``'s position in mm along the slice normal (ImagePositionPatient projected on the normal
    of ImageOrientationPatient), or None when either is missing or degenerate."""
    ipp = floats(lookup(ds, index, "PlanePositionSequence", "ImagePositionPatient") or [], 3)
    iop = floats(lookup(ds, index, "PlaneOrientationSequence", "ImageOrientationPatient") or [], 6)
    if ipp is None or iop is None:
        return None
    normal = np.cross(iop[:3], iop[3:])
    if np.linalg.norm(normal) <= 1e-6:
        return None
    return float(np.dot(ipp, normal / np.linalg.norm(normal)))


def _order_key(ds: Dataset, index: int, multi: bool) -> float | None:
    """Order within the series when positions are unknown: InstanceNumber, or for a multi-frame file the
    frame number (InStackPositionNumber when given)."""
    if not multi:
        instance = _as_int(ds.get("InstanceNumber"), True)
        return None if instance is None else float(instance)
    stack = group_item(ds, index, "FrameContentSequence")
    if stack is not None and "InStackPositionNumber" in stack:
        return float(stack.InStackPositionNumber)
    return float(index + 1)


def _slice_location(ds: Dataset) -> float | None:
    value = ds.get("SliceLocation")
    if value in (None, ""):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def read_frames(name: str, data: bytes) -> list[Frame]:
    """Decode every usable (non-localizer) frame of one file.

    Parameters
    ----------
    name : the file's name or path, used in messages and as each frame's ``source``.
    data : the file's bytes.

    Returns
    -------
    One :class:`Frame` per frame, ``hu`` float32 (H, W) in HU, in file order. Raises
    :class:`~data.errors.DicomError` subclasses when the file is not a usable CT image.
    """
    ds = parse(name, data)
    check_ct(name, ds)
    raw = _stored_frames(name, ds)
    multi = "NumberOfFrames" in ds
    header, meta = _header(ds), _meta(ds, raw.shape[0])
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    pad_value = _as_int(ds.get("PixelPaddingValue"), signed)
    pad_limit = _as_int(ds.get("PixelPaddingRangeLimit"), signed)
    series_uid = str(ds.get("SeriesInstanceUID", "") or f"(no SeriesInstanceUID: {name})")
    description = str(ds.get("SeriesDescription", "") or "")
    fallback = None if multi else _slice_location(ds)
    frames: list[Frame] = []
    for i in range(raw.shape[0]):
        if _is_localizer_frame(ds, i):
            continue
        slope = lookup(ds, i, "PixelValueTransformationSequence", "RescaleSlope")
        intercept = lookup(ds, i, "PixelValueTransformationSequence", "RescaleIntercept")
        slope = 1.0 if slope is None else float(slope)
        intercept = 0.0 if intercept is None else float(intercept)
        spacing = floats(lookup(ds, i, "PixelMeasuresSequence", "PixelSpacing") or [], 2)
        frames.append(Frame(
            hu=stored_to_hu(raw[i], slope, intercept, pad_value, pad_limit),
            spacing=(spacing[0], spacing[1]) if spacing is not None else (1.0, 1.0),
            position=_position(ds, i), fallback_position=fallback,
            order_key=_order_key(ds, i, multi), series_uid=series_uid, description=description, dataset=header,
            frame=i + 1 if multi else None, source=name,
            meta=dict(meta, rescale_slope=slope, rescale_intercept=intercept, pixel_spacing_assumed=spacing is None),
        ))
    if not frames:
        raise UnsupportedDicomError(f"{name}: every frame is a localizer; no cross-sectional CT slice")
    return frames


__all__ = ["CT_SOP_CLASSES", "Frame", "check_ct", "floats", "group_item", "lookup", "parse", "read_frames"]
