"""Classical reconstructions against theory, float64 references and independent solvers.
(Over 400 lines on purpose: one module's tests stay together with the fixtures they share.)
"""

import math
import threading

import numpy as np
import pydicom
import pytest
import torch
from pydicom.data import get_testdata_file
from scipy.optimize import minimize, nnls
from skimage.data import shepp_logan_phantom
from skimage.metrics import peak_signal_noise_ratio
from skimage.transform import resize

from sparsect import operators
from sparsect.data.hu import MU_WATER
from sparsect.reconstruct import classical, metrics, registry, solver_common
from sparsect.reconstruct.result import Reconstruction
from sparsect.reconstruct.solver_common import operator_norm


def _hu_to_mu(hu):
    return np.maximum(MU_WATER * (1.0 + np.asarray(hu, np.float64) / 1000.0), 0.0)


def _mu_to_hu(mu):
    return 1000.0 * (np.asarray(mu, np.float64) / MU_WATER - 1.0)


def _simulate(hu, geometry, pixel_size_mm=1.0):
    """Line integrals (mm) of an HU image through the operators' projector, float64."""
    mu = torch.tensor(_hu_to_mu(hu) * pixel_size_mm)
    return operators.Radon(geometry)(mu).float(), _mu_to_hu(_hu_to_mu(hu))


def _dense(geometry):
    """The projector as a dense float64 matrix (rays x pixels)."""
    h, w = geometry.image_size
    basis = torch.eye(h * w, dtype=torch.float64).reshape(h * w, h, w)
    return operators.Radon(geometry)(basis[:, None]).reshape(h * w, -1).T.numpy()


def _small_problem(n=16, views=45, noise=0.02, seed=0):
    geometry = operators.ParallelBeam.sparse(views, (n, n))
    matrix = _dense(geometry)
    yy, xx = np.mgrid[:n, :n] - (n - 1) / 2
    truth = 0.02 * (xx ** 2 + yy ** 2 < (0.4 * n) ** 2) + 0.01 * ((xx - 2) ** 2 + (yy + 1) ** 2 < 4)
    y = matrix @ truth.ravel()
    y = y + np.random.default_rng(seed).normal(0, noise * y.std(), y.shape)
    return geometry, matrix, truth, y, torch.tensor(y.reshape(geometry.sinogram_shape), dtype=torch.float32)


def _shepp_logan_hu(n):
    return (resize(shepp_logan_phantom(), (n, n), anti_aliasing=True) * 2000.0 - 1000.0).astype(np.float32)


def _ct_small_hu():
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    return (ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)).astype(np.float32)


pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------------------------------
# FBP against the analytic Radon transform of a disk
# ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["parallel", "fan"])
@pytest.mark.parametrize("pixel_size_mm", [1.0, 0.5])
def test_fbp_of_analytic_disk(kind, pixel_size_mm):
    n, radius, mu = 64, 20.0, 0.0192 * 1.2  # 200 HU disk, radius in pixels
    if kind == "parallel":
        geometry = operators.ParallelBeam.sparse(180, (n, n))
    else:
        geometry = operators.FanBeam.sparse(360, (n, n))
    points, directions = geometry.rays()
    distance = (points[..., 0] * directions[..., 1] - points[..., 1] * directions[..., 0]).abs()
    chord_mm = 2.0 * torch.sqrt(torch.clamp(radius ** 2 - distance ** 2, min=0)) * pixel_size_mm
    sinogram = (mu * chord_mm).float()
    result = classical.fbp(sinogram, geometry, pixel_size_mm=pixel_size_mm)
    yy, xx = np.mgrid[:n, :n] - (n - 1) / 2
    r = np.hypot(xx, yy)
    inside, outside = r < 0.7 * radius, (r > 1.3 * radius) & (r < 0.45 * n)
    assert result.mu.shape == (n, n) and result.image_hu.shape == (n, n)
    assert float(result.mu[torch.from_numpy(inside)].mean()) == pytest.approx(mu, rel=0.01)
    assert result.image_hu[inside].mean() == pytest.approx(200.0, abs=15.0)
    assert result.image_hu[outside].mean() == pytest.approx(-1000.0, abs=15.0)


# ----------------------------------------------------------------------------------------------------
# CGLS / SIRT / OS-SART
# ----------------------------------------------------------------------------------------------------

