"""Measured scans: every reader on files written here with known geometry and values, flat/dark correction
against hand-computed numbers, the centre-of-rotation estimate, and a round trip through the projector."""

from __future__ import annotations

import json
import math

import h5py
import numpy as np
import pytest
import scipy.io
import tifffile
import torch
from skimage.data import shepp_logan_phantom
from skimage.transform import resize

from sparsect import data, reconstruct
from sparsect.operators import FanBeam, ParallelBeam, Radon

RNG = np.random.default_rng(0)


def _phantom_mu(size: int = 64) -> np.ndarray:
    """Shepp-Logan scaled to water-like attenuation, 1/mm."""
    return (resize(shepp_logan_phantom(), (size, size), order=1, anti_aliasing=True) * 0.02).astype(np.float32)


def _project(mu: np.ndarray, geometry, pixel_mm: float) -> np.ndarray:
    """Line integrals (mu [1/mm] * mm) along the rays of ``geometry`` (lengths in pixels of ``pixel_mm``)."""
    return (Radon(geometry)(torch.from_numpy(mu).double()) * pixel_mm).numpy()


def _write_json(path, values) -> str:
    path.write_text(json.dumps(values))
    return str(path)


def _relative_error(mu: np.ndarray, truth: np.ndarray) -> float:
    """RMS error relative to the RMS of the truth inside the inscribed circle."""
    mask = reconstruct.circle_mask(truth.shape)
    return float(np.sqrt(np.mean((mu - truth)[mask] ** 2) / np.mean(truth[mask] ** 2)))


# --- flat/dark correction ---------------------------------------------------------------------------------

def test_flat_dark_correct_matches_hand_computed_values():
    raw = np.array([[60.0, 35.0], [110.0, 10.0]])
    flat = np.array([[110.0, 60.0], [90.0, 40.0]])  # mean (100, 50)
    dark = np.array([10.0, 10.0])
    p, clipped = data.flat_dark_correct(raw, flat, dark)
    # (60-10)/(100-10) = 5/9, (35-10)/(50-10) = 5/8, (110-10)/90 = 10/9, (10-10)/40 = 0 -> 1e-6
    expected = [[-math.log(5 / 9), -math.log(5 / 8)], [-math.log(10 / 9), -math.log(1e-6)]]
    np.testing.assert_allclose(p, expected, rtol=1e-6)
    assert p.dtype == np.float32 and clipped == 1
    p, _ = data.flat_dark_correct([[50.0, 25.0]], [100.0, 50.0])  # no dark: zero
    np.testing.assert_allclose(p, [[math.log(2), math.log(2)]], rtol=1e-6)
    with pytest.raises(data.ScanError, match="flat field is not above the dark field at 1 of 2"):
        data.flat_dark_correct(raw, [100.0, 5.0], dark)
    with pytest.raises(data.ScanError, match="3 detector bins"):
        data.flat_dark_correct(raw, [1.0, 2.0, 3.0])


# --- one reader per format, values and geometry known ---------------------------------------------------------

def _intensities(p: np.ndarray, flat: float = 4000.0, dark: float = 100.0) -> np.ndarray:
    """Raw counts whose flat/dark-corrected log is ``p``."""
    return dark + (flat - dark) * np.exp(-p)


def test_npy_with_geometry_json(tmp_path):
    sinogram = RNG.uniform(0, 2, (12, 9)).astype(np.float32)
    np.save(tmp_path / "s.npy", sinogram)
    angles = np.linspace(0, 165, 12)
    geometry = _write_json(tmp_path / "g.json", {"beam": "parallel", "detector_pixel_mm": 1.72, "center_offset": 0.5,
                                                 "angles_deg": angles.tolist()})
    scan = data.load_scan(tmp_path / "s.npy", geometry)
    np.testing.assert_array_equal(scan.sinogram, sinogram)
    np.testing.assert_allclose(scan.angles, np.radians(angles))
    assert (scan.beam, scan.detector_pixel_mm, scan.center_offset, scan.format) == ("parallel", 1.72, 0.5, "npy")
    assert scan.source_distance_mm is None and scan.isocentre_pixel_mm == 1.72
    with pytest.raises(data.ScanError, match="no view angles"):
        data.load_scan(tmp_path / "s.npy", {"beam": "parallel", "detector_pixel_mm": 1.0})


