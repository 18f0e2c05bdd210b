"""`sparsect reconstruct --scan`: a measured scan written here, reconstructed through the CLI."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pydicom
import pytest
import torch
from PIL import Image
from skimage.data import shepp_logan_phantom
from skimage.transform import resize
from typer.testing import CliRunner

from sparsect.app.cli import cli
from sparsect.operators import ParallelBeam, Radon

runner = CliRunner()


@pytest.fixture
def scan_files(tmp_path):
    """A 120-view parallel scan of the phantom (64 bins of 0.5 mm) as .npy plus its geometry JSON."""
    mu = (resize(shepp_logan_phantom(), (64, 64), order=1, anti_aliasing=True) * 0.02).astype(np.float32)
    geometry = ParallelBeam(np.arange(120) * np.pi / 120, 64, 1.0, 64)
    np.save(tmp_path / "scan.npy", (Radon(geometry)(torch.from_numpy(mu).double()) * 0.5).numpy())
    (tmp_path / "scan.json").write_text(json.dumps({"beam": "parallel", "detector_pixel_mm": 0.5,
                                                    "angles_deg": np.degrees(geometry.angles.numpy()).tolist()}))
    return tmp_path / "scan.npy", tmp_path / "scan.json"


def _records(result):
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def test_sparse_views_scored_against_fbp_of_all_views(scan_files, tmp_path):
    scan, geometry = scan_files
    out = tmp_path / "out"
    records = _records(runner.invoke(cli, ["reconstruct", "--scan", str(scan), "--geometry", str(geometry), "--views",
                                           "30", "-m", "fbp,sirt", "--iterations", "20", "--json", "--out", str(out)]))
    assert [r["method"] for r in records] == ["fbp", "sirt"]
    assert all(r["views"] == 30 and r["scored_against"] == "FBP of all 120 measured views" for r in records)
    assert all(r["psnr"] > 20 and r["data_rmse"] > 0 for r in records)
    written = json.loads((out / "metrics.json").read_text())
    assert written["scan"]["views"] == 120 and written["records"] == records
    with np.load(out / "results.npz") as results:
        assert results["fbp_residual"].shape == (120, 64) and results["reference_hu"].shape == (64, 64)
    assert Image.open(out / "residual_sinograms.png").size == (2 * 64, 120)  # two residual tiles of 120 views x 64 bins


def test_all_views_without_reference_has_no_scores(scan_files):
    scan, geometry = scan_files
    (record,) = _records(runner.invoke(cli, ["reconstruct", "--scan", str(scan), "--geometry", str(geometry),
                                             "-m", "fbp", "--json"]))
    assert (record["views"], record["psnr"], record["scored_against"]) == (120, None, None)
    assert record["note"] is None and record["data_rmse"] < 0.01


@pytest.mark.parametrize(("args", "message"), [
    (["shepp_logan", "--scan", "SCAN"], "not both"),
    (["--scan", "SCAN", "--geometry", "GEOMETRY", "--center", "left"], "--center must be auto or a number"),
    (["--scan", "SCAN", "--geometry", "GEOMETRY", "--photons", "1e5"], "apply to simulated scans"),
    (["--scan", "SCAN"], "no view angles"),
    (["shepp_logan", "--geometry", "GEOMETRY"], "apply to measured scans"),
    (["--scan", "SCAN", "--geometry", "GEOMETRY", "--views", "500"], "cannot keep 500 views"),
])
def test_errors_are_one_line(scan_files, args, message):
    scan, geometry = scan_files
    args = [str(scan) if a == "SCAN" else str(geometry) if a == "GEOMETRY" else a for a in args]
    result = runner.invoke(cli, ["reconstruct", *args])
    assert result.exit_code == 2 and message in result.output and result.output.count("error:") == 1


def test_out_holds_derived_dicom_of_one_study(scan_files, tmp_path):
    scan, geometry = scan_files
    scan = shutil.copy(scan, tmp_path / "DOE_JOHN_4711.npy")  # a name that must not reach the headers
    out = tmp_path / "out"
    _records(runner.invoke(cli, ["reconstruct", "--scan", str(scan), "--geometry", str(geometry), "--views", "30",
                                 "-m", "fbp,sirt", "--iterations", "5", "--size", "32", "--json", "--out", str(out)]))
    series = {name: [pydicom.dcmread(p) for p in sorted((out / "dicom" / name).glob("*.dcm"))]
              for name in ("reference", "fbp", "sirt")}
    assert all(len(files) == 1 for files in series.values()), series
    datasets = {name: files[0] for name, files in series.items()}
    with np.load(out / "results.npz") as results:
        expected = {"reference": results["reference_hu"], "fbp": results["fbp_hu"], "sirt": results["sirt_hu"]}
    for name, ds in datasets.items():
        hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        np.testing.assert_allclose(hu, expected[name], atol=float(ds.RescaleSlope) / 2 + 1e-3)
        # 64 bins of 0.5 mm at the rotation centre on a 32-pixel grid: 1 mm pixels
        assert [float(v) for v in ds.PixelSpacing] == pytest.approx([1.0, 1.0])
        assert ds.ImageType[0] == "DERIVED" and ds.Modality == "CT"
    assert len({ds.StudyInstanceUID for ds in datasets.values()}) == 1
    assert len({ds.FrameOfReferenceUID for ds in datasets.values()}) == 1
    assert len({ds.SeriesInstanceUID for ds in datasets.values()}) == 3
    assert sorted(int(ds.SeriesNumber) for ds in datasets.values()) == [1000, 1001, 1002]
    assert datasets["sirt"].SeriesDescription == "SIRT 30 of 120 measured views, RESEARCH"
    assert datasets["reference"].SeriesDescription == "FBP reference 120 of 120 measured views, RESEARCH"
    assert "research reconstruction from 30 of 120 measured views" in datasets["sirt"].ImageComments
    # nothing of the user's file (its name or folder) reaches the headers
    for ds in datasets.values():
        text = " ".join(str(element.value) for element in ds.iterall() if element.keyword != "PixelData")
        assert "DOE" not in text and str(tmp_path) not in text
        # the digits of the name in any value but a UID, whose random digits hold "4711" by chance (iterall visits a
        # sequence's elements one by one, so a sequence's own text is left out too)
        words = " ".join(str(element.value) for element in ds.iterall()
                         if element.keyword != "PixelData" and element.VR not in ("UI", "SQ"))
        assert "4711" not in words
        assert str(ds.PatientName) == "MEASURED^ANONYMOUS"
    if shutil.which("dciodvfy") is not None:
        for name in datasets:
            path = next((out / "dicom" / name).glob("*.dcm"))
            done = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
            errors = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("Error")]
            assert errors == [], errors
    assert not list(tmp_path.glob(".out.staging-*"))


def test_two_runs_of_one_scan_join_one_study(scan_files, tmp_path):
    scan, geometry = scan_files
    study = []
    for method in ("fbp", "sirt"):
        out = tmp_path / method
        _records(runner.invoke(cli, ["reconstruct", "--scan", str(scan), "--geometry", str(geometry), "-m", method,
                                     "--iterations", "3", "--json", "--out", str(out)]))
        assert not (out / "dicom" / "reference").exists()  # all views and no reference asked for
        study.append(pydicom.dcmread(next((out / "dicom" / method).glob("*.dcm"))).StudyInstanceUID)
    assert study[0] == study[1]


def test_a_geometry_file_whose_centre_disagrees_with_the_data_is_named(tmp_path):
    mu = (resize(shepp_logan_phantom(), (64, 64), order=1, anti_aliasing=True) * 0.02).astype(np.float32)
    geometry = ParallelBeam(np.arange(121) * np.pi / 120, 64, 1.0, 64)  # 0 to 180 degrees: opposing views
    scan = tmp_path / "scan.npy"
    np.save(scan, (Radon(geometry)(torch.from_numpy(mu).double()) * 0.5).numpy())
    right = {"beam": "parallel", "detector_pixel_mm": 0.5, "angles_deg": np.degrees(geometry.angles.numpy()).tolist()}
    for name, offset in (("right.json", 0.0), ("wrong.json", 2.5)):  # the data's axis is at the middle
        (tmp_path / name).write_text(json.dumps(right | {"center_offset": offset}))

    def run(name, *args):
        result = runner.invoke(cli, ["reconstruct", "--scan", str(scan), "--geometry", str(tmp_path / name), "-m",
                                     "fbp", "--json", *args])
        assert result.exit_code == 0, result.output
        return " ".join(result.stderr.split())

    warning = run("wrong.json")
    assert "warning: rotation centre: the scan's center_offset is 2.50 detector bins" in warning
    assert "--center auto" in warning and "0.00 bins" in warning
    assert "rotation centre" not in run("right.json")
    assert "rotation centre" not in run("wrong.json", "--center", "auto")  # estimated: nothing to warn about