def test_cgls_converges_to_least_squares():
    geometry, matrix, _, y, y4 = _small_problem()
    reference = np.linalg.lstsq(matrix, y, rcond=None)[0]
    result = classical.cgls(y4, geometry, iterations=400, nonnegative=False, tol=1e-7)
    error = np.abs(result.mu.numpy().ravel() - reference).max() / np.abs(reference).max()
    assert error < 3e-3
    assert result.method == "cgls" and result.n_parameters == 0 and result.iterations <= 400


def test_sirt_matches_float64_formula_and_is_fejer_monotone():
    geometry, matrix, _, y, y4 = _small_problem()
    row_sums, column_sums = matrix.sum(1), matrix.sum(0)
    row = np.where(row_sums > 1e-6, 1.0 / np.maximum(row_sums, 1e-6), 0.0)
    column = np.where(column_sums > 1e-6, 1.0 / np.maximum(column_sums, 1e-6), 0.0)
    x = np.zeros(matrix.shape[1])
    for _ in range(20):
        x = np.maximum(x + column * (matrix.T @ (row * (y - matrix @ x))), 0.0)
    result = classical.sirt(y4, geometry, iterations=20)
    np.testing.assert_allclose(result.mu.numpy().ravel(), x, atol=1e-5 * np.abs(x).max())

    # Projected gradient descent in the C^-1 metric: the C^-1 distance to the weighted NNLS solution
    # never grows.
    weight = np.sqrt(row)
    solution = nnls(weight[:, None] * matrix, weight * y)[0]
    distances = []
    for iterations in (5, 50, 500):
        xk = classical.sirt(y4, geometry, iterations=iterations).mu.numpy().ravel().astype(np.float64)
        distances.append(np.sqrt(np.sum((xk - solution) ** 2 / np.maximum(column, 1e-12))))
    assert distances[0] > distances[1] > distances[2]


@pytest.mark.parametrize("method", ["sirt", "cgls"])
def test_data_residual_decreases_monotonically(method):
    n = 64
    geometry = operators.ParallelBeam.sparse(16, (n, n))
    sinogram, _ = _simulate(_shepp_logan_hu(n), geometry)
    A64 = operators.Radon(geometry)
    y64 = sinogram.double()
    residuals = []
    for iterations in (1, 2, 4, 8, 16):
        result = getattr(classical, method)(sinogram, geometry, iterations=iterations, nonnegative=False)
        residuals.append(float((A64(result.mu.double()) - y64).norm()))
        if iterations == 16:
            curve = np.array(result.curve)
            assert len(curve) == 16
            assert curve[-1] == pytest.approx(residuals[-1], rel=1e-3)
    assert all(b < a for a, b in zip(residuals, residuals[1:], strict=False))
    assert np.all(np.diff(curve) <= 1e-6 * curve[0])


def test_os_sart_matches_float64_formula_and_beats_sirt_per_epoch():
    geometry, matrix, truth, y, y4 = _small_problem(noise=0.0)
    n_angles, det = geometry.sinogram_shape
    subsets = 5
    row_sums = matrix.sum(1)
    row = np.where(row_sums > 1e-6, 1.0 / np.maximum(row_sums, 1e-6), 0.0)
    view = np.repeat(np.arange(n_angles), det)
    x = np.zeros(matrix.shape[1])
    order = [0, 4, 2, 1, 3]  # bit-reversed order of 0..4 with 3 bits, sorted
    for _ in range(2):
        for s in order:
            mask = (view % subsets == s).astype(np.float64)
            column_sums = matrix.T @ mask
            column = np.where(column_sums > 1e-6, 1.0 / np.maximum(column_sums, 1e-6), 0.0)
            x = np.maximum(x + column * (matrix.T @ (mask * row * (y - matrix @ x))), 0.0)
    result = classical.os_sart(y4, geometry, iterations=2, subsets=subsets)
    np.testing.assert_allclose(result.mu.numpy().ravel(), x, atol=1e-5 * np.abs(x).max())

    os_error = np.linalg.norm(classical.os_sart(y4, geometry, iterations=20, subsets=9).mu.numpy().ravel()
                              - truth.ravel())
    sirt_error = np.linalg.norm(classical.sirt(y4, geometry, iterations=20).mu.numpy().ravel() - truth.ravel())
    assert os_error < 0.5 * sirt_error


