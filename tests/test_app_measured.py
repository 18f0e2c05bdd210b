"""app.measured: measured scans prepared for the CLI and the page (centre, subsampling, grid, reference)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.data import shepp_logan_phantom
from skimage.transform import resize

from sparsect import data, reconstruct
from sparsect.app import measured
from sparsect.operators import ParallelBeam, Radon


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
    assert measured.score_label(prepared) == "against FBP of the dense scan (180 views)"
    half = measured.prepare(path, center=2.0, size=32, reference="tv")
    assert half.sparse is half.dense and half.pixel_size_mm == pytest.approx(1.0) and half.reference == "tv"
    assert measured.score_label(measured.prepare(path)) is None
    with pytest.raises(data.ScanError, match="--center must be auto or a number"):
        measured.prepare(path, center="left")
    with pytest.raises(data.ScanError, match="reference must be one of fbp, tv"):
        measured.prepare(path, views=30, reference="sirt")


def test_consistency_map(offset_scan):
    path, _ = offset_scan
    prepared = measured.prepare(path, center="auto")
    residual = measured.consistency_map(np.zeros((64, 64)), prepared)
    np.testing.assert_allclose(residual, -prepared.dense.sinogram, atol=1e-7)  # nothing predicted: A 0 - y = -y
    fbp = reconstruct.fbp(prepared.dense.sinogram, prepared.geometry(prepared.dense),
                          pixel_size_mm=prepared.pixel_size_mm)
    residual = measured.consistency_map(fbp.mu, prepared)
    assert np.sqrt(np.mean(residual ** 2)) < 0.1 * np.sqrt(np.mean(prepared.dense.sinogram ** 2))
    with pytest.raises(ValueError, match="the grid"):
        measured.consistency_map(np.zeros((32, 32)), prepared)
