"""The rotation-centre check of measured scans (:func:`data.center_disagreement`): scans projected here with a
known axis position, loaded with a geometry file that states the centre right or wrong."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from skimage.data import shepp_logan_phantom
from skimage.transform import resize

from sparsect import data
from sparsect.operators import FanBeam, ParallelBeam, Radon

PIXEL_MM = 0.5


def _sinogram(kind: str, offset_half_bins: int, det: int = 96, size: int = 64) -> tuple[np.ndarray, np.ndarray, dict]:
    """Line integrals of the Shepp-Logan phantom (water-like mu, 1/mm) whose rotation axis projects
    ``offset_half_bins / 2`` bins above the detector's middle, exactly: projected onto a wider detector, then
    ``det`` bins kept off-centre. Returns (sinogram (views, det), angles in radians, geometry JSON fields
    other than the centre)."""
    mu = (resize(shepp_logan_phantom(), (size, size), order=1, anti_aliasing=True) * 0.02).astype(np.float32)
    wide = det + 16 + (offset_half_bins % 2)  # bins at k - (wide - 1) / 2: a parity change shifts by half a bin
    if kind == "parallel":
        geometry = ParallelBeam(np.arange(180) * np.pi / 180, wide, 1.0, size)
        fields = {"beam": "parallel", "detector_pixel_mm": PIXEL_MM}
    else:
        geometry = FanBeam(np.arange(240) * 2 * np.pi / 240, wide, 150.0, 75.0, 1.5, size)
        fields = {"beam": "fan", "detector_pixel_mm": 1.5 * PIXEL_MM, "source_distance_mm": 75.0,
                  "detector_distance_mm": 37.5}
    full = (Radon(geometry)(torch.from_numpy(mu).double()) * PIXEL_MM).numpy()
    first = int(round((wide - 1) / 2 - (det - 1) / 2 - offset_half_bins / 2))
    return full[:, first:first + det], geometry.angles.numpy(), fields


def _load(tmp_path, kind: str, true_half_bins: int, stated: float) -> data.MeasuredScan:
    """The scan as ``load_scan`` reads it from a .npy file and a geometry file stating ``stated`` bins."""
    sinogram, angles, fields = _sinogram(kind, true_half_bins)
    np.save(tmp_path / "scan.npy", sinogram)
    geometry = tmp_path / "geometry.json"
    geometry.write_text(json.dumps({**fields, "angles_rad": angles.tolist(), "center_offset": stated}))
    return data.load_scan(tmp_path / "scan.npy", geometry)


@pytest.mark.parametrize("kind", ["parallel", "fan"])
@pytest.mark.parametrize("true_half_bins", [0, 3])
def test_wrong_centre_in_the_geometry_file_is_reported_with_both_values(tmp_path, kind, true_half_bins):
    true = true_half_bins / 2
    scan = _load(tmp_path, kind, true_half_bins, stated=true + 2.5)  # the held-out scan's 2.5-bin error
    sinogram, notes = scan.sinogram.copy(), scan.notes
    warning = data.center_disagreement(scan)
    estimate = data.estimate_center_offset(scan)
    assert estimate == pytest.approx(true, abs=0.2)  # the data know where the axis is
    assert warning is not None and "\n" not in warning
    assert f"center_offset is {true + 2.5:.2f} detector bins" in warning
    assert f"at {round(estimate, 2) + 0.0:.2f} bins" in warning  # (never "-0.00")
    assert re.search(r"\(2\.\d\d apart, more than 0\.5\)", warning) and "--center auto" in warning
    # Nothing changed: same values, same offset, no note.
    np.testing.assert_array_equal(scan.sinogram, sinogram)
    assert scan.center_offset == true + 2.5 and scan.notes == notes


@pytest.mark.parametrize("kind", ["parallel", "fan"])
@pytest.mark.parametrize("true_half_bins", [0, 3, -5])
def test_correct_centre_gives_no_warning(tmp_path, kind, true_half_bins):
    assert data.center_disagreement(_load(tmp_path, kind, true_half_bins, stated=true_half_bins / 2)) is None


def test_tolerance_is_in_detector_bins(tmp_path):
    scan = _load(tmp_path, "parallel", 0, stated=1.0)
    assert data.center_disagreement(scan) is not None  # default 0.5 bins
    assert data.center_disagreement(scan, tolerance_bins=1.5) is None
    warning = data.center_disagreement(scan, tolerance_bins=0.25)
    assert warning is not None and "more than 0.25)" in warning and "is 1.00 detector bins" in warning
    for bad in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(data.ScanError, match="tolerance_bins must be a positive number"):
            data.center_disagreement(scan, tolerance_bins=bad)


def test_no_zero_with_a_minus_sign():
    sinogram, angles, fields = _sinogram("parallel", -5)  # axis at -2.5 bins, the scan says 0
    warning = data.center_disagreement(data.MeasuredScan(sinogram, angles, **fields))
    assert warning is not None and "center_offset is 0.00 detector bins" in warning and "-0.00" not in warning
    assert re.search(r"at -2\.[45]\d bins", warning)


def test_centred_scan_is_checked_against_what_is_left():
    """Centring with a wrong offset shifts the rows by it: the axis then sits where the error put it."""
    sinogram, angles, fields = _sinogram("parallel", 0)
    scan = data.MeasuredScan(sinogram, angles, center_offset=2.5, **fields)
    centred = scan.centred()
    warning = data.center_disagreement(centred)
    assert warning is not None and "center_offset is 0.00 detector bins" in warning
    assert re.search(r"at -2\.[45]\d bins", warning)
    assert data.center_disagreement(scan.with_center_offset(0.0).centred()) is None


def test_limited_angle_scan_cannot_be_checked():
    sinogram, angles, fields = _sinogram("parallel", 0)
    scan = data.MeasuredScan(sinogram[:60], angles[:60], center_offset=2.5, **fields)  # 60 of 180 degrees
    with pytest.raises(data.ScanError, match="too few opposing views"):
        data.estimate_center_offset(scan)
    assert data.center_disagreement(scan) is None


def test_exported():
    assert "center_disagreement" in data.__all__
    from sparsect.data.measured_center import CENTER_TOLERANCE_BINS, center_disagreement

    assert center_disagreement is data.center_disagreement and CENTER_TOLERANCE_BINS == 0.5
