"""Metrics against scikit-image and float64 reference formulas."""

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from sparsect.reconstruct import metrics

SK_SSIM = {"data_range": 1.0, "gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False}


def _pair(shape=(48, 40), seed=0):
    rng = np.random.default_rng(seed)
    reference = rng.uniform(-1100, 3200, shape)
    reference[10:30, 8:25] = 40.0  # a flat region next to noise
    image = reference + rng.normal(0, 250, shape)
    return image.astype(np.float32), reference.astype(np.float32)


def _reference_normalize(image, low, high):
    return (np.clip(image.astype(np.float64), low, high) - low) / (high - low)


@pytest.mark.parametrize("window", [(-1024, 3071), (-160, 240), "brain", "lung", "bone", "full"])
def test_psnr_matches_skimage(window):
    image, reference = _pair()
    low, high = metrics.window_bounds(window)
    expected = peak_signal_noise_ratio(_reference_normalize(reference, low, high),
                                       _reference_normalize(image, low, high), data_range=1.0)
    assert metrics.psnr(image, reference, window=window) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("window", [(-1024, 3071), "soft_tissue", "subdural"])
def test_ssim_matches_skimage(window):
    image, reference = _pair()
    low, high = metrics.window_bounds(window)
    expected = structural_similarity(_reference_normalize(image, low, high),
                                     _reference_normalize(reference, low, high), **SK_SSIM)
    assert metrics.ssim(image, reference, window=window) == pytest.approx(expected, abs=1e-6)


def test_masked_metrics_match_skimage_full_map():
    image, reference = _pair((40, 40), seed=1)
    a, b = _reference_normalize(image, -1024, 3071), _reference_normalize(reference, -1024, 3071)
    _, full_map = structural_similarity(a, b, full=True, **SK_SSIM)
    circle = metrics.circle_mask(image.shape)
    assert metrics.ssim(image, reference, mask="circle") == pytest.approx(full_map[circle].mean(), abs=1e-6)
    np.testing.assert_allclose(metrics.ssim_map(image, reference), full_map, atol=1e-9)

    rng = np.random.default_rng(2)
    custom = rng.random(image.shape) > 0.5
    assert metrics.ssim(image, reference, mask=custom) == pytest.approx(full_map[custom].mean(), abs=1e-6)
    expected_psnr = peak_signal_noise_ratio(b[custom], a[custom], data_range=1.0)
    assert metrics.psnr(image, reference, mask=custom) == pytest.approx(expected_psnr, abs=1e-6)
    expected_rmse = np.sqrt(np.mean((image[custom].astype(np.float64) - reference[custom]) ** 2))
    assert metrics.rmse_hu(image, reference, mask=custom) == pytest.approx(expected_rmse, rel=1e-9)


def test_windows_are_center_width():
    assert metrics.window_bounds("brain") == (0.0, 80.0)
    assert metrics.window_bounds("subdural") == (-32.5, 182.5)
    assert metrics.window_bounds("soft_tissue") == (-160.0, 240.0)
    assert metrics.window_bounds("lung") == (-1350.0, 150.0)
    assert metrics.window_bounds("bone") == (-500.0, 1300.0)
    assert metrics.window_bounds("full") == (-1024.0, 3071.0)
    image, reference = _pair()
    assert metrics.psnr(image, reference, window="brain") == metrics.psnr(image, reference, window=(0, 80))
    with pytest.raises(ValueError):
        metrics.window_bounds("liver")
    with pytest.raises(ValueError):
        metrics.window_bounds((100, 100))


def test_rmse_is_unclipped_hu():
    reference = np.zeros((16, 16), np.float32)
    image = np.full((16, 16), 5000.0, np.float32)  # far outside every window
    assert metrics.rmse_hu(image, reference) == pytest.approx(5000.0)
    # windowed metrics saturate instead: both clip to different window ends
    assert metrics.psnr(image, reference, window=(-100, 100)) == pytest.approx(20 * np.log10(2.0), abs=1e-9)


def test_circle_mask_geometry():
    mask = metrics.circle_mask((64, 64))
    assert mask.shape == (64, 64) and mask[32, 32] and not mask[0, 0] and mask[32, 0] and mask[0, 32]
    assert mask.sum() == pytest.approx(np.pi * 32 ** 2, rel=0.02)
    assert np.array_equal(mask, mask[::-1]) and np.array_equal(mask, mask.T)


def test_identical_and_batched_inputs():
    image, reference = _pair((32, 32))
    assert metrics.psnr(reference, reference) == np.inf
    assert metrics.ssim(reference, reference) == pytest.approx(1.0)
    assert metrics.rmse_hu(reference, reference) == 0.0

    batch = np.stack([image, reference])
    refs = np.stack([reference, reference])
    result = metrics.compare(torch.from_numpy(batch), refs)
    assert set(result) == {"psnr", "ssim", "rmse_hu", "psnr_range", "ssim_range", "rmse_soft_hu"}
    assert result["psnr"].shape == (2,) and result["psnr"][1] == np.inf
    single = metrics.compare(image, reference)
    for key in result:
        assert result[key][0] == pytest.approx(single[key], rel=1e-12)
    # compare defaults to the inscribed circle
    assert single["psnr"] == pytest.approx(metrics.psnr(image, reference, mask="circle"))
    assert single["psnr"] != pytest.approx(metrics.psnr(image, reference, mask=None))


def test_ssim_decreases_with_noise():
    _, reference = _pair((48, 48))
    rng = np.random.default_rng(3)
    values = [metrics.ssim(reference + rng.normal(0, s, reference.shape), reference) for s in (10, 100, 500)]
    assert values[0] > values[1] > values[2]


def test_shape_errors():
    with pytest.raises(ValueError):
        metrics.psnr(np.zeros((8, 8)), np.zeros((8, 9)))
    with pytest.raises(ValueError):
        metrics.ssim(np.zeros((8, 8)), np.zeros((8, 8)))  # smaller than the 11x11 window
    with pytest.raises(ValueError):
        metrics.psnr(np.zeros((8, 8)), np.zeros((8, 8)), mask=np.zeros((8, 8), bool))
    with pytest.raises(ValueError):
        metrics.psnr(np.zeros((8, 8)), np.zeros((8, 8)), mask="square")


# ----------------------------------------------------------------------------------------------------
# Reference-range metrics and the soft-tissue RMSE
# ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mask", [None, "circle"])
def test_range_metrics_match_skimage_with_the_references_own_range(mask):
    image, reference = _pair((40, 40), seed=4)
    image, reference = image.astype(np.float64), reference.astype(np.float64)
    reference[0, 0] = 3500.0  # a corner outside the circle: widens the whole image's range only
    selected = np.ones(reference.shape, bool) if mask is None else metrics.circle_mask(reference.shape)
    span = reference[selected].max() - reference[selected].min()
    assert span < reference.max() - reference.min() or mask is None  # the circle's range, not the image's
    expected_psnr = peak_signal_noise_ratio(reference[selected], image[selected], data_range=span)
    assert metrics.psnr_range(image, reference, mask=mask) == pytest.approx(expected_psnr, abs=1e-9)
    low = reference[selected].min()  # both mapped by the reference's min..max onto [0, 1], unclipped
    unit_image, unit_reference = (image - low) / span, (reference - low) / span
    if mask is None:
        expected_ssim = structural_similarity(unit_image, unit_reference, **SK_SSIM)
    else:
        _, full_map = structural_similarity(unit_image, unit_reference, full=True, **SK_SSIM)
        expected_ssim = full_map[selected].mean()
    assert metrics.ssim_range(image, reference, mask=mask) == pytest.approx(expected_ssim, abs=1e-9)


def test_range_metrics_do_not_clip_and_batch_per_reference():
    reference = np.zeros((16, 16))
    reference[4:12, 4:12] = 100.0  # data range 100 HU
    image = reference.copy()
    image[0, 0] = 5000.0  # far outside the range: counts in full
    mse = 5000.0 ** 2 / 256
    assert metrics.psnr_range(image, reference) == pytest.approx(10 * np.log10(100.0 ** 2 / mse), abs=1e-12)
    wide = reference * 3  # the same error against a 300 HU range is 20 log10(3) dB better
    both = metrics.psnr_range(np.stack([image, wide + (image - reference)]), np.stack([reference, wide]))
    assert both[1] - both[0] == pytest.approx(20 * np.log10(3.0), abs=1e-9)
    with pytest.raises(ValueError, match="constant"):
        metrics.psnr_range(image, np.zeros((16, 16)))


def test_rmse_soft_hu_by_hand():
    reference = np.array([[-1000.0, -200.0, 0.0, 200.0], [201.0, 1000.0, 40.0, -199.0]])
    image = reference + np.array([[500.0, 3.0, -4.0, 12.0], [900.0, -700.0, 0.0, 6.0]])
    # soft-tissue reference pixels (inclusive bounds): -200, 0, 200, 40, -199 with errors 3, -4, 12, 0, 6
    expected = np.sqrt((9 + 16 + 144 + 0 + 36) / 5)
    assert metrics.rmse_soft_hu(image, reference) == pytest.approx(expected, rel=1e-12)
    only_first_row = np.array([[True] * 4, [False] * 4])
    assert metrics.rmse_soft_hu(image, reference, mask=only_first_row) == pytest.approx(np.sqrt(169 / 3))
    assert np.isnan(metrics.rmse_soft_hu(image, np.full_like(reference, 1000.0)))
    batch = metrics.rmse_soft_hu(np.stack([image, image]), np.stack([reference, np.full_like(reference, -500.0)]))
    assert batch[0] == pytest.approx(expected) and np.isnan(batch[1])


def test_compare_reports_every_metric_and_the_display_window():
    image, reference = _pair((32, 32), seed=5)
    scores = metrics.compare(image, reference, display_window="brain")
    assert scores["psnr_range"] == pytest.approx(metrics.psnr_range(image, reference, mask="circle"))
    assert scores["ssim_range"] == pytest.approx(metrics.ssim_range(image, reference, mask="circle"))
    assert scores["rmse_soft_hu"] == pytest.approx(metrics.rmse_soft_hu(image, reference, mask="circle"))
    low, high = metrics.window_bounds("brain")
    selected = metrics.circle_mask(image.shape)
    expected = peak_signal_noise_ratio(_reference_normalize(reference, low, high)[selected],
                                       _reference_normalize(image, low, high)[selected], data_range=1.0)
    assert scores["psnr_display"] == pytest.approx(expected, abs=1e-9)
    assert scores["ssim_display"] == pytest.approx(metrics.ssim(image, reference, "brain", "circle"))
    assert "psnr_display" not in metrics.compare(image, reference)