def test_npz_sinogram_with_its_own_geometry(tmp_path):
    sinogram = RNG.uniform(0, 2, (10, 7))
    np.savez(tmp_path / "s.npz", sinogram=sinogram, angles=np.linspace(0, 2 * np.pi, 10, endpoint=False),
             beam="fan", detector_pixel_mm=0.2, source_distance_mm=400.0, detector_distance_mm=150.0)
    scan = data.load_scan(tmp_path / "s.npz")
    np.testing.assert_allclose(scan.sinogram, sinogram, rtol=1e-7)
    assert scan.beam == "fan" and scan.magnification == pytest.approx(550 / 400)
    assert scan.isocentre_pixel_mm == pytest.approx(0.2 * 400 / 550)
    # The JSON file may repeat what the file says, but not contradict it.
    assert data.load_scan(tmp_path / "s.npz", {"source_distance_mm": 400.0}).source_distance_mm == 400.0
    with pytest.raises(data.ScanError, match=r"contradicts the scan file on source_distance_mm \(400.0 vs 410.0\)"):
        data.load_scan(tmp_path / "s.npz", {"source_distance_mm": 410.0})


def test_npz_raw_projections_3d_pick_a_row(tmp_path):
    p = RNG.uniform(0, 3, (8, 5, 6))  # views, rows, bins
    flat = np.full((3, 5, 6), 4000.0) + RNG.normal(0, 1, (3, 5, 6))
    dark = np.full((2, 5, 6), 100.0)
    raw = dark.mean(0) + (flat.mean(0) - dark.mean(0)) * np.exp(-p)
    np.savez(tmp_path / "raw.npz", projections=raw, flat=flat, dark=dark, angles_deg=np.arange(8) * 22.5)
    geometry = {"beam": "parallel", "detector_pixel_mm": 0.1}
    scan = data.load_scan(tmp_path / "raw.npz", geometry, row=1)
    np.testing.assert_allclose(scan.sinogram, p[:, 1, :], rtol=1e-5, atol=1e-6)
    middle = data.load_scan(tmp_path / "raw.npz", geometry)
    np.testing.assert_allclose(middle.sinogram, p[:, 2, :], rtol=1e-5, atol=1e-6)
    assert any("flat/dark corrected" in note for note in middle.notes)
    with pytest.raises(data.ScanError, match="row 5 is outside the 5 detector rows"):
        data.load_scan(tmp_path / "raw.npz", geometry, row=5)


def test_hdf5_data_exchange(tmp_path):
    p = RNG.uniform(0, 2, (9, 4, 11))
    theta = np.arange(9) * 20.0
    with h5py.File(tmp_path / "scan.h5", "w") as f:
        f["exchange/data"] = np.round(_intensities(p)).astype(np.uint16)
        f["exchange/data_white"] = np.full((2, 4, 11), 4000, np.uint16)
        f["exchange/data_dark"] = np.full((2, 4, 11), 100, np.uint16)
        f["exchange/theta"] = theta  # no units attribute: degrees, the Data Exchange default
    scan = data.load_scan(tmp_path / "scan.h5", {"beam": "parallel", "detector_pixel_mm": 0.65}, row=3)
    # Rounding to whole counts moves p by at most 0.5 / (3900 e^-p) <= 0.001 here.
    np.testing.assert_allclose(scan.sinogram, p[:, 3, :], atol=1e-3)
    np.testing.assert_allclose(scan.angles, np.radians(theta))
    assert scan.format == "hdf5" and any("read as degrees" in note for note in scan.notes)
    with h5py.File(tmp_path / "rad.h5", "w") as f:
        f["exchange/data"] = _intensities(p[:, 0, :])
        f["exchange/data_white"] = np.full((1, 11), 4000.0)
        f["exchange/data_dark"] = np.full((1, 11), 100.0)
        f["exchange/theta"] = np.radians(theta)
        f["exchange/theta"].attrs["units"] = "radians"
    scan = data.load_scan(tmp_path / "rad.h5", {"beam": "parallel", "detector_pixel_mm": 0.65})
    np.testing.assert_allclose(scan.angles, np.radians(theta))
    np.testing.assert_allclose(scan.sinogram, p[:, 0, :], rtol=1e-5, atol=1e-6)
    with h5py.File(tmp_path / "noflat.h5", "w") as f:
        f["exchange/data"] = np.ones((3, 4))
    with pytest.raises(data.ScanError, match="no /exchange/data_white"):
        data.load_scan(tmp_path / "noflat.h5", {"beam": "parallel", "detector_pixel_mm": 1.0})


