"""Where to trust an image: the data-consistency map and the seed-ensemble uncertainty of the networks."""

import numpy as np
import pytest
import torch

from sparsect import operators
from sparsect.data.hu import MU_WATER
from sparsect.reconstruct import neural, registry
from sparsect.reconstruct.consistency import data_consistency_hu

SIZE = 32
PIXEL_MM = 0.8


def _disc(size: int, cx: float, cy: float, radius: float) -> np.ndarray:
    rows, cols = np.mgrid[:size, :size]
    return ((cols - cx) ** 2 + (rows - cy) ** 2 <= radius ** 2).astype(np.float32)


@pytest.fixture(scope="module")
def phantom():
    """A water disc (mu in 1/mm) and its noise-free sinogram over 90 views, projected on the same grid."""
    geometry = operators.ParallelBeam.sparse(90, SIZE)
    mu = MU_WATER * _disc(SIZE, 15.5, 15.5, 12)
    sinogram = operators.Radon(geometry)(torch.from_numpy(mu) * PIXEL_MM)
    return geometry, mu, sinogram


def test_the_true_image_is_consistent(phantom):
    geometry, mu, sinogram = phantom
    consistency = data_consistency_hu(mu, sinogram, geometry, PIXEL_MM)
    assert consistency.shape == (SIZE, SIZE) and consistency.dtype == np.float32
    assert np.abs(consistency).max() < 0.05  # HU; float32 round-off of a zero residual


def test_a_structure_the_rays_never_saw_shows_up(phantom):
    geometry, mu, sinogram = phantom
    contrast_hu = 500.0
    disc = _disc(SIZE, 20, 12, 2.5).astype(bool)
    altered = mu + disc * MU_WATER * contrast_hu / 1000.0
    consistency = data_consistency_hu(torch.from_numpy(altered), sinogram, geometry, PIXEL_MM)
    inside, outside = np.abs(consistency[disc]).mean(), np.abs(consistency[~disc]).mean()
    assert inside > 5 * outside
    # the residual is A(disc), so its FBP is the disc itself, blurred: about +contrast inside, positive
    assert 0.5 * contrast_hu < consistency[disc].mean() < 1.2 * contrast_hu


def test_a_batch_gives_one_map_per_image_and_checks_shapes(phantom):
    geometry, mu, sinogram = phantom
    images = torch.stack([torch.from_numpy(mu), torch.from_numpy(mu) * 1.1])[:, None]
    maps = data_consistency_hu(images, torch.stack([sinogram, sinogram])[:, None], geometry, PIXEL_MM)
    assert maps.shape == (2, SIZE, SIZE)
    np.testing.assert_allclose(maps[0], data_consistency_hu(mu, sinogram, geometry, PIXEL_MM), atol=1e-4)
    assert np.abs(maps[1]).max() > 10
    with pytest.raises(ValueError, match="2 image"):
        data_consistency_hu(images, sinogram, geometry, PIXEL_MM)
    with pytest.raises(ValueError, match="expected"):
        data_consistency_hu(mu[:-1], sinogram, geometry, PIXEL_MM)
    with pytest.raises(ValueError, match="pixel_size_mm"):
        data_consistency_hu(mu, sinogram, geometry, 0.0)


# -- the seed ensemble -------------------------------------------------------------------------------

ITERATIONS = 4


@pytest.fixture(scope="module")
def small_scan():
    geometry = operators.ParallelBeam.sparse(8, 16)
    mu = MU_WATER * _disc(16, 7.5, 7.5, 6)
    return geometry, operators.Radon(geometry)(torch.from_numpy(mu) * PIXEL_MM)


def _fit(small_scan, **kwargs):
    geometry, sinogram = small_scan
    return neural.reconstruct_neural("siren", sinogram, geometry, pixel_size_mm=PIXEL_MM, iterations=ITERATIONS,
                                     device="cpu", **kwargs)


def test_the_ensemble_is_the_mean_of_separate_fits(small_scan):
    ensemble = _fit(small_scan, seed=3, variant="ensemble", ensemble_size=3)
    alone = [_fit(small_scan, seed=seed) for seed in (3, 4, 5)]
    members = np.stack([r.image_hu for r in alone])
    assert ensemble.image_hu.shape == ensemble.uncertainty_hu.shape == (16, 16)
    assert tuple(ensemble.mu.shape) == (16, 16)
    np.testing.assert_allclose(ensemble.image_hu, members.mean(axis=0), atol=0.05)
    np.testing.assert_allclose(ensemble.uncertainty_hu, members.std(axis=0), atol=0.05)
    assert ensemble.uncertainty_hu.mean() > 0.1
    assert ensemble.settings["ensemble_seeds"] == [3, 4, 5] and ensemble.settings["variant"] == ["ensemble"]
    assert alone[0].uncertainty_hu is None


def test_one_member_has_no_spread_and_equals_the_single_fit(small_scan):
    one = _fit(small_scan, variant="ensemble", ensemble_size=1)
    np.testing.assert_array_equal(one.uncertainty_hu, np.zeros((16, 16), np.float32))
    np.testing.assert_allclose(one.image_hu, _fit(small_scan).image_hu, atol=1e-3)