# ----------------------------------------------------------------------------------------------------
# TV
# ----------------------------------------------------------------------------------------------------

def _forward_differences(image):
    g = np.zeros((2, *image.shape))
    g[0, :-1] = image[1:] - image[:-1]
    g[1, :, :-1] = image[:, 1:] - image[:, :-1]
    return g


def _divergence_adjoint(g):
    out = np.zeros(g.shape[1:])
    out[:-1] -= g[0, :-1]
    out[1:] += g[0, :-1]
    out[:, :-1] -= g[1, :, :-1]
    out[:, 1:] += g[1, :, :-1]
    return out


def test_tv_reaches_the_objective_of_an_independent_solver():
    n = 12
    geometry, matrix, _, y, y4 = _small_problem(n=n, views=30, noise=0.05)
    lam = 0.05

    def objective(x, eps=0.0):
        residual = matrix @ x - y
        g = _forward_differences(x.reshape(n, n))
        magnitude = np.sqrt((g ** 2).sum(0) + eps ** 2)
        return 0.5 * residual @ residual + lam * magnitude.sum(), residual, g, magnitude

    def smooth(x):
        value, residual, g, magnitude = objective(x, eps=1e-6)
        return value, matrix.T @ residual + lam * _divergence_adjoint(g / magnitude).ravel()

    reference = minimize(smooth, np.zeros(n * n), jac=True, method="L-BFGS-B", bounds=[(0, None)] * (n * n),
                         options={"maxiter": 5000, "maxfun": 10000, "ftol": 1e-15, "gtol": 1e-12}).x
    result = classical.tv(y4, geometry, lam=lam, iterations=600, tol=0)
    x = result.mu.numpy().ravel().astype(np.float64)
    ours, best = objective(x)[0], objective(reference)[0]
    assert ours <= best * (1 + 1e-3)
    assert np.abs(x - reference).max() < 0.02 * reference.max()
    assert result.curve[-1] == pytest.approx(ours, rel=1e-3)
    assert result.settings["lam"] == pytest.approx(lam)
    assert (x >= 0).all()


def test_gradient_adjoint_identity_in_float64():
    """<D x, g> = <x, D^T g> for the image gradient shared by TV and the network penalties, batched, float64."""
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(2, 1, 7, 11, dtype=torch.float64, generator=generator)
    g = torch.randn(2, 1, 2, 7, 11, dtype=torch.float64, generator=generator)
    lhs = float((classical.gradient(x) * g).sum())
    rhs = float((x * classical.gradient_adjoint(g)).sum())
    assert lhs == pytest.approx(rhs, rel=1e-13, abs=1e-12)
    # the Neumann boundary: no difference leaves the image
    assert (classical.gradient(x)[..., 0, -1, :] == 0).all() and (classical.gradient(x)[..., 1, :, -1] == 0).all()


def test_total_variation_of_a_known_image():
    """A 3 x 4 image with a unit step along the rows and a ramp of 2 per column: forward differences (1, 2)
    inside, (0, 2) on the last row, (1, 0) on the last column, (0, 0) in the corner, so
    TV = 6 sqrt(5) + 3 * 2 + 2 * 1."""
    image = torch.tensor([[0.0, 2.0, 4.0, 6.0],
                          [1.0, 3.0, 5.0, 7.0],
                          [2.0, 4.0, 6.0, 8.0]], dtype=torch.float64)
    assert float(classical.total_variation(image)) == pytest.approx(6 * math.sqrt(5) + 6 + 2, rel=1e-15)
    assert float(classical.total_variation(torch.full((5, 5), 3.0))) == 0.0


def test_settings_are_also_readable_as_deprecated_parameters():
    geometry = operators.ParallelBeam.sparse(4, (8, 8))
    result = classical.fbp(np.zeros(geometry.sinogram_shape, dtype=np.float32), geometry)
    assert result.settings["filter"] == "ram-lak"
    with pytest.warns(DeprecationWarning, match="settings"):
        assert result.parameters is result.settings


def test_tv_without_regularisation_is_nonnegative_least_squares():
    geometry, matrix, _, y, y4 = _small_problem(n=12, views=30, noise=0.05)
    reference = nnls(matrix, y)[0]
    result = classical.tv(y4, geometry, lam=0.0, iterations=1500, tol=0, init="zeros")
    assert np.abs(result.mu.numpy().ravel() - reference).max() < 0.02 * reference.max()


