"""The projector against ASTRA, scikit-image and float64 linear algebra."""

import math
import warnings

import numpy as np
import pytest
import torch
from skimage.data import shepp_logan_phantom
from skimage.metrics import peak_signal_noise_ratio
from skimage.transform import iradon, radon, resize

from sparsect import operators
from sparsect.operators import FanBeam, ParallelBeam, Radon
from sparsect.operators.fbp import _parker, backproject_filtered, parker_weights
from sparsect.operators.filters import filter_sinogram

try:  # optional extra: the ASTRA comparisons skip without it, everything else still runs (e.g. on GPU machines)
    import astra
except ImportError:
    astra = None

needs_astra = pytest.mark.skipif(astra is None, reason="astra-toolbox is not installed")
BACKENDS = ["torch", pytest.param("astra", marks=needs_astra)]


def _random_image(size, seed=0, dtype=torch.float64):
    return torch.rand(size, dtype=dtype, generator=torch.Generator().manual_seed(seed))


def _relative_error(a, b):
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(np.asarray(b)))


def _astra_projector(geometry, kind):
    volume = astra.create_vol_geom(*geometry.image_size)
    angles = geometry.angles.numpy()
    if isinstance(geometry, FanBeam):
        projection = astra.create_proj_geom("fanflat", geometry.det_spacing, geometry.det_count, angles,
                                            geometry.source_distance, geometry.detector_distance)
    else:
        projection = astra.create_proj_geom("parallel", geometry.det_spacing, geometry.det_count, angles)
    return astra.create_projector(kind, projection, volume)


def _astra_forward_and_back(geometry, kind, image, sinogram):
    projector = _astra_projector(geometry, kind)
    try:
        sino_id, astra_sino = astra.create_sino(image.astype(np.float32), projector)
        bp_id, astra_bp = astra.create_backprojection(sinogram.astype(np.float32), projector)
        astra.data2d.delete([sino_id, bp_id])
    finally:
        astra.projector.delete(projector)
    return astra_sino, astra_bp


# size, det_count factor, det_spacing, n_views, arc
GRID = [
    (64, 1.0, 1.0, 180, math.pi),     # full
    (127, 1.25, 0.5, 45, math.pi),    # sparse, odd size, fine detector
    (128, 1.5, 2.0, 60, math.pi / 2),  # limited arc, coarse detector
    (256, 1.1, 1.5, 30, math.pi),     # sparse
]


@needs_astra
@pytest.mark.parametrize("size,factor,spacing,n_views,arc", GRID)
def test_parallel_matches_astra_linear(size, factor, spacing, n_views, arc):
    det_count = math.ceil(size * factor)
    geometry = ParallelBeam(operators.evenly_spaced_angles(n_views, arc), det_count, spacing, (size, size))
    A = Radon(geometry)
    image = _random_image((size, size), seed=size)
    sinogram = _random_image(geometry.sinogram_shape, seed=size + 1)
    astra_sino, astra_bp = _astra_forward_and_back(geometry, "linear", image.numpy(), sinogram.numpy())
    assert _relative_error(A(image).numpy(), astra_sino) < 0.01
    assert _relative_error(A.adjoint(sinogram).numpy(), astra_bp) < 0.01


@needs_astra
@pytest.mark.parametrize("size,factor,spacing,n_views,arc", GRID)
def test_fan_matches_astra_line_fanflat(size, factor, spacing, n_views, arc):
    det_count = math.ceil(size * factor * 1.5)
    geometry = FanBeam(operators.evenly_spaced_angles(n_views, 2 * arc), det_count, source_distance=2.0 * size,
                       detector_distance=1.0 * size, det_spacing=spacing, image_size=(size, size))
    A = Radon(geometry)
    image = _random_image((size, size), seed=size)
    sinogram = _random_image(geometry.sinogram_shape, seed=size + 1)
    astra_sino, astra_bp = _astra_forward_and_back(geometry, "line_fanflat", image.numpy(), sinogram.numpy())
    assert _relative_error(A(image).numpy(), astra_sino) < 0.01
    assert _relative_error(A.adjoint(sinogram).numpy(), astra_bp) < 0.01


