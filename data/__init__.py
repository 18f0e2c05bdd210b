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

from sparsect.lazy_exports import lazy_exports

#: submodule -> the public names it defines (imported on first use)
_EXPORTS = {
    "anonymize": ["Anonymizer"],
    "dicom_read": ["load", "load_bytes", "load_slice", "load_slice_bytes", "scan", "scan_bytes"],
    "dicom_write": ["write_series"],
    "dicomweb": ["Credentials", "DicomWeb"],
    "errors": [
        "AmbiguousSeriesError", "CorruptDicomError", "DicomError", "DicomNotFoundError", "DicomWebError",
        "NoCTSeriesError", "NoPixelDataError", "NotCTError", "NotDicomError", "ScanError", "ScanNotFoundError",
        "UnsupportedDicomError",
    ],
    "hu": ["AIR_HU", "MU_WATER", "hu_to_mu", "mu_to_hu"],
    "measured": ["MeasuredScan", "flat_dark_correct", "load_scan", "load_scan_bytes", "load_tiff_bytes"],
    "measured_center": ["center_disagreement", "estimate_center_offset"],
    "measured_formats": ["tiff_rows"],
    "phantoms": ["shepp_logan_hu"],
    "regrid": ["area_average"],
    "samples": ["UnknownSampleError", "load_sample", "samples"],
    "series": ["CTSeries", "CTSlice", "ScanResult", "resample"],
    "simulations": ["SIMULATIONS"],
    "simulate": [
        "COUNT_GUARD", "SUB_RAYS", "Simulation", "SimulationStopped", "counts_to_line_integrals",
        "simulate", "simulate_counts",
    ],
}
lazy_exports(__name__, _EXPORTS)
__all__ = sorted(name for names in _EXPORTS.values() for name in names)
