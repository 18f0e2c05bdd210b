"""Tests of the frequency-band blend of two reconstructions (reconstruct.blend)."""

from __future__ import annotations

import numpy as np
import pytest

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


def test_error_bands_benchmark_splits_the_masked_mean_square_over_its_bands():
    """benchmarks/error_bands.py's bands add up (Parseval) to the mean square inside the mask, and a pure tone
    lands in its own band."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "error_bands.py"
    spec = importlib.util.spec_from_file_location("error_bands_bench", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rng = np.random.default_rng(1)
    image = rng.normal(size=(N, N))
    circle = np.hypot(*np.mgrid[:N, :N] - (N - 1) / 2) <= N / 2
    values = bench.band_rms(image, circle)
    assert sum(v * v for v in values) == pytest.approx(np.mean(image[circle] ** 2), rel=1e-12)
    tone = np.cos(2 * np.pi * 0.3 * np.arange(N))[None, :] * np.ones((N, 1))
    full = np.ones((N, N), dtype=bool)
    tone_bands = bench.band_rms(tone, full)
    assert tone_bands[3] ** 2 > 0.95 * sum(v * v for v in tone_bands)  # 0.3 cycles/pixel: the 1/4-1/2 band