def test_tiff_folder_natural_order(tmp_path):
    p = RNG.uniform(0, 2, (12, 3, 10))
    folder = tmp_path / "stack"
    folder.mkdir()
    for i in range(12):  # p0 ... p11: name order would put p10 before p2
        tifffile.imwrite(folder / f"p{i}.tif", np.round(_intensities(p[i])).astype(np.uint16))
    tifffile.imwrite(folder / "flat.tif", np.full((2, 3, 10), 4000, np.uint16))  # two pages
    tifffile.imwrite(folder / "dark_0.tif", np.full((3, 10), 100, np.uint16))
    angles = (np.arange(12) * 15.0).tolist()
    scan = data.load_scan(folder, {"beam": "parallel", "detector_pixel_mm": 0.5, "angles_deg": angles})
    np.testing.assert_allclose(scan.sinogram, p[:, 1, :], atol=1e-3)
    assert scan.format == "tiff" and scan.n_views == 12
    with pytest.raises(data.ScanError, match="single TIFF file"):
        data.load_scan(folder / "p0.tif", {"beam": "parallel", "detector_pixel_mm": 0.5, "angles_deg": [0]})
    (folder / "flat.tif").unlink()
    with pytest.raises(data.ScanError, match="no flat field"):
        data.load_scan(folder, {"beam": "parallel", "detector_pixel_mm": 0.5, "angles_deg": angles})


def _htc_file(path, sinogram: np.ndarray, angles_deg: np.ndarray, source_mm: float, source_detector_mm: float,
              pixel_mm: float, variable: str = "CtDataFull", detectors: int | None = None) -> None:
    """A .mat file in the Helsinki Tomography Challenge 2022 layout (field names of its published data)."""
    magnification = source_detector_mm / source_mm
    parameters = {"projectName": "test", "geometryType": "Cone", "distanceSourceOrigin": source_mm,
                  "distanceSourceDetector": source_detector_mm, "distanceUnit": "mm",
                  "geometricMagnification": magnification, "numberImages": len(angles_deg),
                  "angles": angles_deg.reshape(1, -1), "pixelSize": pixel_mm / 4, "binningPost": 4.0,
                  "pixelSizePost": pixel_mm, "effectivePixelSizePost": pixel_mm / magnification,
                  "numDetectorsPost": float(detectors or sinogram.shape[1])}
    scipy.io.savemat(path, {variable: {"type": "2D", "sinogram": sinogram, "parameters": parameters}})


