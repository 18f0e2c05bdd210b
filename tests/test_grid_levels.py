"""A network fit on two grids (reconstruct.grid_levels): the coarse grid's arithmetic, the network carried from the
coarse grid to the scan's own, progress and stop requests."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from skimage.data import shepp_logan_phantom
from skimage.transform import resize
from test_fit import _tiny

from sparsect import operators
from sparsect.reconstruct.fit import fit
from sparsect.reconstruct.grid_levels import coarse_size

SIZE, VIEWS = 64, 24


@pytest.mark.parametrize("image_size,side,expected", [
    ((512, 512), 128, (128, 128)), ((128, 128), 128, None), ((100, 100), 128, None), ((512, 256), 128, (128, 64)),
    ((300, 200), 128, (75, 50)), ((257, 256), 128, None)])
def test_the_coarse_grid_keeps_the_aspect_ratio_within_the_side(image_size, side, expected):
    assert coarse_size(image_size, side) == expected


@pytest.fixture(scope="module")
def problem():
    phantom = resize(shepp_logan_phantom(), (SIZE, SIZE), anti_aliasing=True).astype(np.float64)
    radon = operators.Radon(operators.ParallelBeam.sparse(VIEWS, (SIZE, SIZE)))
    return radon, radon(torch.from_numpy(phantom)).float()


def _sinogram_mse(radon, image, sinogram):
    """The scan's-grid data misfit of an image, in float64 (independent of the fit's own loss)."""
    return float(((radon(image.double()) - sinogram.double()) ** 2).mean())


def test_a_network_fitted_on_the_coarse_grid_explains_the_data_on_the_fine_grid(problem):
    radon, sinogram = problem
    settings = dict(iterations=120, lr=1e-3, warmup=0, seed=0, callback_every=1, preview_every=None,
                    output_scale=0.5, coarse_grid=32)
    coarse_only = fit(_tiny(), radon, sinogram, fine_iterations=0, **settings)
    refined = fit(_tiny(), radon, sinogram, fine_iterations=30, **settings)
    for result in (coarse_only, refined):
        assert result.image.shape == (SIZE, SIZE) and result.iterations == 120 and len(result.curve) == 120
    assert coarse_only.settings["grids"] == {"coarse": [32, 32], "coarse_iterations": 120, "fine_iterations": 0}
    assert refined.settings["grids"] == {"coarse": [32, 32], "coarse_iterations": 90, "fine_iterations": 30}
    start = _sinogram_mse(radon, torch.zeros(SIZE, SIZE), sinogram)
    carried = _sinogram_mse(radon, coarse_only.image, sinogram)
    # the coarse fit's own loss (its last step) and the same network's misfit on the scan's grid agree in scale: the
    # coarse grid's pixels and output scale were converted, else the fine-grid image would be off by the factor 2
    assert carried < 0.05 * start and 0.2 < carried / coarse_only.curve[-1] < 5
    assert _sinogram_mse(radon, refined.image, sinogram) < carried  # the fine steps fit what 32² could not


def test_progress_counts_one_budget_and_previews_on_the_scans_grid(problem):
    radon, sinogram = problem
    seen = []
    fit(_tiny(), radon, sinogram, iterations=20, lr=1e-3, warmup=0, seed=0, callback_every=1, preview_every=5,
        output_scale=0.5, coarse_grid=32, fine_iterations=6, warm_start_steps=4, init_image=torch.zeros(SIZE, SIZE),
        callback=seen.append)
    main = [p for p in seen if p.phase == "fit"]
    assert [p.iteration for p in main] == list(range(1, 21)) and {p.iterations for p in main} == {20}
    assert [p.phase for p in seen[:4]] == ["warm_start"] * 4
    assert {p.image.shape for p in seen if p.image is not None} == {(SIZE, SIZE)}


def test_a_stop_on_the_coarse_grid_still_gives_the_scans_grid(problem):
    radon, sinogram = problem
    event, steps = threading.Event(), []

    def count(progress):
        steps.append(progress.iteration)
        if len(steps) == 5:
            event.set()

    result = fit(_tiny(), radon, sinogram, iterations=40, lr=1e-3, seed=0, callback_every=1, preview_every=None,
                 output_scale=0.5, coarse_grid=32, fine_iterations=10, callback=count, stop=event)
    assert result.stop_reason == "stopped" and result.image.shape == (SIZE, SIZE)
    assert result.settings["grids"]["fine_iterations"] == 0 and result.iterations == 5


def test_a_scan_no_larger_than_the_coarse_grid_is_fitted_on_its_own(problem):
    radon, sinogram = problem
    result = fit(_tiny(), radon, sinogram, iterations=3, seed=0, output_scale=0.5, coarse_grid=SIZE,
                 fine_iterations=1)
    assert "grids" not in result.settings and result.iterations == 3


def test_bad_grid_settings_are_refused():
    from sparsect.reconstruct.fit_config import FitConfig

    with pytest.raises(ValueError, match="coarse_grid"):
        FitConfig(coarse_grid=4)
    with pytest.raises(ValueError, match="fine_iterations"):
        FitConfig(fine_iterations=-1)


def test_the_coarse_grid_variant_sets_the_two_grids_and_is_recommended():
    from sparsect.reconstruct import neural
    from sparsect.reconstruct.variants import COARSE_GRID, FINE_SHARE, RECOMMENDED_VARIANTS

    config = neural.fit_config("lrnn", "preview", 200, ["coarse_grid"])
    assert config.coarse_grid == COARSE_GRID and config.fine_iterations == round(FINE_SHARE * 200)
    assert all("coarse_grid" in variants for variants in RECOMMENDED_VARIANTS.values())  # one budget on the page


def test_band_shares_follow_the_grid_size():
    from sparsect.reconstruct.tv_blend import BAND_BLEND_SHARES, LARGE_GRID_BAND_SHARES, band_shares

    large = LARGE_GRID_BAND_SHARES[256]["lrnn"]
    assert large != BAND_BLEND_SHARES["lrnn"]
    assert band_shares("lrnn", (128, 128)) == BAND_BLEND_SHARES["lrnn"] == band_shares("lrnn", (3, 200, 255))
    assert band_shares("lrnn", (256, 256)) == band_shares("lrnn", (1, 512, 384)) == large
    assert band_shares("wire", (512, 512)) == BAND_BLEND_SHARES["wire"]  # no larger-grid entry: its own


def test_networks_fitted_side_by_side_go_through_both_grids(problem):
    radon, sinogram = problem
    stacked = torch.stack([sinogram, sinogram])[:, None]
    result = fit([_tiny(0), _tiny(1)], radon, stacked, iterations=12, lr=1e-3, seed=0, preview_every=None,
                 output_scale=(0.5, 0.5), coarse_grid=32, fine_iterations=4)
    assert result.image.shape == (2, SIZE, SIZE) and result.settings["grids"]["fine_iterations"] == 4
    assert not torch.equal(result.image[0], result.image[1])  # each network its own