@pytest.mark.parametrize("kind", ["parallel", "fan"])
def test_tv_beats_fbp_on_shepp_logan_16_views(kind):
    n = 64
    geometry = (operators.ParallelBeam.sparse(16, (n, n)) if kind == "parallel"
                else operators.FanBeam.sparse(16, (n, n)))
    sinogram, reference = _simulate(_shepp_logan_hu(n), geometry)
    gain = (metrics.psnr(classical.tv(sinogram, geometry).image_hu, reference, mask="circle")
            - metrics.psnr(classical.fbp(sinogram, geometry).image_hu, reference, mask="circle"))
    assert gain >= 3.0


def test_tv_beats_fbp_on_ct_small_30_views():
    hu = _ct_small_hu()
    pixel_size = 0.661468
    geometry = operators.ParallelBeam.sparse(30, hu.shape)
    sinogram, reference = _simulate(hu, geometry, pixel_size)
    results = {name: getattr(classical, name)(sinogram, geometry, pixel_size_mm=pixel_size)
               for name in ("fbp", "sirt", "tv")}
    scores = {name: metrics.compare(r.image_hu, reference) for name, r in results.items()}
    assert scores["tv"]["psnr"] >= scores["fbp"]["psnr"] + 3.0
    assert scores["tv"]["ssim"] > scores["fbp"]["ssim"] + 0.05
    assert scores["sirt"]["psnr"] > scores["fbp"]["psnr"]
    assert scores["tv"]["rmse_hu"] < scores["fbp"]["rmse_hu"]


# ----------------------------------------------------------------------------------------------------
# stop requests
# ----------------------------------------------------------------------------------------------------

_ITERATIVE = [("sirt", {"iterations": 10}), ("cgls", {"iterations": 8, "tol": 0.0}),
              ("os_sart", {"iterations": 6, "subsets": 4}), ("tv", {"iterations": 10, "tol": 0.0})]


def _stop_after(k):
    """A stop callable that returns False for its first ``k`` calls and True from then on."""
    calls = []

    def stop():
        calls.append(None)
        return len(calls) > k

    return stop, calls


