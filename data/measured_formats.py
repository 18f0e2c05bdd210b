"""Readers of measured projection data, one per file format (used by :func:`data.load_scan`).

- ``.npy``: one array of line integrals, (views, bins) or (views, rows, bins); the geometry comes from the
  JSON file.
- ``.npz``: ``sinogram`` (line integrals) or ``projections`` (raw intensities) with ``flat`` and
  optionally ``dark``; ``angles`` (radians) or ``angles_deg``; optionally the scalars ``beam``,
  ``detector_pixel_mm``, ``center_offset``, ``source_distance_mm``, ``detector_distance_mm``.
- HDF5 Data Exchange (``.h5``, ``.hdf5``, ``.hdf``, ``.dxf``): raw intensities ``/exchange/data`` (views,
  rows, columns), flat fields ``/exchange/data_white``, dark fields ``/exchange/data_dark`` (optional),
  angles ``/exchange/theta`` (degrees unless its ``units`` attribute says radians).
- TIFF: a folder of ``.tif``/``.tiff`` files (each one or more pages), or the same files uploaded together
  (:func:`read_tiff_bytes`): names starting with ``flat`` or ``white`` are flat fields, ``dark`` dark fields,
  the rest projections in natural name order (``p2`` before ``p10``), one page per view. Angles come from
  the JSON file.
- Helsinki Tomography Challenge 2022 ``.mat`` (MATLAB v5, scipy.io): the struct ``CtDataFull`` or
  ``CtDataLimited`` with ``sinogram`` (views, bins; already flat-field corrected, log transformed and
  centred by its authors) and ``parameters`` (``angles`` in degrees, ``distanceSourceOrigin``,
  ``distanceSourceDetector`` and ``pixelSizePost`` in mm, ``numDetectorsPost``); a fan beam.

A 3D stack gives the sinogram of one detector row (default the middle one).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import h5py
import numpy as np
import tifffile

from .errors import ScanError
from .measured_geometry import parse_geometry

NUMPY_SUFFIXES = (".npy", ".npz")
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".dxf")
TIFF_SUFFIXES = (".tif", ".tiff")
MAT_SUFFIXES = (".mat",)
_NPZ_GEOMETRY = ("beam", "detector_pixel_mm", "center_offset", "source_distance_mm", "detector_distance_mm")
_NPZ_KEYS = ("sinogram", "projections", "flat", "dark", "angles", "angles_deg", *_NPZ_GEOMETRY)


@dataclass
class FoundScan:
    """What a reader found: line integrals (``sinogram``) or raw ``projections`` with ``flat``/``dark``,
    the geometry fields the file holds (canonical keys of :func:`data.measured_geometry.parse_geometry`)."""

    format: str
    sinogram: np.ndarray | None = None
    projections: np.ndarray | None = None
    flat: np.ndarray | None = None
    dark: np.ndarray | None = None
    geometry: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _row_index(rows: int, row: int | None, what: str) -> int:
    if row is None:
        return rows // 2
    if int(row) != row or not 0 <= row < rows:
        raise ScanError(f"row {row!r} is outside the {rows} detector rows of {what} (0 to {rows - 1})")
    return int(row)


def _sinogram_of(array: np.ndarray, row: int | None, what: str, notes: list[str] | None = None) -> np.ndarray:
    """(views, bins) of a 2D array, or row ``row`` of a 3D (views, rows, bins) stack."""
    array = np.asarray(array)
    if array.dtype.kind not in "uif":
        raise ScanError(f"{what} must hold real numbers, got dtype {array.dtype}")
    if array.ndim == 2:
        if row not in (None, 0):
            raise ScanError(f"{what} has one detector row, so row {row!r} does not exist")
        return array
    if array.ndim == 3:
        index = _row_index(array.shape[1], row, what)
        if notes is not None:
            notes.append(f"detector row {index} of {array.shape[1]}")
        return array[:, index, :]
    raise ScanError(f"{what} must be 2D (views, bins) or 3D (views, rows, bins), got shape {array.shape}")


def _field_of(array: np.ndarray, row: int | None, rows: int | None, what: str) -> np.ndarray:
    """A flat/dark field (n, bins) from (bins,), (n, bins) or, with a 3D stack, (n, rows, bins)."""
    array = np.asarray(array, dtype=np.float64)
    if rows is None:
        return array
    if array.ndim != 3 or array.shape[1] != rows:
        raise ScanError(f"{what} must be (n, {rows}, bins) like the projections, got shape {array.shape}")
    return array[:, _row_index(rows, row, what), :]


def _scalar(value: np.ndarray, key: str) -> Any:
    value = np.asarray(value)
    if value.size != 1:
        raise ScanError(f"{key} must be a single value, got shape {value.shape}")
    return value.reshape(()).item()


def read_numpy(source: Path | BinaryIO, name: str, row: int | None) -> FoundScan:
    try:
        loaded = np.load(source, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ScanError(f"{name} is not a readable NumPy file: {exc}") from None
    if isinstance(loaded, np.ndarray):
        notes: list[str] = []
        return FoundScan("npy", sinogram=_sinogram_of(loaded, row, name, notes), notes=notes)
    with loaded:
        arrays = {key: loaded[key] for key in loaded.files}
    unknown = sorted(set(arrays) - set(_NPZ_KEYS))
    if unknown:
        raise ScanError(f"{name} has unknown array {', '.join(map(repr, unknown))}; known: {', '.join(_NPZ_KEYS)}")
    if ("sinogram" in arrays) == ("projections" in arrays):
        raise ScanError(f"{name} must hold either 'sinogram' (line integrals) or 'projections' (raw "
                        "intensities, with 'flat' and optionally 'dark')")
    geometry = {key: _scalar(arrays[key], key) for key in _NPZ_GEOMETRY if key in arrays}
    for key in ("angles", "angles_deg"):
        if key in arrays:
            geometry["angles_rad" if key == "angles" else key] = np.asarray(arrays[key]).reshape(-1)
    found = FoundScan("npz", geometry=parse_geometry(geometry))
    if "sinogram" in arrays:
        if "flat" in arrays or "dark" in arrays:
            raise ScanError(f"{name}: 'sinogram' holds line integrals, which take no flat or dark field; "
                            "store raw intensities as 'projections'")
        found.sinogram = _sinogram_of(arrays["sinogram"], row, f"{name} 'sinogram'", found.notes)
        return found
    if "flat" not in arrays:
        raise ScanError(f"{name} holds raw 'projections' but no 'flat' field to normalise them by")
    raw = np.asarray(arrays["projections"])
    rows = raw.shape[1] if raw.ndim == 3 else None
    found.projections = _sinogram_of(raw, row, f"{name} 'projections'", found.notes)
    found.flat = _field_of(arrays["flat"], row, rows, f"{name} 'flat'")
    found.dark = None if "dark" not in arrays else _field_of(arrays["dark"], row, rows, f"{name} 'dark'")
    return found


def _theta_radians(dataset: Any, notes: list[str]) -> np.ndarray:
    theta = np.asarray(dataset[()], dtype=np.float64).reshape(-1)
    units = dataset.attrs.get("units", b"")
    units = (units.decode() if isinstance(units, bytes) else str(units)).strip().lower()
    if units in ("rad", "radian", "radians"):
        return theta
    if units not in ("", "deg", "degree", "degrees"):
        raise ScanError(f"/exchange/theta has units {units!r}; expected degrees or radians")
    if not units:
        notes.append("/exchange/theta has no units attribute: read as degrees (the Data Exchange default)")
    return np.radians(theta)


def read_hdf5(source: Path | BinaryIO, name: str, row: int | None) -> FoundScan:
    try:
        handle = h5py.File(source, "r")
    except OSError as exc:
        raise ScanError(f"{name} is not a readable HDF5 file: {exc}") from None
    with handle:
        if "exchange/data" not in handle:
            raise ScanError(f"{name} has no /exchange/data: not a Data Exchange file")
        if "exchange/data_white" not in handle:
            raise ScanError(f"{name} has no /exchange/data_white (flat fields) to normalise the projections by")
        data = handle["exchange/data"]
        found = FoundScan("hdf5")
        if data.ndim == 3:
            index = _row_index(data.shape[1], row, f"{name} /exchange/data")
            found.notes.append(f"detector row {index} of {data.shape[1]}")

            def read(name: str) -> np.ndarray:
                dataset = handle[name]
                if dataset.ndim != 3 or dataset.shape[1] != data.shape[1]:
                    raise ScanError(f"{name} /{name} must be (n, {data.shape[1]}, bins), got {dataset.shape}")
                return np.asarray(dataset[:, index, :])
        else:
            if row not in (None, 0):
                raise ScanError(f"{name} /exchange/data has one detector row, so row {row!r} does not exist")

            def read(name: str) -> np.ndarray:  # 2D projections; flat and dark fields (bins,) or (n, bins)
                return np.asarray(handle[name][()])
        found.projections = read("exchange/data")
        found.flat = read("exchange/data_white")
        if "exchange/data_dark" in handle:
            found.dark = read("exchange/data_dark")
        if "exchange/theta" in handle:
            found.geometry["angles"] = _theta_radians(handle["exchange/theta"], found.notes)
    return found


#: A TIFF file of a stack: its name (which says flat, dark or projection, and the order) and where it is
#: (a path, or the bytes of an upload as a stream).
TiffSource = tuple[str, "Path | BinaryIO"]


def _natural_key(name: str) -> list[Any]:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _tiff_rows(files: list[TiffSource], row: int | None, shape: list[tuple[int, int]]) -> Iterator[np.ndarray]:
    """One detector row of every page of ``files``; ``shape`` collects the page shape to check they agree."""
    for name, source in files:
        try:
            with tifffile.TiffFile(source) as tif:
                if not len(tif.pages):  # a truncated file opens with no pages: it must not drop a view silently
                    raise ScanError(f"{name} is not a readable TIFF file: it holds no image")
                for page in tif.pages:
                    image = np.asarray(page.asarray())
                    if image.ndim != 2:
                        raise ScanError(f"{name} has a page of shape {image.shape}; expected 2D grayscale")
                    if not shape:
                        shape.append(image.shape)
                    if image.shape != shape[0]:
                        raise ScanError(f"{name} has a page of shape {image.shape}, the first projection "
                                        f"{shape[0]}: all images must have the same size")
                    yield image[_row_index(image.shape[0], row, name)]
        except (tifffile.TiffFileError, OSError, ValueError) as exc:
            raise ScanError(f"{name} is not a readable TIFF file: {exc}") from None


def _tiff_stack(files: list[TiffSource], row: int | None, where: str) -> FoundScan:
    """Projections, flat and dark fields of the TIFF files of one stack (``where`` names it in messages)."""
    files = sorted(files, key=lambda file: _natural_key(file[0]))
    flats = [f for f in files if f[0].lower().startswith(("flat", "white"))]
    darks = [f for f in files if f[0].lower().startswith("dark")]
    projections = [f for f in files if f not in flats and f not in darks]
    if not projections:
        raise ScanError(f"no TIFF projections in {where}")
    if not flats:
        raise ScanError(f"no flat field in {where}: add flat*.tif (and dark*.tif) next to the projections")
    shape: list[tuple[int, int]] = []
    found = FoundScan("tiff", projections=np.stack(list(_tiff_rows(projections, row, shape))))
    found.flat = np.stack(list(_tiff_rows(flats, row, shape)))
    found.dark = np.stack(list(_tiff_rows(darks, row, shape))) if darks else None
    found.notes.append(f"{found.projections.shape[0]} projections from {len(projections)} files, detector row "
                       f"{_row_index(shape[0][0], row, where)} of {shape[0][0]}")
    return found


def read_tiff(path: Path, row: int | None) -> FoundScan:
    if not path.is_dir():
        raise ScanError(f"{path.name} is a single TIFF file, which holds no flat field: put the projections "
                        "with flat*.tif (and dark*.tif) files in one folder and give the folder")
    files = [(p.name, p) for p in path.iterdir() if p.is_file() and p.suffix.lower() in TIFF_SUFFIXES]
    return _tiff_stack(files, row, repr(str(path)))


def read_tiff_bytes(files: Sequence[tuple[str, bytes]], row: int | None) -> FoundScan:
    """:func:`read_tiff` of uploaded TIFF files held in memory: (name, bytes) of every projection, flat
    (``flat*``/``white*``) and dark (``dark*``) file; files of other suffixes are refused."""
    others = [name for name, _ in files if Path(name).suffix.lower() not in TIFF_SUFFIXES]
    if others:
        raise ScanError(f"{Path(others[0]).name} is not a TIFF file: a TIFF stack takes only .tif/.tiff files")
    return _tiff_stack([(Path(name).name, io.BytesIO(content)) for name, content in files], row, "the upload")


def tiff_rows(name: str, content: bytes) -> int:
    """The number of detector rows (the image height) of the first page of one TIFF file held in memory."""
    try:
        with tifffile.TiffFile(io.BytesIO(content)) as tif:
            shape = tif.pages[0].shape
    except (tifffile.TiffFileError, OSError, ValueError, IndexError) as exc:
        raise ScanError(f"{Path(name).name} is not a readable TIFF file: {exc}") from None
    if len(shape) != 2:
        raise ScanError(f"{Path(name).name} has a page of shape {shape}; expected 2D grayscale")
    return int(shape[0])


def _htc_struct(values: dict[str, Any], name: str) -> dict[str, Any]:
    for key in ("CtDataFull", "CtDataLimited"):
        if isinstance(values.get(key), dict):
            return values[key]
    structs = [v for k, v in values.items() if not k.startswith("__") and isinstance(v, dict)
               and {"sinogram", "parameters"} <= set(v)]
    if len(structs) != 1:
        raise ScanError(f"{name} holds no Helsinki Tomography Challenge struct (CtDataFull or CtDataLimited "
                        "with sinogram and parameters)")
    return structs[0]


def _parameter(parameters: dict[str, Any], name: str, *keys: str) -> float:
    for key in keys:
        if key in parameters:
            return float(np.asarray(parameters[key], dtype=np.float64).reshape(-1)[0])
    raise ScanError(f"{name}: parameters lack {' or '.join(keys)}")


def read_htc_mat(source: Path | BinaryIO, name: str, row: int | None) -> FoundScan:
    import scipy.io  # 0.4 s to import (measured), and only HTC2022 .mat files need it

    try:
        values = scipy.io.loadmat(source, simplify_cells=True)
    except NotImplementedError:
        raise ScanError(f"{name} is a MATLAB v7.3 file; save it with -v7 (the challenge's format)") from None
    except (ValueError, OSError, TypeError) as exc:
        raise ScanError(f"{name} is not a readable MATLAB file: {exc}") from None
    struct = _htc_struct(values, name)
    parameters = struct.get("parameters")
    if not isinstance(parameters, dict):
        raise ScanError(f"{name}: the struct has no parameters")
    unit = str(parameters.get("distanceUnit", "mm")).strip().lower()
    if unit != "mm":
        raise ScanError(f"{name}: distanceUnit is {unit!r}; only mm is supported")
    sinogram = _sinogram_of(np.asarray(struct.get("sinogram")), row, f"{name} sinogram")
    count = parameters.get("numDetectorsPost", parameters.get("numDetectors"))
    if count is not None and int(np.asarray(count).reshape(-1)[0]) != sinogram.shape[1]:
        raise ScanError(f"{name}: numDetectorsPost is {count} but the sinogram has {sinogram.shape[1]} bins")
    source = _parameter(parameters, name, "distanceSourceOrigin")
    detector = _parameter(parameters, name, "distanceSourceDetector") - source
    if "pixelSizePost" in parameters or "pixelSize" not in parameters:
        pixel = _parameter(parameters, name, "pixelSizePost")
    else:
        pixel = _parameter(parameters, name, "pixelSize") * _parameter(parameters, name, "binningPost")
    if "angles" not in parameters:
        raise ScanError(f"{name}: parameters lack angles")
    geometry = parse_geometry({"beam": "fan", "angles_deg": np.asarray(parameters["angles"]).reshape(-1),
                               "source_distance_mm": source, "detector_distance_mm": detector,
                               "detector_pixel_mm": pixel, "center_offset": 0.0})
    return FoundScan("htc2022", sinogram=sinogram, geometry=geometry,
                     notes=["Helsinki Tomography Challenge 2022 sinogram (corrected and centred by its authors)"])


def read_scan_file(path: Path, row: int | None) -> FoundScan:
    """Dispatch on the suffix (a folder is a TIFF stack)."""
    suffix = path.suffix.lower()
    if path.is_dir():
        return read_tiff(path, row)
    if suffix in TIFF_SUFFIXES:
        return read_tiff(path, row)
    return _read_one(path, path.name, row)


def _read_one(source: Path | BinaryIO, name: str, row: int | None) -> FoundScan:
    suffix = Path(name).suffix.lower()
    for suffixes, reader in ((NUMPY_SUFFIXES, read_numpy), (HDF5_SUFFIXES, read_hdf5), (MAT_SUFFIXES, read_htc_mat)):
        if suffix in suffixes:
            return reader(source, name, row)
    known = ", ".join(NUMPY_SUFFIXES + HDF5_SUFFIXES + TIFF_SUFFIXES + MAT_SUFFIXES)
    raise ScanError(f"{name}: unknown scan format {suffix or '(no suffix)'!r}; give {known} or a folder of TIFFs")


def read_scan_bytes(name: str, content: bytes, row: int | None) -> FoundScan:
    """Like :func:`read_scan_file` for one uploaded file held in memory (nothing is written to disk); TIFF
    stacks, being folders, are not supported this way."""
    if Path(name).suffix.lower() in TIFF_SUFFIXES:
        raise ScanError(f"{name}: a TIFF stack is a folder of files with its flat fields; read it with "
                        "sparsect reconstruct --scan FOLDER, or convert it to .npz")
    return _read_one(io.BytesIO(content), name, row)


__all__ = ["FoundScan", "TiffSource", "read_hdf5", "read_htc_mat", "read_numpy", "read_scan_bytes", "read_scan_file",
           "read_tiff", "read_tiff_bytes", "tiff_rows"]
