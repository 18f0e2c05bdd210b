"""CT data for sparsect: DICOM in, simulated sparse-view sinograms, DICOM out.

Reading: :func:`scan`, :func:`scan_bytes`, :func:`load`, :func:`load_bytes`, :func:`load_slice`,
:func:`load_slice_bytes` give :class:`CTSeries` / :class:`CTSlice` with HU images (padding and values
below -1024 HU set to ``AIR_HU`` = -1024). Problems raise :class:`DicomError` subclasses.
Physics: :func:`hu_to_mu`, :func:`mu_to_hu`, :func:`simulate` (honest by default, see :data:`SIMULATIONS`),
:func:`simulate_counts`, :func:`area_average`; ``simulate(..., callback=, stop=)`` reports progress and raises
:class:`SimulationStopped` on a stop request.
Writing: :func:`write_series` (derived CT series, optional de-identification with a keyed
:class:`Anonymizer`); :mod:`data.atomic` (the atomic-write helper every writer uses).
Samples: :func:`samples`, :func:`load_sample`, :func:`shepp_logan_hu`.
PACS: :class:`DicomWeb` (QIDO-RS search, WADO-RS retrieve/pull, STOW-RS store; credentials from the
environment, :class:`Credentials`); failures raise :class:`DicomWebError`.
Measured scans: :func:`load_scan` (NumPy, HDF5 Data Exchange, TIFF stacks, HTC2022 .mat, with a JSON geometry
file) gives a :class:`MeasuredScan`; :func:`flat_dark_correct`, :func:`estimate_center_offset`,
:func:`center_disagreement` (a warning when the rotation centre a scan carries disagrees with its data's).
Problems raise :class:`ScanError`.
"""

from .anonymize import Anonymizer
from .dicom_read import load, load_bytes, load_slice, load_slice_bytes, scan, scan_bytes
from .dicom_write import write_series
from .dicomweb import Credentials, DicomWeb
from .errors import (
    AmbiguousSeriesError,
    CorruptDicomError,
    DicomError,
    DicomNotFoundError,
    DicomWebError,
    NoCTSeriesError,
    NoPixelDataError,
    NotCTError,
    NotDicomError,
    ScanError,
    ScanNotFoundError,
    UnsupportedDicomError,
)
from .hu import AIR_HU, MU_WATER, hu_to_mu, mu_to_hu
from .measured import MeasuredScan, flat_dark_correct, load_scan, load_scan_bytes, load_tiff_bytes
from .measured_center import center_disagreement, estimate_center_offset
from .measured_formats import tiff_rows
from .phantoms import shepp_logan_hu
from .regrid import area_average
from .samples import UnknownSampleError, load_sample, samples
from .series import CTSeries, CTSlice, ScanResult, resample
from .simulate import (
    COUNT_GUARD,
    SIMULATIONS,
    SUB_RAYS,
    Simulation,
    SimulationStopped,
    counts_to_line_integrals,
    simulate,
    simulate_counts,
)

__all__ = [
    "AIR_HU", "COUNT_GUARD", "MU_WATER", "SIMULATIONS", "SUB_RAYS", "Anonymizer",
    "AmbiguousSeriesError", "CorruptDicomError", "DicomError", "DicomNotFoundError", "DicomWebError",
    "NoCTSeriesError", "NoPixelDataError", "NotCTError", "NotDicomError", "ScanError", "ScanNotFoundError",
    "UnknownSampleError", "UnsupportedDicomError",
    "CTSeries", "CTSlice", "Credentials", "DicomWeb", "MeasuredScan", "ScanResult", "Simulation",
    "SimulationStopped",
    "area_average", "center_disagreement", "counts_to_line_integrals", "estimate_center_offset", "flat_dark_correct",
    "hu_to_mu", "load", "load_bytes", "load_sample", "load_scan", "load_scan_bytes", "load_slice", "load_slice_bytes",
    "mu_to_hu", "load_tiff_bytes", "resample", "samples", "scan", "scan_bytes", "shepp_logan_hu", "simulate",
    "simulate_counts", "tiff_rows", "write_series",
]
