"""app.measured_scan: measured scans prepared for the CLI and the page (centre, subsampling, grid, reference), and
run on the page's background job."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from skimage.data import shepp_logan_phantom
from skimage.transform import resize

from sparsect import data, reconstruct
from sparsect.app import measured_scan as measured
from sparsect.app import run, settings
from sparsect.app.page.jobs import Job
from sparsect.operators import ParallelBeam, Radon
from sparsect.reconstruct import metrics


@pytest.fixture
def offset_scan(tmp_path):
    """A 180-view parallel scan of the phantom (0.5 mm pixels) whose axis sits 2 bins above the middle (31.5)."""
    mu = (resize(shepp_logan_phantom(), (64, 64), order=1, anti_aliasing=True) * 0.02).astype(np.float32)
    wide = ParallelBeam(np.arange(180) * np.pi / 180, 96, 1.0, 64)
    # Bins 14..77 of 96: the axis (wide bin 47.5) lands on crop bin 33.5, two above the crop's middle.
    sinogram = (Radon(wide)(torch.from_numpy(mu).double()) * 0.5).numpy()[:, 14:14 + 64]
    np.savez(tmp_path / "scan.npz", sinogram=sinogram, angles=wide.angles.numpy(), beam="parallel",
             detector_pixel_mm=0.5)
    return tmp_path / "scan.npz", mu


def test_prepare_centres_subsamples_and_names_the_reference(offset_scan):
    path, _ = offset_scan
    prepared = measured.prepare(path, views=30, center="auto")
    assert prepared.dense.center_offset == 0.0 and prepared.dense.n_views == 180
    assert any("centre offset set to 2.0" in note for note in prepared.dense.notes)
    assert prepared.sparse.n_views == 30 and prepared.reference == "fbp"
    assert prepared.image_size == (64, 64) and prepared.pixel_size_mm == pytest.approx(0.5)
    assert run.scored_against(measured.measured_scan(prepared), object()) == "FBP of all 180 measured views"
    half = measured.prepare(path, center=2.0, size=32, reference="tv")
    assert half.sparse is half.dense and half.pixel_size_mm == pytest.approx(1.0) and half.reference == "tv"
    assert measured.prepare(path).reference is None
    with pytest.raises(data.ScanError, match="--center must be auto or a number"):
        measured.prepare(path, center="left")
    with pytest.raises(data.ScanError, match="reference must be one of fbp, tv"):
        measured.prepare(path, views=30, reference="sirt")


def test_the_sinogram_residual_covers_every_measured_view(offset_scan):
    path, _ = offset_scan
    scan = measured.measured_scan(measured.prepare(path, views=30, center="auto"))
    prepared = scan.measured
    bins = prepared.dense.det_count  # centring widened the detector so no measured bin is lost
    assert scan.views == 30 and tuple(scan.check_sinogram.shape) == (180, bins) and scan.photons is None
    (outcome,) = run.reconstruct("fbp", [scan], settings.MethodSettings(device="cpu"))
    assert outcome.sinogram_residual.shape == (180, bins)  # all measured views, not only the 30 used
    dense = torch.from_numpy(prepared.dense.sinogram)
    predicted = Radon(prepared.geometry(prepared.dense))(outcome.reconstruction.mu.double() * prepared.pixel_size_mm)
    np.testing.assert_allclose(outcome.sinogram_residual, (predicted - dense).numpy(), atol=1e-4)
    assert outcome.data_rmse == pytest.approx(np.sqrt(np.mean(outcome.sinogram_residual.astype(float) ** 2)))
    assert outcome.scores == {} and outcome.record()["scored_against"] is None  # no reference given


# ------------------------------------------------------------------------------------------ the page's runs


def _tiff_stack(mu: np.ndarray, angles: np.ndarray, row: int, rows: int = 3) -> list[tuple[str, bytes]]:
    """TIFF files of a parallel scan of ``mu`` (1/mm, 0.5 mm pixels): one image per view whose detector row
    ``row`` sees ``mu`` and the other rows a blank, a flat field (two pages) and a dark field."""
    import tifffile

    sinogram = (Radon(ParallelBeam(angles, mu.shape[1], 1.0, mu.shape[0]))(torch.from_numpy(mu).double()) * 0.5).numpy()
    flat, dark = 20000.0, 100.0
    files = []
    for i, line in enumerate(sinogram):
        image = np.full((rows, sinogram.shape[1]), flat)
        image[row] = dark + (flat - dark) * np.exp(-line)
        buffer = io.BytesIO()
        tifffile.imwrite(buffer, np.round(image).astype(np.uint16))
        files.append((f"proj_{i}.tif", buffer.getvalue()))
    for name, value, pages in (("flat.tif", flat, 2), ("dark.tif", dark, 1)):
        buffer = io.BytesIO()
        tifffile.imwrite(buffer, np.full((pages, rows, sinogram.shape[1]), value, np.uint16))
        files.append((name, buffer.getvalue()))
    return files[::-1]  # the upload's order is not the views' order


def _phantom(n: int = 64) -> np.ndarray:
    return (resize(shepp_logan_phantom(), (n, n), order=1, anti_aliasing=True) * 0.02).astype(np.float32)


def test_uploaded_tiff_stack_reconstructs_the_object(tmp_path):
    mu = _phantom()
    angles = np.arange(90) * np.pi / 90
    files = _tiff_stack(mu, angles, row=2)
    geometry = {"beam": "parallel", "detector_pixel_mm": 0.5, "angles_deg": np.degrees(angles).tolist()}
    assert data.tiff_rows(*files[0]) == 3
    scan = data.load_tiff_bytes(files, geometry, row=2)
    assert scan.format == "tiff" and scan.n_views == 90 and scan.det_count == 64
    blank = data.load_tiff_bytes(files, geometry, row=0)  # a row that saw nothing
    assert np.abs(blank.sinogram).max() < 1e-3 < scan.sinogram.max()
    prepared = measured.prepare_scan(scan, views=45, reference="fbp")
    job = Job([run.Task("fbp", settings.MethodSettings(device="cpu"), "fbp")], measured.measured_scan(prepared))
    assert job.start().wait()
    (outcome,) = job.finished_outcomes()
    assert job.reference is not None and job.progress["reference"].status == "done"
    image = outcome.reconstruction.mu.reshape(64, 64).cpu().numpy()
    inside = metrics.circle_mask(mu.shape)
    error = np.sqrt(np.mean((image - mu)[inside] ** 2)) / np.sqrt(np.mean(mu[inside] ** 2))
    assert error < 0.35, error  # the object the scan saw, not noise
    assert outcome.scores["psnr"] > 20  # against FBP of all 90 views
    with pytest.raises(data.ScanError, match="no flat field in the upload"):
        data.load_tiff_bytes([f for f in files if f[0] != "flat.tif"], geometry)
    with pytest.raises(data.ScanError, match="notes.txt is not a TIFF file"):
        data.load_tiff_bytes([*files, ("notes.txt", b"x")], geometry)
    with pytest.raises(data.ScanError, match="proj_0.tif is not a readable TIFF file"):
        data.load_tiff_bytes([(n, b"II*\0broken" if n == "proj_0.tif" else c) for n, c in files], geometry)


def test_measured_job_stop_keeps_the_partial_result():
    mu = _phantom(32)
    angles = np.arange(60) * np.pi / 60
    sinogram = (Radon(ParallelBeam(angles, 32, 1.0, 32))(torch.from_numpy(mu).double()) * 0.5).numpy()
    scan = data.MeasuredScan(sinogram=sinogram, angles=angles, beam="parallel", detector_pixel_mm=0.5)
    prepared = measured.prepare_scan(scan, views=20, reference=None)

    class StopOnIterationThree(Job):  # Stop pressed while SIRT reports its third iteration
        def listener(self):
            listener, job = super().listener(), self

            class Stopping(type(listener)):
                def progress(self, name, state):
                    super().progress(name, state)
                    if state.iteration == 3:
                        job.request_stop()

            return Stopping(self)

    chosen = settings.MethodSettings(iterations=50, device="cpu")
    job = StopOnIterationThree([run.Task(m, chosen, m) for m in ("sirt", "cgls")], measured.measured_scan(prepared))
    assert job.start().wait()
    (outcome,) = job.finished_outcomes()
    done = outcome.reconstruction.iterations
    assert outcome.method == "sirt" and outcome.reconstruction.stop_reason == "stopped" and 3 <= done < 50
    assert job.progress["sirt"].status == "stopped" and job.progress["cgls"].status == "cancelled"
    assert "reference" not in job.progress and job.reference is None and outcome.scores == {}
    sparse = prepared.sparse
    independent = reconstruct.run("sirt", torch.from_numpy(sparse.sinogram), prepared.geometry(sparse),
                                  pixel_size_mm=prepared.pixel_size_mm, iterations=done, device="cpu")
    np.testing.assert_allclose(outcome.reconstruction.image_hu, independent.image_hu, rtol=0, atol=1e-2)
    assert outcome.sinogram_residual.shape == (60, 32)
