"""`sparsect reconstruct --scan`: a measured scan written here, reconstructed through the CLI."""

from __future__ import annotations

import json

import numpy as np
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
    assert all(r["views"] == 30 and r["scored_against"] == "against FBP of the dense scan (120 views)"
               for r in records)
    assert all(r["psnr"] > 20 and r["data_rmse"] > 0 for r in records)
    written = json.loads((out / "metrics.json").read_text())
    assert written["scan"]["views"] == 120 and written["records"] == records
    with np.load(out / "results.npz") as results:
        assert results["fbp_residual"].shape == (120, 64) and results["reference_hu"].shape == (64, 64)
    assert Image.open(out / "consistency.png").size == (2 * 64, 120)  # two residual tiles of 120 views x 64 bins


def test_all_views_without_reference_has_no_scores(scan_files):
    scan, geometry = scan_files
    (record,) = _records(runner.invoke(cli, ["reconstruct", "--scan", str(scan), "--geometry", str(geometry),
                                             "-m", "fbp", "--json"]))
    assert (record["views"], record["psnr"], record["scored_against"]) == (120, None, None)
    assert "note" not in record and record["data_rmse"] < 0.01


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
