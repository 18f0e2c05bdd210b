"""HU <-> attenuation, noise statistics, simulated sinogram units, phantom and samples."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.data import shepp_logan_phantom

from sparsect import data, operators


def test_hu_to_mu_values_and_types():
    hu = np.array([-2000.0, -1024.0, -1000.0, 0.0, 1000.0])
    mu = data.hu_to_mu(hu)
    np.testing.assert_allclose(mu, [0.0, 0.0, 0.0, 0.0192, 0.0384])
    assert isinstance(mu, np.ndarray)
    t = data.hu_to_mu(torch.tensor(hu, dtype=torch.float32), mu_water=0.02)
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32
    torch.testing.assert_close(t, torch.tensor([0.0, 0.0, 0.0, 0.02, 0.04]))
    back = data.mu_to_hu(data.hu_to_mu(hu[2:]))
    np.testing.assert_allclose(back, hu[2:], atol=1e-9)
    assert float(data.mu_to_hu(torch.tensor(-1.0))) == -1000.0
    with pytest.raises(ValueError):
        data.hu_to_mu(hu, mu_water=0)


@pytest.mark.parametrize("electronic", [0.0, 5.0])
def test_counts_match_poisson_theory(electronic):
    n = 20000
    p = torch.tensor([0.0, 1.0, 3.0])[:, None].expand(3, n)
    i0 = 1000.0
    counts = data.simulate_counts(p, i0, electronic_noise=electronic, seed=123)
    assert counts.shape == (3, n)
    for k, pk in enumerate([0.0, 1.0, 3.0]):
        lam = i0 * math.exp(-pk)
        var = lam + electronic**2
        mu4 = lam * (1 + 3 * lam) + 6 * lam * electronic**2 + 3 * electronic**4  # Poisson + Gaussian
        x = counts[k].numpy()
        assert abs(x.mean() - lam) < 3 * math.sqrt(var / n)
        assert abs(x.var(ddof=1) - var) < 3 * math.sqrt((mu4 - var**2) / n)
    if electronic == 0:
        assert torch.equal(counts, counts.round()) and bool((counts >= 0).all())


def test_noise_reproducible_and_global_rng_untouched():
    p = torch.linspace(0, 4, 500)
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()
    a = data.simulate_counts(p, 1e4, 2.0, seed=7)
    b = data.simulate_counts(p, 1e4, 2.0, seed=7)
    c = data.simulate_counts(p, 1e4, 2.0, seed=8)
    d = data.simulate_counts(p, 1e4, 2.0)
    e = data.simulate_counts(p, 1e4, 2.0)
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(d, e)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert all(np.array_equal(x, y) for x, y in zip(np.random.get_state(), np_state, strict=True))


def test_log_transform_guard():
    counts = torch.tensor([0.0, -3.0, 0.5, 1000.0, 100.0])
    p = data.counts_to_line_integrals(counts, 1000.0)
    expected = [math.log(2000.0)] * 3 + [0.0, math.log(10.0)]
    torch.testing.assert_close(p, torch.tensor(expected, dtype=torch.float64))
    assert data.COUNT_GUARD == 0.5


def _water_disc(size: int, radius_px: float) -> np.ndarray:
    c = (size - 1) / 2
    y, x = np.mgrid[:size, :size]
    return np.where((x - c) ** 2 + (y - c) ** 2 <= radius_px**2, 0.0, -1000.0).astype(np.float32)


def test_line_integrals_are_attenuation_times_mm():
    """Water disc (radius 50 px = 25 mm at 0.5 mm pixels): integral = mu_water * chord length in mm."""
    pytest.importorskip("operators")
    sim = data.simulate(_water_disc(128, 50.0), n_views=4, pixel_size_mm=0.5)
    assert sim.sinogram.shape == (4, sim.geometry.det_count) and sim.sinogram.dtype == torch.float32
    assert sim.counts is None and torch.equal(sim.sinogram, sim.clean)
    u = (np.arange(sim.geometry.det_count) - (sim.geometry.det_count - 1) / 2) * sim.geometry.det_spacing
    chord_mm = 2 * np.sqrt(np.clip(50.0**2 - u**2, 0, None)) * 0.5
    expected = 0.0192 * chord_mm
    inside = np.abs(u) < 40
    area_mm2 = math.pi * 25.0**2  # integral over the detector (mm) of the line integrals = mu * disc area
    for view in sim.sinogram.numpy().astype(np.float64):
        np.testing.assert_allclose(view[inside], expected[inside], rtol=0.03)
        assert np.abs(view[np.abs(u) > 52]).max() < 1e-4
        assert view.sum() * sim.geometry.det_spacing * 0.5 == pytest.approx(0.0192 * area_mm2, rel=0.01)
    torch.testing.assert_close(sim.mu, data.hu_to_mu(torch.from_numpy(_water_disc(128, 50.0))))


def test_simulate_noise_and_geometry_defaults():
    pytest.importorskip("operators")
    image = data.shepp_logan_hu(64)
    noisy = data.simulate(image, 12, photons=1e5, seed=3)
    again = data.simulate(image, 12, photons=1e5, seed=3)
    assert torch.equal(noisy.sinogram, again.sinogram)
    assert noisy.counts is not None and noisy.counts.shape == noisy.sinogram.shape
    err = (noisy.sinogram - noisy.clean).double()
    assert 0 < err.abs().mean() < 0.05
    parallel = data.simulate(image, 10)
    assert parallel.geometry.n_angles == 10
    step = float(parallel.geometry.angles[1] - parallel.geometry.angles[0])
    assert step * 10 == pytest.approx(math.pi)
    fan = data.simulate(image, 10, beam="fan")
    assert type(fan.geometry).__name__ == "FanBeam"
    assert float(fan.geometry.angles[1] - fan.geometry.angles[0]) * 10 == pytest.approx(2 * math.pi)
    fan_half = data.simulate(image, 10, beam="fan", arc=math.pi)
    assert float(fan_half.geometry.angles[-1]) < math.pi
    assert data.simulate(image, 10, det_count=77).sinogram.shape == (10, 77)
    ct = data.CTSlice(hu=image, spacing=(0.5, 0.5))
    torch.testing.assert_close(data.simulate(ct, 10).sinogram, parallel.sinogram * 0.5)
    with pytest.raises(ValueError):
        data.simulate(image, 10, beam="cone")
    with pytest.raises(ValueError):
        data.simulate(image, 10, electronic_noise=1.0)



def test_beam_keyword_and_its_deprecated_alias():
    """``beam=`` names the kind of beam; ``geometry=`` still works for one release, with a warning."""
    image = data.shepp_logan_hu(32)
    fan = data.simulate(image, 6, beam="fan")
    assert isinstance(fan.geometry, operators.FanBeam)
    assert isinstance(data.simulate(image, 6, beam=None).geometry, operators.ParallelBeam)  # None: the default
    with pytest.warns(DeprecationWarning, match=r"^geometry= is deprecated; use beam=$") as caught:
        old = data.simulate(image, 6, geometry="fan")
    assert caught[0].filename == __file__  # points at the caller, not at data/simulate.py
    assert isinstance(old.geometry, operators.FanBeam)
    torch.testing.assert_close(old.sinogram, fan.sinogram)
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="beam must be 'parallel' or 'fan'"):
        data.simulate(image, 6, geometry="cone")
    for beam in ("fan", "parallel"):
        with pytest.raises(TypeError, match="both beam= and geometry="):
            data.simulate(image, 6, beam=beam, geometry="fan")
    with pytest.raises(ValueError, match="beam must be 'parallel' or 'fan', got 'cone'"):
        data.simulate(image, 6, beam="cone")

def test_shepp_logan_mapping():
    full = data.shepp_logan_hu(400)
    assert full.dtype == np.float32 and full.shape == (400, 400)
    np.testing.assert_allclose(full, -1000 + 2000 * shepp_logan_phantom(), atol=1e-3)
    small = data.shepp_logan_hu()
    assert small.shape == (256, 256) and small.dtype == np.float32
    assert -1000.0 <= small.min() and small.max() <= 1000.0
    assert small[0, 0] == -1000.0


def test_samples():
    names = data.samples()
    assert set(names) == {"ct_small", "head_693", "shepp_logan"}
    assert all(isinstance(v, str) and v for v in names.values())
    head = data.load_sample("head_693")
    assert head.hu.shape == (512, 512) and head.meta["modality"] == "CT" and head.dataset.Modality == "CT"
    ct = data.load_sample("ct_small")
    assert ct.hu.shape == (128, 128) and ct.spacing == pytest.approx((0.661468, 0.661468))
    small = data.load_sample("ct_small", size=64)
    assert small.hu.shape == (64, 64) and small.hu.dtype == np.float32
    assert small.spacing == pytest.approx((0.661468 * 2, 0.661468 * 2))
    assert abs(small.hu.mean() - ct.hu.mean()) < 5
    phantom = data.load_sample("shepp_logan")
    assert phantom.hu.shape == (256, 256) and phantom.dataset is None
    with pytest.raises(data.UnknownSampleError) as info:
        data.load_sample("liver")
    assert all(name in str(info.value) for name in names)