@pytest.mark.parametrize("method,kwargs", _ITERATIVE)
def test_stop_returns_the_iterate_reached_so_far(method, kwargs):
    n, k = 32, 3
    geometry = operators.ParallelBeam.sparse(12, (n, n))
    sinogram, _ = _simulate(_shepp_logan_hu(n), geometry, pixel_size_mm=0.8)
    operator_norm(geometry)  # TV's step comes from it: estimated (and checking the stop) once, before this test
    stop, calls = _stop_after(k)
    stopped = getattr(classical, method)(sinogram, geometry, pixel_size_mm=0.8, stop=stop, **kwargs)
    assert stopped.iterations == k and stopped.stop_reason == "stopped"
    assert len(calls) == k + 1  # checked once before each iteration, the last check fired
    assert len(stopped.curve) == k and stopped.settings["iterations"] == kwargs["iterations"]
    short = getattr(classical, method)(sinogram, geometry, pixel_size_mm=0.8, **{**kwargs, "iterations": k})
    assert short.iterations == k and short.stop_reason == "completed"
    np.testing.assert_allclose(stopped.image_hu, short.image_hu, rtol=0, atol=1e-3)
    np.testing.assert_allclose(stopped.mu.numpy(), short.mu.numpy(), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(stopped.curve, short.curve, rtol=1e-6)
    # a stop that never fires leaves the full run untouched
    full = getattr(classical, method)(sinogram, geometry, pixel_size_mm=0.8, **kwargs)
    unfired = getattr(classical, method)(sinogram, geometry, pixel_size_mm=0.8, stop=threading.Event(), **kwargs)
    assert full.iterations == unfired.iterations == kwargs["iterations"] and unfired.stop_reason == "completed"
    np.testing.assert_array_equal(unfired.image_hu, full.image_hu)
    assert np.abs(full.image_hu - stopped.image_hu).max() > 1.0


def test_tv_stops_during_its_operator_norm_estimate(monkeypatch):
    """The power iteration for TV's step (50 projector pairs, seconds at 1024²) checks the stop request too: a stop
    there returns the start image after no iteration, and the interrupted estimate is not kept."""
    monkeypatch.setattr(solver_common, "_NORM_CACHE", {})
    n = 32
    geometry = operators.ParallelBeam.sparse(12, (n, n))
    sinogram, _ = _simulate(_shepp_logan_hu(n), geometry)
    stop, calls = _stop_after(2)
    stopped = classical.tv(sinogram, geometry, iterations=10, stop=stop)
    assert stopped.iterations == 0 and stopped.stop_reason == "stopped" and len(calls) == 4  # 3 in the estimate
    assert solver_common._NORM_CACHE == {}
    start = classical.fbp(sinogram, geometry)
    np.testing.assert_allclose(stopped.mu.numpy(), start.mu.clamp(min=0).numpy(), atol=1e-6)


@pytest.mark.parametrize("method,kwargs", _ITERATIVE)
def test_a_set_event_stops_before_the_first_iteration(method, kwargs):
    n = 32
    geometry = operators.ParallelBeam.sparse(12, (n, n))
    sinogram, _ = _simulate(_shepp_logan_hu(n), geometry)
    event = threading.Event()
    event.set()
    result = getattr(classical, method)(sinogram, geometry, stop=event, **kwargs)
    assert result.iterations == 0 and result.stop_reason == "stopped" and result.curve == []
    assert result.image_hu.shape == (n, n) and np.isfinite(result.image_hu).all()
    if method == "tv":  # the starting image: the clipped ram-lak FBP
        start = classical.fbp(sinogram, geometry).mu.clamp(min=0).numpy()
    else:
        start = np.zeros((n, n), np.float32)
    np.testing.assert_allclose(result.mu.numpy(), start, atol=1e-7)


@pytest.mark.parametrize("method,kwargs", _ITERATIVE)
def test_progress_reports_every_iteration_with_previews(method, kwargs):
    """The callback sees iterations 1..n in order with the curve's values, and previews (first slice,
    attenuation per pixel) every 10 iterations and at the last, the last one equal to the result."""
    n = 32
    geometry = operators.ParallelBeam.sparse(12, (n, n))
    sinogram, _ = _simulate(_shepp_logan_hu(n), geometry, pixel_size_mm=0.8)
    kwargs = {**kwargs, "iterations": 12}
    seen = []
    result = getattr(classical, method)(torch.stack([sinogram, sinogram])[:, None], geometry,
                                        pixel_size_mm=0.8, callback=seen.append, **kwargs)
    assert [p.iteration for p in seen] == list(range(1, 13)) and {p.iterations for p in seen} == {12}
    assert [p.loss for p in seen] == result.curve
    assert [p.iteration for p in seen if p.image is not None] == [10, 12]
    assert seen[-1].image.shape == (n, n) and seen[-1].image.dtype == np.float32
    np.testing.assert_allclose(seen[-1].image / 0.8, result.mu[0, 0].numpy(), rtol=1e-6, atol=1e-9)


def test_fbp_ignores_stop_in_the_registry():
    geometry = operators.ParallelBeam.sparse(12, (16, 16))
    sinogram, _ = _simulate(_shepp_logan_hu(16), geometry)
    event = threading.Event()
    event.set()
    result = registry.run("fbp", sinogram, geometry, stop=event, iterations=5)
    assert result.stop_reason == "completed"
    np.testing.assert_array_equal(result.image_hu, classical.fbp(sinogram, geometry).image_hu)


# ----------------------------------------------------------------------------------------------------
# layout, batches, errors
# ----------------------------------------------------------------------------------------------------

# CGLS stops at 5: on this 12-view problem float32 rounding grows about 10x per CGLS iteration (a batched
# and a single sparse product differ in the last bit), 0.03 HU at 5 iterations and 14 HU at 8.
@pytest.mark.parametrize("method,kwargs", [("fbp", {}), ("sirt", {"iterations": 10}),
                                           ("cgls", {"iterations": 5, "tol": 0.0}),
                                           ("os_sart", {"iterations": 2, "subsets": 4}),
                                           ("tv", {"iterations": 30, "tol": 0.0})])
def test_batches_match_single_sinograms(method, kwargs):
    n = 32
    geometry = operators.ParallelBeam.sparse(12, (n, n))
    first, _ = _simulate(_shepp_logan_hu(n), geometry)
    second, _ = _simulate(_shepp_logan_hu(n)[::-1].copy() * 0.5, geometry)
    batch = torch.stack([first, second])[:, None]
    together = getattr(classical, method)(batch, operators.Radon(geometry), pixel_size_mm=0.8, **kwargs)
    assert isinstance(together, Reconstruction)
    assert together.image_hu.shape == (2, n, n) and together.image_hu.dtype == np.float32
    assert together.mu.shape == (2, 1, n, n) and together.mu.dtype == torch.float32
    assert together.device == "cpu" and together.method == method and together.seconds >= 0
    for index, single in enumerate((first, second)):
        alone = getattr(classical, method)(single.numpy(), geometry, pixel_size_mm=0.8, **kwargs)
        assert alone.image_hu.shape == (n, n)
        np.testing.assert_allclose(together.image_hu[index], alone.image_hu, atol=2.0)  # float32 CG rounding
    np.testing.assert_allclose(together.image_hu, _mu_to_hu(together.mu[:, 0].numpy()), atol=1e-2)


def test_default_tv_lambda_scales_with_the_data():
    geometry = operators.ParallelBeam.sparse(10, (32, 32))
    sinogram, _ = _simulate(_shepp_logan_hu(32), geometry)
    base = float(classical.default_tv_lambda(sinogram, geometry))
    expected = classical.TV_LAMBDA_FACTOR * float(operators.Radon(geometry).adjoint(sinogram).abs().max()) / 32
    assert base == pytest.approx(expected, rel=1e-5)
    assert float(classical.default_tv_lambda(3 * sinogram, geometry)) == pytest.approx(3 * base, rel=1e-5)


def test_invalid_inputs_raise():
    geometry = operators.ParallelBeam.sparse(8, (16, 16))
    good = torch.zeros(geometry.sinogram_shape)
    with pytest.raises(ValueError):
        classical.fbp(torch.zeros(8, 5), geometry)
    with pytest.raises(ValueError):
        classical.sirt(torch.zeros(1, 2, *geometry.sinogram_shape), geometry)
    with pytest.raises(ValueError):
        classical.fbp(good, geometry, pixel_size_mm=-1.0)
    with pytest.raises(ValueError):
        classical.cgls(good, geometry, iterations=0)
    with pytest.raises(ValueError):
        classical.tv(good, geometry, init="random")
    with pytest.raises(ValueError, match="unknown method 'art'"):
        registry.run("art", good, geometry)
    with pytest.raises(ValueError, match="iterations must be a whole number >= 1"):
        registry.run("sirt", good, geometry, iterations=0)
    with pytest.raises(ValueError, match="unknown preset"):
        registry.run("fbp", good, geometry, preset="bogus")
    with pytest.raises(TypeError):
        classical.fbp(good, "parallel")


@pytest.mark.gpu
def test_cuda_matches_cpu():
    n = 64
    geometry = operators.ParallelBeam.sparse(16, (n, n))
    sinogram, _ = _simulate(_shepp_logan_hu(n), geometry)
    for method, kwargs in (("fbp", {}), ("sirt", {"iterations": 20}), ("cgls", {"iterations": 10}),
                           ("tv", {"iterations": 50, "tol": 0.0})):
        cpu = getattr(classical, method)(sinogram, geometry, **kwargs)
        gpu = getattr(classical, method)(sinogram.cuda(), geometry, **kwargs)
        assert gpu.device.startswith("cuda") and gpu.mu.is_cuda
        np.testing.assert_allclose(gpu.image_hu, cpu.image_hu, atol=1.0)
        assert math.isfinite(gpu.seconds)


def test_poisson_noise_std_matches_simulated_noise():
    """The first-order Poisson formula against the spread of actually simulated noisy line integrals."""
    from sparsect import data

    ct = data.load_sample("ct_small", 64)
    for photons in (1e4, 1e5):
        sim = data.simulate(ct, 60, photons=photons, seed=0)
        seen = sim.clean > 0.01 * sim.clean.max()
        measured = float((sim.sinogram - sim.clean)[seen].double().pow(2).mean().sqrt())
        predicted = float(classical.poisson_noise_std(sim.clean, photons)[0])
        assert predicted == pytest.approx(measured, rel=0.05)
    assert float(classical.poisson_noise_std(torch.full((4, 5), 2.0), 100.0)[0]) == pytest.approx(
        math.sqrt(math.exp(2.0) / 100.0), rel=1e-6)


def test_object_attenuation_of_a_disk():
    yy, xx = np.mgrid[:32, :32]
    disk = ((yy - 15.5) ** 2 + (xx - 15.5) ** 2 < 100).astype(np.float32) * 0.02
    image = torch.from_numpy(disk)[None, None] + 0.001 * torch.rand(1, 1, 32, 32)  # below 10 % of the peak
    assert float(classical.object_attenuation(image)[0]) == pytest.approx(0.02, rel=0.03)
    assert float(classical.object_attenuation(torch.zeros(1, 1, 8, 8))[0]) == 1.0


def test_tv_weight_follows_the_noise_level():
    from sparsect import data

    ct = data.load_sample("ct_small", 64)
    clean = data.simulate(ct, 30, seed=0)
    geometry = clean.geometry
    peak = float(operators.Radon(geometry).adjoint(clean.sinogram).abs().max())
    unknown = float(classical.default_tv_lambda(clean.sinogram, geometry)[0])
    assert unknown == pytest.approx(classical.TV_LAMBDA_FACTOR * peak / 64, rel=1e-5)
    noise_free = float(classical.default_tv_lambda(clean.sinogram, geometry, photons=math.inf)[0])
    assert noise_free == pytest.approx(classical.TV_NOISE_FREE_FACTOR * peak / 64, rel=1e-5)
    weights = [float(classical.default_tv_lambda(data.simulate(ct, 30, photons=p, seed=0).sinogram, geometry,
                                                 photons=p)[0]) for p in (1e6, 1e5, 1e4)]
    assert noise_free < weights[0] < weights[1] < weights[2]
    with pytest.raises(ValueError, match="photons"):
        classical.default_tv_lambda(clean.sinogram, geometry, photons=0)


def test_registry_passes_photons_only_to_the_methods_that_take_it():
    """``run(..., photons=N)`` is ``tv(..., photons=N)`` for TV and a no-op for the other methods, so
    callers pass the scan's noise level without special-casing TV."""
    from sparsect import data

    sim = data.simulate(data.load_sample("ct_small", 32), 16, photons=1e4, seed=0)
    args = (sim.sinogram, sim.geometry)
    for photons in (1e4, math.inf):
        told = registry.run("tv", *args, pixel_size_mm=sim.pixel_size_mm, iterations=20, photons=photons)
        direct = classical.tv(*args, pixel_size_mm=sim.pixel_size_mm, iterations=20, photons=photons)
        assert told.settings["photons"] == photons and told.settings["lam"] == direct.settings["lam"]
        np.testing.assert_array_equal(told.image_hu, direct.image_hu)
    blind = registry.run("tv", *args, pixel_size_mm=sim.pixel_size_mm, iterations=20)
    assert blind.settings["photons"] is None and blind.settings["lam"] != told.settings["lam"]
    for method, iterations in [("fbp", None), ("sirt", 10), ("cgls", 8), ("os_sart", 6)]:
        plain = registry.run(method, *args, pixel_size_mm=sim.pixel_size_mm, iterations=iterations)
        ignored = registry.run(method, *args, pixel_size_mm=sim.pixel_size_mm, photons=1e4, iterations=iterations)
        np.testing.assert_array_equal(ignored.image_hu, plain.image_hu)
        assert "photons" not in ignored.settings
    for bad in (0, -1.0, math.nan):
        with pytest.raises(ValueError, match="photons"):
            registry.run("sirt", *args, photons=bad)


def test_noise_aware_tv_weight_beats_the_compromise_on_noisy_and_noise_free_data():
    """Told the noise level, TV's default weight is closer to the truth than the noise-blind compromise
    (measured at 128^2: +0.9..+9.6 dB at 1e4 photons, up to +4.7 dB noise-free)."""
    from sparsect import data

    ct = data.load_sample("ct_small", 64)
    for photons in (1e4, None):
        sim = data.simulate(ct, 40, photons=photons, seed=0)
        scores = []
        for told in (None, photons or math.inf):
            result = classical.tv(sim.sinogram, sim.geometry, photons=told, pixel_size_mm=sim.pixel_size_mm)
            scores.append(peak_signal_noise_ratio(sim.reference_hu, result.image_hu, data_range=4095.0))
        assert scores[1] > scores[0] + 0.3, (photons, scores)
