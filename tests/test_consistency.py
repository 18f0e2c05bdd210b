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
    assert ensemble.parameters["ensemble_seeds"] == [3, 4, 5] and ensemble.parameters["variant"] == ["ensemble"]
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
    assert tuple(result.mu.shape) == (2, 1, 16, 16) and result.parameters["ensemble_size"] == neural.ENSEMBLE_SIZE
    assert (result.uncertainty_hu > 0).mean() > 0.5
    with pytest.raises(ValueError, match="ensemble_size"):
        _fit(small_scan, variant="ensemble", ensemble_size=0)