@needs_astra
def test_parallel_line_model_matches_astra_line():
    # An even detector count keeps rays off pixel edges at 0 and 90 degrees, where the intersection
    # model is ambiguous (ASTRA then picks one of the two pixels by floating-point rounding).
    geometry = ParallelBeam.sparse(40, (96, 80), det_count=126)
    image = _random_image((96, 80))
    astra_sino, _ = _astra_forward_and_back(geometry, "line", image.numpy(), np.zeros(geometry.sinogram_shape))
    assert _relative_error(Radon(geometry, model="line")(image).numpy(), astra_sino) < 0.01


def test_matches_skimage_radon_on_phantom():
    # skimage puts the rotation centre at pixel size // 2 and detector bin det // 2; for an odd image
    # size that is our centre too, and one extra bin moves our detector centre onto its bin det // 2.
    size = 127
    phantom = resize(shepp_logan_phantom(), (size, size), anti_aliasing=True)
    theta_deg = np.arange(0, 180, 4.0)
    reference = radon(phantom, theta=theta_deg, circle=False)  # (det, views)
    det_count = reference.shape[0]
    geometry = ParallelBeam(np.deg2rad(theta_deg), det_count + 1, image_size=(size, size))
    ours = Radon(geometry)(torch.tensor(phantom)).numpy().T[:det_count]
    assert _relative_error(ours, reference) < 0.02