def test_htc2022_mat_reads_fan_geometry(tmp_path):
    sinogram = RNG.uniform(0, 1, (721, 16))
    angles = np.arange(721) * 0.5
    _htc_file(tmp_path / "htc2022_ta_full.mat", sinogram, angles, 410.66, 553.74, 0.2)
    scan = data.load_scan(tmp_path / "htc2022_ta_full.mat")
    np.testing.assert_allclose(scan.sinogram, sinogram, rtol=1e-6)
    np.testing.assert_allclose(scan.angles, np.radians(angles))
    assert (scan.beam, scan.format, scan.detector_pixel_mm) == ("fan", "htc2022", 0.2)
    assert scan.source_distance_mm == 410.66 and scan.detector_distance_mm == pytest.approx(553.74 - 410.66)
    # The challenge's own ASTRA code: fanflat(M, n, angles, DSO / effPixel, (DSD - DSO) / effPixel).
    geometry = scan.geometry()
    eff = 0.2 * 410.66 / 553.74
    assert isinstance(geometry, FanBeam) and geometry.det_spacing == pytest.approx(553.74 / 410.66)
    assert geometry.source_distance == pytest.approx(410.66 / eff)
    assert geometry.detector_distance == pytest.approx((553.74 - 410.66) / eff)
    _htc_file(tmp_path / "limited.mat", sinogram[:181], angles[:181], 410.66, 553.74, 0.2, "CtDataLimited")
    assert data.load_scan(tmp_path / "limited.mat").n_views == 181
    _htc_file(tmp_path / "bad.mat", sinogram[:, :15], angles, 410.66, 553.74, 0.2, detectors=16)
    with pytest.raises(data.ScanError, match="numDetectorsPost is 16"):
        data.load_scan(tmp_path / "bad.mat")


# --- validation ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("geometry", "message"), [
    ({"beam": "parallel", "detector_pixel_mm": 1.0, "angles_deg": [0, 1, 2]}, "3 angles for 4 sinogram rows"),
    ({"beam": "fan", "detector_pixel_mm": 1.0, "angles_deg": [0, 1, 2, 3], "source_distance_mm": -5,
      "detector_distance_mm": 10}, "source_distance_mm must be a positive distance"),
    ({"beam": "fan", "detector_pixel_mm": 1.0, "angles_deg": [0, 1, 2, 3]}, "needs source_distance_mm"),
    ({"beam": "parallel", "detector_pixel_mm": 1.0, "angles_deg": [0, 1, 2, 3], "source_distance_mm": 500},
     "fan-beam settings"),
    ({"beam": "cone", "detector_pixel_mm": 1.0, "angles_deg": [0, 1, 2, 3]}, "beam must be 'parallel' or 'fan'"),
    ({"beam": "parallel", "detector_pixel_mm": 1.0, "angles_deg": [0, 1, float("nan"), 3]}, "NaN"),
    ({"beam": "parallel", "detector_pixel_mm": "1", "angles_deg": [0, 1, 2, 3]}, "must be a number"),
    ({"beam": "parallel", "pixel_mm": 1.0, "angles_deg": [0, 1, 2, 3]}, "unknown geometry key 'pixel_mm'"),
    ({"detector_pixel_mm": 1.0, "angles_deg": [0, 1, 2, 3]}, "does not say its beam"),
    ({"beam": "parallel", "detector_pixel_mm": 1.0, "angles_deg": [0, 1, 2, 3], "center_offset": 4},
     "center_offset 4.0 bins must be finite and within the detector"),
])
def test_geometry_errors_are_one_line(tmp_path, geometry, message):
    np.save(tmp_path / "s.npy", np.zeros((4, 8), np.float32))
    with pytest.raises(data.ScanError, match=message) as error:
        data.load_scan(tmp_path / "s.npy", geometry)
    assert "\n" not in str(error.value) and isinstance(error.value, ValueError)


def test_file_errors(tmp_path):
    with pytest.raises(data.ScanNotFoundError):
        data.load_scan(tmp_path / "missing.npz")
    sinogram = np.zeros((3, 4), np.float32)
    sinogram[1, 2] = np.nan
    np.save(tmp_path / "nan.npy", sinogram)
    with pytest.raises(data.ScanError, match=r"1 NaN or infinite values \(first at view 1, bin 2\)"):
        data.load_scan(tmp_path / "nan.npy", {"beam": "parallel", "detector_pixel_mm": 1.0, "angles_deg": [0, 1, 2]})
    (tmp_path / "s.dat").write_bytes(b"x")
    with pytest.raises(data.ScanError, match="unknown scan format '.dat'"):
        data.load_scan(tmp_path / "s.dat")
    (tmp_path / "g.json").write_text("{not json")
    with pytest.raises(data.ScanError, match="not a JSON geometry file"):
        data.load_scan(tmp_path / "nan.npy", tmp_path / "g.json")
    np.savez(tmp_path / "typo.npz", sinogram=np.zeros((2, 2)), angle=np.zeros(2))
    with pytest.raises(data.ScanError, match="unknown array 'angle'"):
        data.load_scan(tmp_path / "typo.npz")


