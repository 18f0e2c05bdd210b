"""Tests of the frequency-band blend of two reconstructions (reconstruct.blend)."""

from __future__ import annotations

import numpy as np
import pytest

from sparsect.reconstruct import metrics
from sparsect.reconstruct.blend import band_response, blend

N = 64


def test_band_response_steps_from_the_coarse_to_the_fine_share():
    response = band_response((2 * N, 2 * N), coarse=0.25, fine=0.75, cutoff=0.25, transition=0.5)
    f = np.fft.fftfreq(2 * N)
    radius = np.hypot(f[:, None], f[None, :])
    assert response.shape == (2 * N, 2 * N) and response[0, 0] == 0.25
    np.testing.assert_allclose(response[radius <= 0.25 * 2 ** -0.5], 0.25)
    np.testing.assert_allclose(response[radius >= 0.25 * 2 ** 0.5], 0.75)
    middle = np.argmin(np.abs(radius[0] - 0.25))
    assert response[0, middle] == pytest.approx(0.5, abs=0.05)
    order = np.argsort(radius.ravel())
    assert np.all(np.diff(response.ravel()[order]) >= -1e-12)  # monotone in the radial frequency
    np.testing.assert_allclose(band_response((8, 6), 0.4, 0.4, 0.1, 1.0), 0.4)


@pytest.mark.parametrize("kwargs, message", [
    (dict(coarse=-0.1), "coarse share"), (dict(fine=1.5), "fine share"), (dict(cutoff=0.0), "cutoff"),
    (dict(cutoff=0.7), "cutoff"), (dict(transition=0.0), "transition"), (dict(transition=float("nan")), "transition"),
])
def test_band_response_rejects_bad_settings(kwargs, message):
    settings = dict(coarse=0.25, fine=0.75, cutoff=0.25, transition=0.5) | kwargs
    with pytest.raises(ValueError, match=message):
        band_response((16, 16), **settings)


def test_a_flat_response_is_the_weighted_mean_at_every_pixel():
    rng = np.random.default_rng(0)
    base, other = rng.normal(size=(2, N, N)), rng.normal(size=(2, N, N))
    expected = 0.3 * other + 0.7 * base
    np.testing.assert_allclose(blend(base, other, 0.3), expected, rtol=0, atol=1e-12)
    # the same through the spectrum: padding, half spectrum and crop leave every pixel, edges included, exact
    np.testing.assert_allclose(blend(base, other, np.full((2 * N, 2 * N), 0.3)), expected, rtol=0, atol=1e-12)


def test_band_blend_takes_each_tone_at_its_share():
    """A coarse tone (0.03 cycles/pixel) and a fine one (0.45) come out at the coarse and the fine share away
    from the edges, where truncating the image spreads their spectra."""
    x = np.arange(N)[None, :] * np.ones((N, 1))
    coarse_tone, fine_tone = np.cos(2 * np.pi * 0.03 * x), np.cos(2 * np.pi * 0.45 * x)
    response = band_response((2 * N, 2 * N), coarse=0.25, fine=0.75, cutoff=0.25, transition=0.5)
    out = blend(np.zeros((N, N)), coarse_tone + fine_tone, response)
    expected = 0.25 * coarse_tone + 0.75 * fine_tone
    np.testing.assert_allclose(out[8:-8, 8:-8], expected[8:-8, 8:-8], rtol=0, atol=0.01)
    # base + share * (other - base): swapping the roles swaps the shares
    swapped = blend(coarse_tone + fine_tone, np.zeros((N, N)), response)
    np.testing.assert_allclose(swapped[8:-8, 8:-8], (0.75 * coarse_tone + 0.25 * fine_tone)[8:-8, 8:-8], atol=0.01)


def test_blend_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="one shape"):
        blend(np.zeros((4, 4)), np.zeros((4, 5)), 0.5)
    with pytest.raises(ValueError, match="response must have shape"):
        blend(np.zeros((4, 4)), np.zeros((4, 4)), np.ones((4, 4)))


def test_error_bands_benchmark_splits_the_masked_mean_square_over_its_bands(benchmark_module):
    """benchmarks/error_bands.py's bands add up (Parseval) to the mean square inside the mask, and a pure tone
    lands in its own band."""
    bench = benchmark_module("error_bands")
    rng = np.random.default_rng(1)
    image = rng.normal(size=(N, N))
    circle = np.hypot(*np.mgrid[:N, :N] - (N - 1) / 2) <= N / 2
    values = bench.band_rms(image, circle)
    assert sum(v * v for v in values) == pytest.approx(np.mean(image[circle] ** 2), rel=1e-12)
    tone = np.cos(2 * np.pi * 0.3 * np.arange(N))[None, :] * np.ones((N, 1))
    full = np.ones((N, N), dtype=bool)
    tone_bands = bench.band_rms(tone, full)
    assert tone_bands[3] ** 2 > 0.95 * sum(v * v for v in tone_bands)  # 0.3 cycles/pixel: the 1/4-1/2 band