GEOMETRIES = {
    "parallel": lambda: ParallelBeam.sparse(13, (24, 20)),
    "parallel-limited": lambda: ParallelBeam(np.linspace(0.3, 1.2, 7), 31, 0.7, (16, 16)),
    "fan": lambda: FanBeam.sparse(11, (20, 20)),
    "fan-partial": lambda: FanBeam(np.linspace(0, math.pi, 9), 40, 50.0, 30.0, 1.3, (18, 22)),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", GEOMETRIES)
def test_adjoint_identity(name, backend):
    geometry = GEOMETRIES[name]()
    A = Radon(geometry, backend=backend)
    x = torch.randn(2, 3, *geometry.image_size, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = torch.randn(2, 3, *geometry.sinogram_shape, dtype=torch.float64,
                    generator=torch.Generator().manual_seed(2))
    lhs = float((A(x) * y).sum())
    rhs = float((x * A.adjoint(y)).sum())
    tolerance = 1e-5 if backend == "torch" else 1e-4  # ASTRA computes in float32
    assert abs(lhs - rhs) <= tolerance * max(abs(lhs), abs(rhs))


@pytest.mark.parametrize("backend", BACKENDS)
def test_backends_agree_batched(backend):
    geometry = ParallelBeam.sparse(20, (32, 32))
    x = _random_image((3, 2, 32, 32), dtype=torch.float32)
    reference = Radon(geometry, backend="torch")(x.double())
    out = Radon(geometry, backend=backend)(x)
    assert out.shape == (3, 2, 20, geometry.det_count) and out.dtype == torch.float32
    assert _relative_error(out.numpy(), reference.numpy()) < 1e-5


def test_gradcheck_both_directions():
    geometry = ParallelBeam.sparse(5, (6, 7))
    A = Radon(geometry)
    x = torch.rand(1, 1, 6, 7, dtype=torch.float64, requires_grad=True)
    y = torch.rand(1, 1, *geometry.sinogram_shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(A, (x,))
    assert torch.autograd.gradcheck(A.adjoint, (y,))
    assert torch.autograd.gradgradcheck(A, (x,))


def test_gradient_is_adjoint_of_residual():
    geometry = FanBeam.sparse(9, (16, 16))
    A = Radon(geometry)
    x = torch.rand(16, 16, dtype=torch.float64, requires_grad=True)
    y = torch.rand(geometry.sinogram_shape, dtype=torch.float64)
    (0.5 * (A(x) - y).pow(2).sum()).backward()
    expected = A.adjoint(A(x.detach()) - y)
    torch.testing.assert_close(x.grad, expected)


def test_fbp_of_disk_recovers_true_value():
    size = 96
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    disk = torch.tensor(((xx ** 2 + yy ** 2) < 30 ** 2).astype(np.float64))
    inner = (xx ** 2 + yy ** 2) < 22 ** 2
    for geometry in (ParallelBeam.sparse(180, (size, size)), FanBeam.sparse(360, (size, size))):
        A = Radon(geometry)
        recon = A.fbp(A(disk)).numpy()
        assert abs(recon[inner].mean() - 1.0) < 0.01, type(geometry).__name__


def test_fbp_reaches_skimage_iradon_psnr():
    phantom = resize(shepp_logan_phantom(), (256, 256), anti_aliasing=True)
    theta = np.arange(180.0)
    reference = iradon(radon(phantom, theta=theta, circle=False), theta=theta, filter_name="ramp",
                       circle=False, output_size=256)
    A = Radon(ParallelBeam.sparse(180, (256, 256)))
    ours = A.fbp(A(torch.tensor(phantom))).numpy()
    ours_psnr = peak_signal_noise_ratio(phantom, ours, data_range=1.0)
    reference_psnr = peak_signal_noise_ratio(phantom, reference, data_range=1.0)
    assert ours_psnr >= reference_psnr


def _full_fan_angle(geometry):
    return 2 * math.atan(geometry.det_count * geometry.det_spacing / 2
                         / (geometry.source_distance + geometry.detector_distance))


def test_fan_short_scan_fbp_matches_phantom_like_full_turn():
    size = 64
    phantom = torch.tensor(resize(shepp_logan_phantom(), (size, size), anti_aliasing=True))
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    inside = (xx ** 2 + yy ** 2) < (0.45 * size) ** 2

    def rmse(image):
        return float(np.sqrt(np.mean((np.asarray(image) - phantom.numpy())[inside] ** 2)))

    full = FanBeam.sparse(360, (size, size))
    A = Radon(full)
    full_error = rmse(A.fbp(A(phantom)))
    short = FanBeam.sparse(360, (size, size), arc=math.pi + _full_fan_angle(full) + 0.05)
    A = Radon(short)
    sinogram = A(phantom)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a sufficient short scan does not warn
        short_error = rmse(A.fbp(sinogram))
    # The same data without Parker weights (the old behaviour): cosine weight, ramp, half the step.
    magnify = short.source_distance / (short.source_distance + short.detector_distance)
    u = short.detector_positions() * magnify
    cosine = short.source_distance / torch.sqrt(short.source_distance ** 2 + u ** 2)
    filtered = filter_sinogram(sinogram * cosine, short.det_spacing * magnify)
    unweighted_error = rmse(backproject_filtered(filtered[None], short)[0] / 2)
    assert full_error < 0.05  # measured 0.0419 (edges of the resampled phantom dominate)
    assert short_error < 1.05 * full_error  # measured 0.0419
    assert unweighted_error > 2.5 * short_error  # measured 0.122


def test_parker_weights_of_conjugate_rays_sum_to_one():
    half_fan = 0.3

    def grid(n_beta, n_gamma, arc, margin=0.0):  # source angles inside the scan, fan angles inside the fan
        beta = margin + (torch.arange(n_beta, dtype=torch.float64)[:, None] + 0.5) * ((arc - 2 * margin) / n_beta)
        gamma = torch.linspace(-half_fan, half_fan, n_gamma + 2, dtype=torch.float64)[None, 1:-1]
        return beta, gamma

    for arc in (math.pi + 2 * half_fan, math.pi + 2 * half_fan + 0.4, 1.9 * math.pi, math.pi + 0.2):
        beta, gamma = grid(2000, 61, arc)
        weight = _parker(beta, gamma, arc)
        assert weight.min() >= 0 and weight.max() <= 1
        conjugate = beta + math.pi + 2 * gamma  # the same line, seen from the other side
        measured_twice = conjugate < arc
        total = weight + _parker(conjugate, -gamma, arc)
        assert measured_twice.sum() > 0
        torch.testing.assert_close(total[measured_twice], torch.ones_like(total[measured_twice]),
                                   rtol=0, atol=1e-12)
        seen_once = ~measured_twice & (beta - math.pi + 2 * gamma <= 0)
        assert torch.all(weight[seen_once] == 1)
        # Continuous: the largest step between neighbours shrinks with the grid (a jump would stay).
        # Only the scan's first and last rays at the fan's edges, (0, +-gamma_max), are singular.
        for axis, (coarse, fine) in enumerate([((500, 61), (2000, 61)), ((200, 60), (200, 240))]):
            jumps = [_parker(*grid(*shape, arc, 0.05), arc).diff(dim=axis).abs().max() for shape in (coarse, fine)]
            assert jumps[1] < 0.4 * jumps[0], (arc, axis, jumps)
    # Exact Parker (1982) values at the short-scan arc: start taper, plateau, end taper.
    arc, gam = math.pi + 2 * half_fan, torch.tensor(0.1, dtype=torch.float64)
    for beta, expected in ((0.2, math.sin(math.pi / 4 * 0.2 / 0.2) ** 2), (1.0, 1.0),
                           (arc - 0.1, math.sin(math.pi / 4 * 0.1 / 0.4) ** 2)):
        assert float(_parker(torch.tensor(beta, dtype=torch.float64), gam, arc)) == pytest.approx(expected)


def test_parker_weights_follow_the_geometry_rays():
    """Conjugate rays found from FanBeam.rays() (not from the weights' gamma convention) sum to 1."""
    geometry = FanBeam.sparse(720, (48, 48))
    geometry = FanBeam.sparse(720, (48, 48), arc=math.pi + _full_fan_angle(geometry) + 0.3)
    weights = parker_weights(geometry)
    assert weights.shape == geometry.sinogram_shape and weights.dtype == torch.float64
    source, direction = geometry.rays()
    conjugate = source - 2 * (source * direction).sum(-1, keepdim=True) * direction
    beta = torch.atan2(conjugate[..., 0], -conjugate[..., 1])
    e_u = torch.stack([torch.cos(beta), torch.sin(beta)], -1)
    normal = torch.stack([-torch.sin(beta), torch.cos(beta)], -1)
    t = -(source * normal).sum(-1) / (direction * normal).sum(-1)
    virtual = ((source + t[..., None] * direction) * e_u).sum(-1)
    u = virtual * (geometry.source_distance + geometry.detector_distance) / geometry.source_distance
    step = float(geometry.angles[1] - geometry.angles[0])
    view = (beta - float(geometry.angles[0])).remainder(2 * math.pi) / step
    bin_ = u / geometry.det_spacing + (geometry.det_count - 1) / 2
    valid = (view >= 0) & (view <= geometry.n_angles - 1) & (bin_ >= 0) & (bin_ <= geometry.det_count - 1)
    v0, b0 = view.floor().long().clamp(max=geometry.n_angles - 2), bin_.floor().long().clamp(max=geometry.det_count - 2)
    fv, fb = view - v0, bin_ - b0
    v0, b0 = v0.clamp(min=0), b0.clamp(min=0)
    interpolated = ((1 - fv) * (1 - fb) * weights[v0, b0] + (1 - fv) * fb * weights[v0, b0 + 1]
                    + fv * (1 - fb) * weights[v0 + 1, b0] + fv * fb * weights[v0 + 1, b0 + 1])
    assert valid.sum() > 0.2 * valid.numel()
    error = (weights + interpolated - 1)[valid].abs().max()
    assert error < 2e-3
    assert torch.all(parker_weights(FanBeam.sparse(30, (48, 48))) == 1)  # full turn


def test_fan_fbp_warns_below_short_scan():
    geometry = FanBeam.sparse(60, (32, 32), arc=math.pi)
    A = Radon(geometry)
    sinogram = A(_random_image((32, 32)))
    short_scan = math.pi + _full_fan_angle(geometry)
    with pytest.warns(UserWarning, match=f"less than a short scan .pi . fan angle = {short_scan:.4f} rad"):
        image = A.fbp(sinogram)
    assert torch.isfinite(image).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        full = FanBeam.sparse(60, (32, 32))
        Radon(full).fbp(torch.zeros(full.sinogram_shape, dtype=torch.float64))
        Radon(ParallelBeam.sparse(20, (32, 32), arc=math.pi / 2)).fbp(torch.zeros(20, 46, dtype=torch.float64))


@pytest.mark.parametrize("name", operators.FILTERS)
def test_filters_keep_dc_and_window_high_frequencies(name):
    response = operators.ramp_response(64, filter=name)
    assert 0 < float(response[0]) < 5e-3  # the spatial-kernel ramp keeps a tiny DC term, no offset
    ram_lak = operators.ramp_response(64)
    assert torch.all(response <= ram_lak + 1e-12)
    assert abs(float(ram_lak[-1]) - 0.5) < 5e-3  # |f| at Nyquist, cycles per sample


def test_float32_matches_float64():
    geometry = FanBeam.sparse(17, (40, 40))
    x = _random_image((40, 40))
    A = Radon(geometry)
    assert _relative_error(A(x.float()).numpy(), A(x).numpy()) < 1e-5


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: ParallelBeam([], 10), "angles is empty"),
        (lambda: ParallelBeam([0.0, float("nan")], 10), "NaN"),
        (lambda: ParallelBeam([0.0], 0), "det_count"),
        (lambda: ParallelBeam([0.0], 10, det_spacing=float("nan")), "det_spacing"),
        (lambda: FanBeam([0.0], 10, float("nan"), 5.0), "source_distance"),
        (lambda: FanBeam([0.0], 10, 3.0, 5.0, image_size=(32, 32)), "inside the image"),
        (lambda: ParallelBeam.sparse(0, (8, 8)), "n_views"),
        (lambda: Radon(ParallelBeam.sparse(4, (8, 8)), backend="nope"), "unknown backend"),
    ],
)
def test_bad_geometry_is_rejected_clearly(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_bad_inputs_are_rejected_clearly():
    A = Radon(ParallelBeam.sparse(4, (8, 8)))
    with pytest.raises(ValueError, match=r"shape \(B, C, 8, 8\)"):
        A(torch.zeros(9, 8))
    with pytest.raises(ValueError, match="shape"):
        A(torch.zeros(1, 8, 8))
    with pytest.raises(TypeError, match="floating-point"):
        A(torch.zeros(8, 8, dtype=torch.int64))
    with pytest.raises(TypeError, match="torch.Tensor"):
        A(np.zeros((8, 8)))
    with pytest.raises(TypeError, match="CUDA only"):
        A(torch.zeros(8, 8, dtype=torch.float16))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_cuda_matches_cpu(dtype):
    geometry = ParallelBeam.sparse(30, (64, 64))
    A = Radon(geometry)
    x = _random_image((2, 1, 64, 64), dtype=torch.float64)
    reference = A(x)
    out = A(x.to("cuda", dtype))
    assert out.device.type == "cuda" and out.dtype == dtype
    tolerance = 1e-2 if dtype == torch.float16 else 1e-5
    assert _relative_error(out.double().cpu().numpy(), reference.numpy()) < tolerance
    y = torch.rand(2, 1, *geometry.sinogram_shape, dtype=torch.float64)
    assert _relative_error(A.adjoint(y.to("cuda", dtype)).double().cpu().numpy(),
                           A.adjoint(y).numpy()) < tolerance