# --- subsampling and the rotation centre -----------------------------------------------------------------------

def test_subsample_keeps_evenly_spaced_views():
    angles = np.arange(720) * np.pi / 360
    scan = data.MeasuredScan(np.arange(720 * 3, dtype=np.float32).reshape(720, 3), angles, "parallel", 1.0)
    sparse = scan.subsample(60)
    np.testing.assert_array_equal(sparse.angles, angles[::12])
    np.testing.assert_array_equal(sparse.sinogram, scan.sinogram[::12])
    assert sparse.notes[-1] == "kept 60 of 720 views"
    np.testing.assert_array_equal(scan.subsample(7).angles, angles[[0, 103, 206, 309, 411, 514, 617]])
    with pytest.raises(data.ScanError, match="cannot keep 721 views"):
        scan.subsample(721)


def test_centred_shifts_rows_by_the_offset():
    bins = np.arange(40)
    bump = np.exp(-((bins - 21.0) / 4.0) ** 2)  # smooth and ~0 at the edges
    scan = data.MeasuredScan(bump[None, :], [0.0], "parallel", 1.0, center_offset=1.5)
    centred = scan.centred()
    # 40 + 2 * 2 bins; new bin j is old bin j - 2 + 1.5, so the bump's peak moves from 21 to 21.5.
    expected = np.exp(-((np.arange(44) - 21.5) / 4.0) ** 2)
    np.testing.assert_allclose(centred.sinogram[0], expected, atol=2e-3)
    assert centred.center_offset == 0.0 and centred.det_count == 44 and "centred" in centred.notes[-1]
    with pytest.raises(data.ScanError, match="use scan.centred"):
        scan.geometry()


def _offset_scan(kind: str, offset_half_bins: int, det: int = 96, size: int = 64):
    """A scan of the phantom whose rotation axis projects ``offset_half_bins / 2`` bins above the detector's
    middle: project onto a wider detector, then keep ``det`` bins off-centre (exact, no interpolation)."""
    mu = _phantom_mu(size)
    wide = det + 16 + (offset_half_bins % 2)  # bins at k - (wide - 1) / 2: a parity change shifts by half a bin
    if kind == "parallel":
        geometry = ParallelBeam(np.arange(180) * np.pi / 180, wide, 1.0, size)
        fields = {"beam": "parallel"}
    else:
        geometry = FanBeam(np.arange(240) * 2 * np.pi / 240, wide, 150.0, 75.0, 1.5, size)
        fields = {"beam": "fan", "source_distance_mm": 75.0, "detector_distance_mm": 37.5}  # pixel 0.5 mm
    pixel = 0.5
    full = _project(mu, geometry, pixel)
    offset = offset_half_bins / 2
    first = int(round((wide - 1) / 2 - (det - 1) / 2 - offset))
    scan = data.MeasuredScan(full[:, first:first + det], geometry.angles.numpy(), detector_pixel_mm=1.5 * pixel
                             if kind == "fan" else pixel, center_offset=0.0, **fields)
    return scan, offset, mu


@pytest.mark.parametrize("kind", ["parallel", "fan"])
@pytest.mark.parametrize("offset_half_bins", [7, -4])
def test_center_offset_estimate_and_correction(kind, offset_half_bins):
    scan, offset, mu = _offset_scan(kind, offset_half_bins)
    estimate = data.estimate_center_offset(scan)
    assert estimate == pytest.approx(offset, abs=0.2)
    corrected = scan.with_center_offset(estimate).centred()
    pixel = scan.isocentre_pixel_mm
    good = reconstruct.fbp(corrected.sinogram, corrected.geometry(image_size=64), pixel_size_mm=pixel)
    bad = reconstruct.fbp(scan.sinogram, scan.geometry(image_size=64), pixel_size_mm=pixel)
    good_error = _relative_error(good.mu.numpy(), mu)
    assert good_error < 0.22 and good_error < 0.5 * _relative_error(bad.mu.numpy(), mu)


