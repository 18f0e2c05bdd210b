"""Exceptions raised by the :mod:`data` package.

Measured scans (:mod:`data.measured`) raise :class:`ScanError`, a ``ValueError``.

Every problem with an input path or DICOM object raises a subclass of :class:`DicomError`, so callers
(CLI, Streamlit app) can catch a single type and show ``str(err)``, which always says what is wrong and
what is supported. A missing path raises :class:`DicomNotFoundError`, which is both a ``DicomError``
and a built-in ``FileNotFoundError``.
"""

from __future__ import annotations

SUPPORTED = (
    "Supported input: CT images (CT Image Storage, Enhanced CT, Legacy Converted Enhanced CT, or any "
    "grayscale image with Modality CT), uncompressed or compressed with JPEG baseline/extended/lossless, "
    "JPEG-LS, JPEG 2000, RLE or Deflate; given as a .dcm file, a folder (searched recursively) or a .zip "
    "archive."
)


class DicomError(Exception):
    """Base class: the input cannot be used as CT data."""


class DicomNotFoundError(DicomError, FileNotFoundError):
    """The given path does not exist."""


class NotDicomError(DicomError):
    """The file is not a DICOM file (no DICM header and not readable as a bare DICOM data set)."""


class NotCTError(DicomError):
    """A valid DICOM object that is not a CT image (other modality, DICOMDIR, report, ...)."""


class NoPixelDataError(DicomError):
    """A DICOM object without pixel data."""


class UnsupportedDicomError(DicomError):
    """A CT object we cannot use: localizer, colour image, undecodable transfer syntax, ..."""


class CorruptDicomError(DicomError):
    """A DICOM file that is truncated or whose pixel data cannot be decoded."""


class NoCTSeriesError(DicomError):
    """No usable CT image was found under the given path or upload."""


class AmbiguousSeriesError(DicomError):
    """Several CT series were found where exactly one was expected."""


class ScanError(ValueError):
    """A measured scan (:func:`data.load_scan`) or its geometry cannot be used; the message says what and how
    to fix it."""


class ScanNotFoundError(ScanError, FileNotFoundError):
    """The scan or geometry path does not exist."""


class DicomWebError(Exception):
    """A DICOMweb request failed (network, HTTP 4xx/5xx, refused instances) or its settings are wrong; the
    one-line message names the operation and server and never holds credentials."""


__all__ = [
    "SUPPORTED",
    "AmbiguousSeriesError",
    "CorruptDicomError",
    "DicomError",
    "DicomNotFoundError",
    "DicomWebError",
    "NoCTSeriesError",
    "NoPixelDataError",
    "NotCTError",
    "NotDicomError",
    "ScanError",
    "ScanNotFoundError",
    "UnsupportedDicomError",
]
