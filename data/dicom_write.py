"""Write images (e.g. reconstructions) as a derived CT series referencing the source images, marked as a
research reconstruction and, unless asked otherwise, in a research study of its own (:mod:`data.dicom_marking`).

Output: one CT Image Storage file per slice, explicit VR little endian, signed 16-bit pixels with
``HU = stored * RescaleSlope + RescaleIntercept``. The slope is a power of two (at most 1/16 HU, so
rounding errors stay below 1/32 HU for data spanning up to ~4000 HU) and the intercept the rounded
middle of the data range. Files are written atomically (:mod:`data.atomic`: temporary file in the
target folder, then a rename; the mode follows the umask). Inputs are never modified.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import math
import os
import re
from collections.abc import Sequence as SequenceABC
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, CTImageStorage, ExplicitVRLittleEndian, generate_uid

from .anonymize import Anonymizer
from .atomic import atomic_open
from .dicom_frames import floats, lookup
from .dicom_marking import (
    RESEARCH_STUDY,
    RESEARCH_STUDY_ID,
    SOFTWARE,
    Marking,
    Provenance,
    make_research_study,
    mark_image,
    marking,
    reference_source,
)
from .series import CTSeries, CTSlice

DEFAULT_WINDOW = (40.0, 400.0)

# Source attributes copied verbatim when present (patient, study, frame of reference, acquisition).
_PATIENT = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex")
_STUDY = ("StudyInstanceUID", "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID",
          "AccessionNumber", "StudyDescription")
_TYPE2 = _PATIENT + ("StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber")
_ACQUISITION = ("KVP", "PatientPosition", "BodyPartExamined", "Laterality")


def _as_images(images_hu: Any) -> np.ndarray:
    if hasattr(images_hu, "detach"):
        images_hu = images_hu.detach().cpu().numpy()
    images = np.array(images_hu, dtype=np.float64, copy=True)
    if images.ndim == 2:
        images = images[None]
    if images.ndim != 3 or min(images.shape) < 1:
        raise ValueError(f"images_hu must have shape (n, H, W) or (H, W), got {np.shape(images_hu)}")
    if not np.isfinite(images).all():
        raise ValueError("images_hu contains NaN or infinite values")
    return images


def _references(reference: CTSlice | CTSeries, n: int) -> list[tuple[Dataset | None, int | None, np.ndarray]]:
    """(source header, frame, source HU image) for each output slice."""
    if isinstance(reference, CTSeries):
        if len(reference) != n:
            raise ValueError(f"{n} image(s) given but the reference series has {len(reference)} slice(s); "
                             "pass the matching CTSlice or a series with as many slices")
        return [(reference.datasets[i], reference.frames[i], reference.hu[i]) for i in range(n)]
    if isinstance(reference, CTSlice):
        if n != 1:
            raise ValueError(f"{n} images given for one reference slice; pass a CTSeries with {n} slices")
        return [(reference.dataset, reference.frame, reference.hu)]
    raise TypeError(f"reference must be a CTSlice or CTSeries, got {type(reference).__name__}")


def _encode(image: np.ndarray) -> tuple[np.ndarray, float, float]:
    """HU image -> (int16 stored values, slope, intercept)."""
    lo, hi = float(image.min()), float(image.max())
    intercept = float(round((lo + hi) / 2))
    span = max(hi - intercept, intercept - lo, 1e-6)
    slope = 2.0 ** max(-4, math.ceil(math.log2(span / 32767.0)))
    stored = np.clip(np.round((image - intercept) / slope), -32768, 32767).astype(np.int16)
    return stored, slope, intercept


def _ds_number(value: float) -> str:
    """Format a float for a DS element (at most 16 characters)."""
    text = f"{value:.10g}"
    return text if len(text) <= 16 else f"{value:.8e}"


def _image_plane(source: Dataset | None, frame: int | None, src_shape: tuple[int, int],
              src_spacing: tuple[float, float], out_shape: tuple[int, int]
              ) -> tuple[list[float], list[float], list[float]]:
    """(PixelSpacing, ImageOrientationPatient, ImagePositionPatient) keeping the source field of view."""
    (h0, w0), (h1, w1) = src_shape, out_shape
    row_sp = src_spacing[0] * h0 / h1
    col_sp = src_spacing[1] * w0 / w1
    index = 0 if frame is None else frame - 1
    iop = ipp = None
    if source is not None:
        iop = floats(lookup(source, index, "PlaneOrientationSequence", "ImageOrientationPatient") or [], 6)
        ipp = floats(lookup(source, index, "PlanePositionSequence", "ImagePositionPatient") or [], 3)
    if iop is None:
        iop = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    r, c = np.array(iop[:3]), np.array(iop[3:])
    if ipp is None:
        corner = -0.5 * w0 * src_spacing[1] * r - 0.5 * h0 * src_spacing[0] * c
    else:
        corner = np.array(ipp) - 0.5 * src_spacing[1] * r - 0.5 * src_spacing[0] * c
    new_ipp = corner + 0.5 * col_sp * r + 0.5 * row_sp * c
    return [row_sp, col_sp], list(iop), [float(v) for v in new_ipp]


def _window(source: Dataset | None, window: tuple[float, float] | None) -> tuple[float, float]:
    if window is not None:
        return float(window[0]), float(window[1])
    if source is not None and "WindowCenter" in source and "WindowWidth" in source:
        center, width = source.WindowCenter, source.WindowWidth
        center = center[0] if isinstance(center, SequenceABC) and not isinstance(center, str) else center
        width = width[0] if isinstance(width, SequenceABC) and not isinstance(width, str) else width
        try:
            if float(width) > 0:
                return float(center), float(width)
        except (TypeError, ValueError):
            pass
    return DEFAULT_WINDOW


def _synthetic_source(reference: CTSlice | CTSeries) -> Dataset:
    """Patient/study modules for images without a DICOM source (phantoms).

    The UIDs derive from the source images, so every series written from one phantom joins one study."""
    hu = np.ascontiguousarray(reference.hu, dtype=np.float32)
    content = hu.tobytes() + repr((hu.shape, _source_spacing(reference))).encode()
    return synthetic_source(content, "PHANTOM", "Synthetic phantom", patient_name="PHANTOM^SYNTHETIC")


def synthetic_source(content: bytes, label: str, description: str, patient_name: str | None = None) -> Dataset:
    """Patient/study modules for images of a source that is not DICOM and names no patient (a measured scan).

    Parameters
    ----------
    content : bytes identifying the source (e.g. its sinogram); the study and frame-of-reference UIDs derive
        from them, so every series written from one source joins one study.
    label : PatientID and StudyID (uppercase ASCII, no identity), e.g. ``"MEASURED"``.
    description : StudyDescription (truncated to 64 characters).
    patient_name : PatientName; default ``"<label>^ANONYMOUS"``.

    Returns
    -------
    A header to use as ``CTSlice.dataset`` of the reference passed to :func:`write_series`.
    """
    digest = hashlib.sha256(content).hexdigest()
    ds = Dataset()
    ds.PatientName = patient_name or f"{label}^ANONYMOUS"
    ds.PatientID = label
    ds.StudyInstanceUID = generate_uid(entropy_srcs=["study", digest])
    ds.FrameOfReferenceUID = generate_uid(entropy_srcs=["frame", digest])
    ds.StudyID = label[:16]
    ds.StudyDescription = str(description)[:64]
    return ds


def _slug(text: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")
    return slug[:40] or "series"


def write_series(out_dir: str | os.PathLike, images_hu: Any, reference: CTSlice | CTSeries,
                 description: str | Provenance, anonymize: bool | Anonymizer = False, derivation: str | None = None,
                 window: tuple[float, float] | None = None, series_number: int | None = None,
                 same_study: bool = False) -> list[Path]:
    """Write images as a derived CT series (one file per slice), marked as a research reconstruction.

    Parameters
    ----------
    out_dir : output folder (created if missing).
    images_hu : (n, H, W) or (H, W) images in HU (numpy array or torch tensor). If (H, W) differs
        from the source, PixelSpacing and ImagePositionPatient are adjusted to keep the field of view.
    reference : the CTSlice (n = 1) or CTSeries (n slices) the images derive from. Its patient and
        frame-of-reference modules are copied (unless ``anonymize``) and each slice references its source SOP
        instance (SourceImageSequence, ReferencedImageSequence, the Common Instance Reference module).
    description : a :class:`data.Provenance` (method, views, simulated or measured, fit): SeriesDescription,
        ImageComments, DerivationDescription and DerivationCode follow from it (:mod:`data.dicom_marking`); or a
        plain SeriesDescription such as ``"LRNN 60 views"`` (``", RESEARCH"`` is appended when it fits).
    anonymize : de-identify following DICOM PS3.15 Annex E basic profile (see :mod:`data.anonymize`).
        ``True`` uses a fresh key (a pseudonymous identity shared only by this call's files); pass one
        :class:`data.Anonymizer` to every call whose series must show the same pseudonymous patient and study.
    derivation : DerivationDescription; default the research sentence of ``description``.
    window : (center, width) in HU; default the source window, else (40, 400).
    series_number : SeriesNumber; default source SeriesNumber + 1000, else 1000. Give each derived series
        of one study its own number (the callers number their methods).
    same_study : put the series into the source's study (its StudyInstanceUID, description, accession). Default
        False: a research study of its own, one per source study (:func:`data.dicom_marking.research_study_uid`),
        with the same patient (unless ``anonymize``), frame of reference and study date.

    Returns
    -------
    Paths of the written files, in slice order. The SeriesInstanceUID and SOPInstanceUIDs are always new.
    """
    images = _as_images(images_hu)
    refs = _references(reference, images.shape[0])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    synthetic = _synthetic_source(reference)
    mark = marking(description, derivation)
    now = _dt.datetime.now()
    series = _DerivedSeries(
        uid=generate_uid(), number=_series_number(series_number, refs[0][0] if refs[0][0] is not None else synthetic),
        mark=mark, date=now.strftime("%Y%m%d"), time=now.strftime("%H%M%S.%f"), window=window,
        same_study=bool(same_study))
    anonymizer = anonymize if isinstance(anonymize, Anonymizer) else (Anonymizer() if anonymize else None)
    stem = f"{_slug(mark.series_description)}_{hashlib.sha1(series.uid.encode()).hexdigest()[:8]}"
    paths: list[Path] = []
    for i, (image, ref) in enumerate(zip(images, refs, strict=True)):
        ds = _derived_instance(series, i + 1, image, ref, synthetic, _source_spacing(reference))
        if anonymizer is not None:
            anonymizer.apply(ds)
            if not series.same_study:  # our own text, not the source's: the research study keeps saying so
                ds.StudyDescription, ds.StudyID = RESEARCH_STUDY, RESEARCH_STUDY_ID
        path = out / f"{stem}_{i + 1:04d}.dcm"
        with atomic_open(path) as stream:
            pydicom.dcmwrite(stream, ds, enforce_file_format=True)
        paths.append(path)
    return paths


def _derived_instance(series: _DerivedSeries, number: int, image: np.ndarray,
                      ref: tuple[Dataset | None, int | None, np.ndarray], synthetic: Dataset,
                      src_spacing: tuple[float, float]) -> Dataset:
    """Instance ``number`` (1-based) of ``series``: HU ``image`` (H, W) derived from ``ref`` (source header,
    frame, source HU image; ``synthetic`` stands in for a missing header), ``src_spacing`` (row, col) in mm."""
    source, frame, src_hu = ref
    src = source if source is not None else synthetic
    ds = _new_instance()
    _copy_patient_and_study(ds, src, synthetic)
    source_study = ds.StudyInstanceUID
    if not series.same_study:
        make_research_study(ds, src.get("StudyDescription"))
    _set_series_and_equipment(ds, series)
    _copy_acquisition(ds, src, frame)
    _set_image(ds, series, number, source, frame)
    mark_image(ds, series.mark)
    if source is not None:
        reference_source(ds, source, source_study)
    spacing, iop, ipp = _image_plane(source, frame, src_hu.shape, src_spacing, image.shape)
    ds.PixelSpacing = [_ds_number(v) for v in spacing]
    ds.ImageOrientationPatient = [_ds_number(v) for v in iop]
    ds.ImagePositionPatient = [_ds_number(v) for v in ipp]
    if source is not None and "SliceLocation" in source:
        ds.SliceLocation = source.SliceLocation
    _set_pixels(ds, image, _window(source, series.window))
    return ds


@dataclass(frozen=True)
class _DerivedSeries:
    """What every instance of one derived series shares."""

    uid: str
    number: int
    mark: Marking
    date: str
    time: str
    window: tuple[float, float] | None
    same_study: bool


def _series_number(requested: int | None, source: Dataset) -> int:
    """The requested SeriesNumber, else the source's + 1000, else 1000."""
    if requested is not None:
        return requested
    try:
        return int(source.get("SeriesNumber")) + 1000
    except (TypeError, ValueError):
        return 1000


def _new_instance() -> Dataset:
    """An empty CT Image Storage instance with its file meta information and a fresh SOPInstanceUID."""
    sop_uid = generate_uid()
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta.ImplementationVersionName = "SPARSECT_010"
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_uid
    return ds


def _copy_patient_and_study(ds: Dataset, src: Dataset, synthetic: Dataset) -> None:
    """Patient, general study and frame-of-reference modules from the source (type 2 attributes empty if absent)."""
    if "SpecificCharacterSet" in src:
        ds.SpecificCharacterSet = src.SpecificCharacterSet
    for keyword in _PATIENT + _STUDY:
        if keyword in src:
            setattr(ds, keyword, src[keyword].value)
    for keyword in _TYPE2:
        if keyword not in ds:
            setattr(ds, keyword, "")
    if "StudyInstanceUID" not in ds or not ds.StudyInstanceUID:
        ds.StudyInstanceUID = synthetic.StudyInstanceUID
    ds.FrameOfReferenceUID = src.get("FrameOfReferenceUID") or synthetic.FrameOfReferenceUID
    ds.PositionReferenceIndicator = ""


def _set_series_and_equipment(ds: Dataset, series: _DerivedSeries) -> None:
    ds.Modality = "CT"
    ds.SeriesInstanceUID = series.uid
    ds.SeriesNumber = series.number
    ds.SeriesDescription = series.mark.series_description
    ds.SeriesDate, ds.SeriesTime = series.date, series.time
    ds.Manufacturer = "sparsect"
    ds.ManufacturerModelName = "sparsect"
    ds.SoftwareVersions = SOFTWARE


def _copy_acquisition(ds: Dataset, src: Dataset, frame: int | None) -> None:
    """The source's acquisition attributes (CT image module), type 2 ones empty when unknown."""
    for keyword in _ACQUISITION:
        if keyword in src and (src[keyword].value not in (None, "") or keyword == "Laterality"):
            setattr(ds, keyword, src[keyword].value)
    thickness = lookup(src, 0 if frame is None else frame - 1, "PixelMeasuresSequence", "SliceThickness")
    ds.SliceThickness = "" if thickness is None else thickness
    if "KVP" not in ds:
        ds.KVP = ""
    if "BodyPartExamined" not in ds and "Laterality" not in ds:
        ds.Laterality = ""  # type 2C: laterality unknown
    if "PatientPosition" not in ds:
        ds.PatientPosition = ""
    ds.AcquisitionNumber = ""


def _set_image(ds: Dataset, series: _DerivedSeries, number: int, source: Dataset | None, frame: int | None) -> None:
    """General image module: derived image type, numbering, dates and the references to the source instance."""
    ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
    ds.InstanceNumber = number
    ds.ContentDate, ds.ContentTime = series.date, series.time
    ds.InstanceCreationDate, ds.InstanceCreationTime = series.date, series.time
    if source is None or "SOPInstanceUID" not in source:
        return
    items = []
    for _ in range(2):  # one item per sequence: a Dataset belongs to one sequence only
        item = Dataset()
        item.ReferencedSOPClassUID = source.get("SOPClassUID", CTImageStorage)
        item.ReferencedSOPInstanceUID = source.SOPInstanceUID
        if frame is not None:
            item.ReferencedFrameNumber = frame
        items.append(item)
    ds.SourceImageSequence = Sequence([items[0]])
    ds.ReferencedImageSequence = Sequence([items[1]])


def _set_pixels(ds: Dataset, image: np.ndarray, window: tuple[float, float]) -> None:
    """Image pixel module: signed 16-bit HU with rescale slope/intercept and the display window."""
    stored, slope, intercept = _encode(image)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = stored.shape
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleIntercept = _ds_number(intercept)
    ds.RescaleSlope = _ds_number(slope)
    ds.RescaleType = "HU"
    center, width = window
    ds.WindowCenter = _ds_number(center)
    ds.WindowWidth = _ds_number(width)
    ds.PixelData = stored.astype("<i2").tobytes()


def _source_spacing(reference: CTSlice | CTSeries) -> tuple[float, float]:
    return float(reference.spacing[0]), float(reference.spacing[1])


__all__ = ["Provenance", "synthetic_source", "write_series"]