def test_error_bands_correlation_matches_the_band_passed_images(benchmark_module):
    """benchmarks/error_bands.py's per-band correlation is that of the two images band-passed in space (Parseval),
    1 for an image with itself and -1 with its negative."""
    bench = benchmark_module("error_bands")
    rng = np.random.default_rng(3)
    first = rng.normal(size=(N, N))
    second = 0.6 * first + rng.normal(size=(N, N))
    full = np.ones((N, N), dtype=bool)
    radius = np.hypot(*np.meshgrid(np.fft.fftfreq(N), np.fft.fftfreq(N), indexing="ij"))
    for band, value in enumerate(bench.band_correlation(first, second, full)):
        inside = (radius >= bench.BAND_EDGES[band]) & (radius < bench.BAND_EDGES[band + 1])
        a, b = (np.real(np.fft.ifft2(np.fft.fft2(image) * inside)) for image in (first, second))
        assert value == pytest.approx(float(np.sum(a * b) / np.sqrt(np.sum(a * a) * np.sum(b * b))), abs=1e-9)
    np.testing.assert_allclose(bench.band_correlation(first, first, full), 1.0, atol=1e-12)
    np.testing.assert_allclose(bench.band_correlation(first, -first, full), -1.0, atol=1e-12)


def test_blend_shares_benchmark_scores_the_plain_ends_as_tv_and_the_network(tmp_path, benchmark_module):
    """benchmarks/blend_shares.py: share 0 is TV (margin 0), share 1 the network (its own margin, computed here
    with the metrics directly), a flat band response the plain mean; a saved cell is read back without a fit."""
    bench = benchmark_module("blend_shares")
    yy, xx = np.mgrid[:N, :N]
    reference = np.where(np.hypot(yy - N / 2, xx - N / 2) < N / 3, 40.0, -1000.0)
    rng = np.random.default_rng(2)
    cell = {"reference": reference, "tv": reference + rng.normal(0, 30, reference.shape),
            "network": reference + rng.normal(0, 20, reference.shape)}
    grid = bench.blend_grid([0.5], [0.5], [0.25], [0.5], "lrnn", 128)
    scores = bench.margins(cell, grid)
    assert scores["plain 0.0"] == (0.0, 0.0)
    expected = (metrics.psnr_range(cell["network"], reference, "circle")
                - metrics.psnr_range(cell["tv"], reference, "circle"),
                metrics.ssim_range(cell["network"], reference, "circle")
                - metrics.ssim_range(cell["tv"], reference, "circle"))
    np.testing.assert_allclose(scores["plain 1.0"], expected, rtol=1e-12)
    np.testing.assert_allclose(scores["band 0.5/0.5 at 0.25 c/px, 0.5 oct"], scores["plain 0.5"], atol=1e-9)
    np.savez(tmp_path / "shepp_logan_64_30v_none_lrnn+fbp_init.npz", **cell)
    saved = bench.cell_images(tmp_path, "shepp_logan", 30, 0.0, 64, "lrnn+fbp_init")
    np.testing.assert_array_equal(saved["network"], cell["network"])


def test_blend_shares_combines_saved_network_images_by_weight(tmp_path, benchmark_module):
    """``--combine``: the network image is the weighted mean of the folders' saved images, in float64; a folder
    without exactly one image of the cell is a one-line error."""
    bench = benchmark_module("blend_shares")
    rng = np.random.default_rng(3)
    reference = rng.normal(0, 100, (N, N))
    first, second = rng.normal(0, 100, (2, N, N))
    for name, network in (("warm", first), ("cold", second)):
        (tmp_path / name).mkdir()
        np.savez(tmp_path / name / f"ct_small_{N}_60v_1e+05_lrnn+{name}.npz", reference=reference, tv=reference,
                 network=network.astype(np.float32))
    folders = bench.parse_combine([f"{tmp_path / 'warm'}=2", f"{tmp_path / 'cold'}=1"])
    images = bench.combined_images(folders, "ct_small", 60, 1e5, N)
    expected = (2 * first.astype(np.float32).astype(np.float64) + second.astype(np.float32).astype(np.float64)) / 3
    np.testing.assert_allclose(images["network"], expected, rtol=1e-12, atol=1e-9)
    with pytest.raises(SystemExit, match="holds 0 images"):
        bench.combined_images(folders, "ct_small", 30, 1e5, N)
    for text in (f"{tmp_path / 'warm'}=0", f"{tmp_path / 'none'}=1", "warm"):
        with pytest.raises(ValueError, match="expected FOLDER=WEIGHT"):
            bench.parse_combine([text])
