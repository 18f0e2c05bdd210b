"""Exceptions raised by the :mod:`data` package.

Measured scans (:mod:`data.measured`) raise :class:`ScanError`, a ``ValueError``.

Every problem with an input path or DICOM object raises a subclass of :class:`DicomError`, so callers
(CLI, Streamlit app) can catch a single type and show ``str(err)``, one line saying what is wrong with
which file. The long list of what is supported (:data:`SUPPORTED`) is for help texts, said once, never
repeated in every message or batch skip line. A missing path raises :class:`DicomNotFoundError`, which is
both a ``DicomError`` and a built-in ``FileNotFoundError``.
"""

from __future__ import annotations

SUPPORTED = (
    "Supported input: CT images (CT Image Storage, Enhanced CT, Legacy Converted Enhanced CT, or any "
    "grayscale image with Modality CT), uncompressed or compressed with JPEG baseline/extended/lossless, "
    "JPEG-LS, JPEG 2000, RLE or Deflate; given as a .dcm file, a folder (searched recursively) or a .zip "
    "archive."
)
#: The one-sentence pointer that ends a "nothing usable" error.
INPUT_HINT = "Usable input: CT images as .dcm files, folders (searched recursively) or .zip archives."


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
    """Several CT series were found where exactly one was expected.

    ``where`` (the path), ``labels`` (one description per series, with its SeriesInstanceUID) and ``uids``
    let a caller say how to choose in its own terms: :meth:`advice` ``("with --series UID")``.
    """

    def __init__(self, where: str, labels: list[str], uids: list[str]) -> None:
        self.where, self.labels, self.uids = str(where), list(labels), list(uids)
        super().__init__(self.advice("by its SeriesInstanceUID"))

    def __reduce__(self) -> tuple:  # picklable (worker processes) despite the custom signature
        return type(self), (self.where, self.labels, self.uids)

    def advice(self, how: str) -> str:
        """The message, saying how to choose one series (``how``, e.g. "with --series UID")."""
        return (f"{self.where} holds {len(self.labels)} CT series: {'; '.join(self.labels)}. "
                f"Choose one {how} or point to its folder.")


class ScanError(ValueError):
    """A measured scan (:func:`data.load_scan`) or its geometry cannot be used; the message says what and how
    to fix it."""


class ScanNotFoundError(ScanError, FileNotFoundError):
    """The scan or geometry path does not exist."""


class DicomWebError(Exception):
    """A DICOMweb request failed (network, HTTP 4xx/5xx, refused instances) or its settings are wrong; the
    one-line message names the operation and server and never holds credentials."""


__all__ = [
    "INPUT_HINT",
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