def test_the_registry_offers_the_ensemble_with_the_other_variants(small_scan):
    geometry, sinogram = small_scan
    assert "ensemble" in registry.VARIANT_NAMES
    assert registry.canonical_variants(["ramp_loss", "ensemble"]) == ("ensemble", "ramp_loss")
    result = registry.run("siren", torch.stack([sinogram, sinogram])[:, None], geometry, pixel_size_mm=PIXEL_MM,
                          iterations=2, variant=("ensemble", "ramp_loss"), device="cpu")
    assert result.image_hu.shape == result.uncertainty_hu.shape == (2, 16, 16)
    assert tuple(result.mu.shape) == (2, 1, 16, 16) and result.settings["ensemble_size"] == neural.ENSEMBLE_SIZE
    assert (result.uncertainty_hu > 0).mean() > 0.5
    with pytest.raises(ValueError, match="ensemble_size"):
        _fit(small_scan, variant="ensemble", ensemble_size=0)


# -- where the maps go: --out, batch units, the page's pictures ---------------------------------------


def _saved_geometry(arrays) -> operators.ParallelBeam:
    size = arrays["reference_hu"].shape
    return operators.ParallelBeam(torch.from_numpy(arrays["angles_rad"]), arrays["sinogram"].shape[1],
                                  image_size=size)


def test_out_writes_the_maps_as_npz_and_png(tmp_path):
    from PIL import Image
    from typer.testing import CliRunner

    from sparsect.app import outputs
    from sparsect.app.cli import cli

    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["reconstruct", "shepp_logan", "--size", "16", "--views", "8", "--method",
                                      "fbp,siren", "--variant", "ensemble", "--iterations", "2", "--device", "cpu",
                                      "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    arrays = np.load(out / "results.npz")
    pixel = float(arrays["pixel_spacing_mm"][0])
    for method in ("fbp", "siren"):
        mu = MU_WATER * (1 + arrays[f"{method}_hu"].astype(np.float64) / 1000)  # HU back to 1/mm, unclipped
        expected = data_consistency_hu(mu, arrays["sinogram"], _saved_geometry(arrays), pixel)
        np.testing.assert_allclose(arrays[f"{method}_consistency_hu"], expected, atol=0.5)
    assert "fbp_uncertainty_hu" not in arrays and arrays["siren_uncertainty_hu"].shape == (16, 16)
    assert arrays["siren_uncertainty_hu"].max() > 0
    with Image.open(out / "consistency.png") as consistency, Image.open(out / "uncertainty.png") as uncertainty:
        bar = outputs.colour_bar(32, 50.0).height  # each map row has its colour bar in HU below it
        assert consistency.size == (32, 16 + bar) and uncertainty.size == (16, 16 + bar)


def test_a_batch_unit_carries_its_maps():
    from sparsect.app import scans
    from sparsect.app.batch import work
    from sparsect.app.settings import ScanSettings
    from sparsect.data import CTSlice, load_sample

    slices = np.stack([load_sample("shepp_logan", 16).hu, load_sample("shepp_logan", 16).hu[::-1].copy()])
    payload = {"unit_id": "u", "method": "fbp", "views": 8, "slices": [0, 1], "hu": slices, "spacing": (1.0, 1.0),
               "preset": "preview", "variant": [], "iterations": None, "photons": None, "seed": 0, "device": "cpu",
               "batch_size": 2, "simulation": "same-grid"}
    result = work.compute(payload)
    assert result["ok"], result
    assert result["consistency"].shape == (2, 16, 16) and result["uncertainty"] is None
    for index in (0, 1):  # one slice at a time, simulated and reconstructed again
        scan = scans.simulate(CTSlice(hu=slices[index], spacing=(1.0, 1.0)),
                              ScanSettings(views=8, seed=index, simulation="same-grid"))
        fbp = registry.run("fbp", scan.sinogram, scan.geometry, pixel_size_mm=scan.pixel_size_mm, device="cpu")
        expected = data_consistency_hu(fbp.mu, scan.sinogram, scan.geometry, scan.pixel_size_mm)
        np.testing.assert_allclose(result["consistency"][index], expected, atol=0.5)


def test_map_pictures_share_one_scale():
    from sparsect.app import outputs
    from sparsect.app.page import figures

    small, large = np.full((8, 8), 1.0), np.full((8, 8), -40.0)
    tiles = outputs.map_tiles({"a": small, "b": large})
    assert list(tiles) == ["a +/-50 HU", "b +/-50 HU"]  # one limit for both, from the larger map
    a, b = (np.asarray(t) for t in tiles.values())
    assert (a[..., 0] > a[..., 2]).all() and (b[..., 2] > b[..., 0]).all()  # red above 0, blue below
    spread = np.asarray(figures.map_tile(np.full((8, 8), 50.0), 50.0, 16, signed=False))
    assert spread.shape == (16, 16, 3) and (spread[..., 0] > spread[..., 2]).all()
    assert figures.colorbar(50.0, 200, signed=False).size == (200, 54)