def test_center_estimate_needs_opposing_views():
    scan = data.MeasuredScan(RNG.uniform(0, 1, (10, 32)), np.linspace(0, np.pi / 3, 10), "parallel", 1.0)
    with pytest.raises(data.ScanError, match="too few opposing views"):
        data.estimate_center_offset(scan)


# --- round trip through the projector ------------------------------------------------------------------------

def test_round_trip_parallel_npz_raw_intensities(tmp_path):
    """Project the phantom, store raw counts with flat and dark fields, read back, FBP, compare to the phantom."""
    mu, pixel = _phantom_mu(), 0.5
    geometry = ParallelBeam(np.arange(120) * np.pi / 120, 64, 1.0, 64)
    p = _project(mu, geometry, pixel)
    np.savez(tmp_path / "scan.npz", projections=_intensities(p), flat=np.full((4, 64), 4000.0),
             dark=np.full(64, 100.0), angles=geometry.angles.numpy())
    scan = data.load_scan(tmp_path / "scan.npz", _write_json(tmp_path / "g.json", {
        "beam": "parallel", "detector_pixel_mm": pixel}))
    loaded = scan.geometry()
    assert isinstance(loaded, ParallelBeam) and loaded.key() == geometry.key()
    image = reconstruct.fbp(scan.sinogram, loaded, pixel_size_mm=scan.isocentre_pixel_mm).mu.numpy()
    assert _relative_error(image, mu) < 0.2
    # The same reconstruction from a random image instead of the phantom is far off: the check can fail.
    assert _relative_error(RNG.permutation(image.ravel()).reshape(image.shape), mu) > 0.8


def test_round_trip_fan_htc2022(tmp_path):
    mu, pixel = _phantom_mu(), 0.5
    geometry = FanBeam(np.arange(360) * 2 * np.pi / 360, 96, 200.0, 100.0, 1.5, 64)  # M = 1.5
    p = _project(mu, geometry, pixel)
    _htc_file(tmp_path / "scan.mat", p, np.degrees(geometry.angles.numpy()), 100.0, 150.0, 1.5 * pixel)
    scan = data.load_scan(tmp_path / "scan.mat")
    loaded = scan.geometry(image_size=64)
    assert isinstance(loaded, FanBeam) and scan.isocentre_pixel_mm == pytest.approx(pixel)
    np.testing.assert_allclose(loaded.angles.numpy(), geometry.angles.numpy(), rtol=1e-12)
    assert (loaded.source_distance, loaded.detector_distance, loaded.det_spacing) == pytest.approx((200, 100, 1.5))
    image = reconstruct.fbp(scan.subsample(180).sinogram, scan.subsample(180).geometry(image_size=64),
                            pixel_size_mm=pixel).mu.numpy()
    assert _relative_error(image, mu) < 0.25


def test_load_scan_bytes_reads_uploads_in_memory(tmp_path):
    sinogram = RNG.uniform(0, 2, (6, 5))
    np.savez(tmp_path / "s.npz", sinogram=sinogram, angles_deg=np.arange(6) * 30.0)
    _htc_file(tmp_path / "h.mat", sinogram, np.arange(6) * 60.0, 410.66, 553.74, 0.2)
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["exchange/data"] = _intensities(sinogram)
        f["exchange/data_white"] = np.full((1, 5), 4000.0)
        f["exchange/data_dark"] = np.full((1, 5), 100.0)
        f["exchange/theta"] = np.arange(6) * 30.0
    geometry = {"beam": "parallel", "detector_pixel_mm": 0.3}
    for name, extra in (("s.npz", geometry), ("h.mat", None), ("d.h5", geometry)):
        scan = data.load_scan_bytes(name, (tmp_path / name).read_bytes(), extra)
        np.testing.assert_allclose(scan.sinogram, sinogram, rtol=1e-5, atol=1e-6)
        assert scan.source == name
    with pytest.raises(data.ScanError, match="TIFF stack is a folder"):
        data.load_scan_bytes("p.tif", b"II*\0", geometry)
