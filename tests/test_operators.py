"""The projector against ASTRA, scikit-image and float64 linear algebra.
(Over 400 lines on purpose: one module's tests stay together with the fixtures they share.)
"""

import math
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from skimage.data import shepp_logan_phantom
from skimage.metrics import peak_signal_noise_ratio
from skimage.transform import iradon, radon, resize

from sparsect import operators
from sparsect.operators import FanBeam, ParallelBeam, Radon
from sparsect.operators.fbp import _backproject_torch, _parker, backproject_filtered, parker_weights
from sparsect.operators.filters import filter_sinogram
from sparsect.operators.system_matrix import MATRICES, MatrixCache

try:  # optional extra: the ASTRA comparisons skip without it, everything else still runs (e.g. on GPU machines)
    import astra
except ImportError:
    astra = None

needs_astra = pytest.mark.skipif(astra is None, reason="astra-toolbox is not installed")
BACKENDS = ["torch", pytest.param("astra", marks=needs_astra)]


#: The three ways the torch backend computes: compiled CPU kernels (the default), the vectorised torch
#: path (what CUDA runs) and the cached sparse matrix (after an announcement).
PATHS = ["compiled", "torch", "matrix"]


def _radon(geometry, path="compiled", **kwargs):
    A = Radon(geometry, **kwargs)
    if path == "torch":
        A._backend.compiled_cpu = False
    elif path == "matrix":
        A.expect_calls(100)
    return A


def _uses_matrix(A, dtype=torch.float64):
    return MATRICES.get(A._backend._key(dtype, torch.device("cpu"))) is not None


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


def _check_against_astra(geometry, kind, path, **kwargs):
    A = _radon(geometry, path, **kwargs)
    size = geometry.image_size
    image = _random_image(size, seed=size[0])
    sinogram = _random_image(geometry.sinogram_shape, seed=size[0] + 1)
    astra_sino, astra_bp = _astra_forward_and_back(geometry, kind, image.numpy(), sinogram.numpy())
    assert _relative_error(A(image).numpy(), astra_sino) < 0.01
    assert _relative_error(A.adjoint(sinogram).numpy(), astra_bp) < 0.01
    assert _uses_matrix(A) == (path == "matrix")


@needs_astra
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("size,factor,spacing,n_views,arc", GRID)
def test_parallel_matches_astra_linear(size, factor, spacing, n_views, arc, path):
    det_count = math.ceil(size * factor)
    geometry = ParallelBeam(operators.evenly_spaced_angles(n_views, arc), det_count, spacing, (size, size))
    _check_against_astra(geometry, "linear", path)


@needs_astra
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("size,factor,spacing,n_views,arc", GRID)
def test_fan_matches_astra_line_fanflat(size, factor, spacing, n_views, arc, path):
    det_count = math.ceil(size * factor * 1.5)
    geometry = FanBeam(operators.evenly_spaced_angles(n_views, 2 * arc), det_count, source_distance=2.0 * size,
                       detector_distance=1.0 * size, det_spacing=spacing, image_size=(size, size))
    _check_against_astra(geometry, "line_fanflat", path)


@needs_astra
@pytest.mark.parametrize("path", PATHS)
def test_parallel_line_model_matches_astra_line(path):
    # An even detector count keeps rays off pixel edges at 0 and 90 degrees, where the intersection
    # model is ambiguous (ASTRA then picks one of the two pixels by floating-point rounding).
    geometry = ParallelBeam.sparse(40, (96, 80), det_count=126)
    _check_against_astra(geometry, "line", path, model="line")


@needs_astra
@pytest.mark.slow
def test_matches_astra_at_512_with_720_views():
    geometry = ParallelBeam.sparse(720, (512, 512))
    image = _random_image((512, 512), dtype=torch.float32)
    sinogram = _random_image(geometry.sinogram_shape, seed=1, dtype=torch.float32)
    astra_sino, astra_bp = _astra_forward_and_back(geometry, "linear", image.numpy(), sinogram.numpy())
    A = Radon(geometry)
    assert _relative_error(A(image).numpy(), astra_sino) < 0.01
    assert _relative_error(A.adjoint(sinogram).numpy(), astra_bp) < 0.01


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


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("model", operators.PIXEL_MODELS)
@pytest.mark.parametrize("name", GEOMETRIES)
def test_adjoint_identity_of_every_path(name, model, path):
    geometry = GEOMETRIES[name]()
    A = _radon(geometry, path, model=model)
    x = torch.randn(2, 3, *geometry.image_size, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = torch.randn(2, 3, *geometry.sinogram_shape, dtype=torch.float64,
                    generator=torch.Generator().manual_seed(2))
    lhs = float((A(x) * y).sum())
    rhs = float((x * A.adjoint(y)).sum())
    assert abs(lhs - rhs) <= 1e-12 * max(abs(lhs), abs(rhs))


@pytest.mark.parametrize("model", operators.PIXEL_MODELS)
@pytest.mark.parametrize("name", GEOMETRIES)
def test_paths_agree_with_the_float64_matrix(name, model):
    """The compiled and vectorised walks equal a product with the explicit float64 system matrix."""
    geometry = GEOMETRIES[name]()
    matrix = operators.system_matrix(geometry, model).to_dense()
    x = _random_image((3, 1, *geometry.image_size))
    y = _random_image((3, 1, *geometry.sinogram_shape), seed=1)
    for path in ("compiled", "torch"):
        A = _radon(geometry, path, model=model)
        torch.testing.assert_close(A(x).reshape(3, -1), x.reshape(3, -1) @ matrix.T, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(A.adjoint(y).reshape(3, -1), y.reshape(3, -1) @ matrix, rtol=1e-12, atol=1e-12)


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


@pytest.mark.parametrize("path", PATHS)
def test_gradcheck_both_directions(path):
    geometry = ParallelBeam.sparse(5, (6, 7))
    A = _radon(geometry, path)
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


def _disk_image(size, radius, value, supersample=8):
    """Coverage of a centred disk of ``radius`` pixels on a size x size grid, times ``value``, float64."""
    offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    inside = sum(((xx + dx) ** 2 + (yy + dy) ** 2 < radius ** 2).astype(np.float64)
                 for dx in offsets for dy in offsets)
    return torch.tensor(inside / supersample ** 2 * value)


def _disk_chords(geometry, radius):
    """The analytic chord length of every ray through a centred disk of ``radius`` pixels (n_angles, det_count)."""
    points, directions = geometry.rays()
    distance = (points[..., 0] * directions[..., 1] - points[..., 1] * directions[..., 0]).abs()
    return 2 * torch.sqrt((radius ** 2 - distance ** 2).clamp(min=0))


@pytest.mark.parametrize("geometry", [ParallelBeam.sparse(30, (128, 128)), FanBeam.sparse(40, (128, 128))],
                         ids=["parallel", "fan"])
def test_a_coarser_grid_sees_the_same_line_integrals(geometry):
    """on_grid: a disk of attenuation 1 per fine pixel is 2 per coarse pixel on the half-size grid; both grids'
    projections match the analytic chords (in fine pixels), so one sinogram serves both."""
    coarse = geometry.on_grid(64)
    assert coarse.image_size == (64, 64) and coarse.sinogram_shape == geometry.sinogram_shape
    chords = _disk_chords(geometry, 40.0)
    torch.testing.assert_close(_disk_chords(coarse, 20.0) * 2, chords, rtol=0, atol=1e-9)
    fine_projection = Radon(geometry)(_disk_image(128, 40.0, 1.0))
    coarse_projection = Radon(coarse)(_disk_image(64, 20.0, 2.0))
    inner = chords > 2 * math.sqrt(40.0 ** 2 - 32.0 ** 2)  # rays 4 coarse pixels inside the rim
    for projection in (fine_projection, coarse_projection):
        error = (projection.double() - chords).abs()
        assert float(error.mean()) < 0.01 * float(chords.mean())
        assert float((error[inner] / chords[inner]).max()) < 0.05  # 3.1 % seen (fan, coarse): the rim's pixels
    with pytest.raises(ValueError, match="aspect ratio"):
        geometry.on_grid((64, 32))


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


@pytest.mark.parametrize("geometry", [ParallelBeam.sparse(30, (24, 20)), FanBeam.sparse(40, (20, 26))],
                         ids=["parallel", "fan"])
def test_fbp_backprojection_paths_agree(geometry):
    filtered = _random_image((2, *geometry.sinogram_shape))
    compiled = backproject_filtered(filtered, geometry)
    vectorised = _backproject_torch(filtered, geometry, chunk_bytes=1 << 16)  # several chunks of views
    torch.testing.assert_close(compiled, vectorised, rtol=1e-12, atol=1e-12)


def test_matrix_is_built_only_when_announced_and_its_size_is_exact():
    geometry = ParallelBeam.sparse(17, (30, 26))
    x = _random_image((1, 1, 30, 26))
    A = Radon(geometry)
    A(x)
    A.expect_calls(5)  # too few to pay for a build
    A.adjoint(A(x))
    assert not _uses_matrix(A)
    A.expect_calls(50)
    A(x)
    forward, transpose = MATRICES.get(A._backend._key(torch.float64, torch.device("cpu")))
    held = sum(t.numel() * t.element_size() for m in (forward, transpose)
               for t in (m.crow_indices(), m.col_indices(), m.values()))
    assert A._backend.matrix_size(torch.float64) == held
    # Both have sorted columns in every row, as CSR kernels expect.
    for m in (forward, transpose):
        rows = torch.repeat_interleave(torch.arange(m.shape[0]), m.crow_indices().diff())
        keys = rows.long() * m.shape[1] + m.col_indices().long()
        assert torch.all(keys.diff() > 0)


@needs_astra
def test_geometry_too_large_for_the_matrix_budget_stays_matrix_free():
    geometry = ParallelBeam.sparse(24, (40, 40))
    A = Radon(geometry, matrix_bytes=10_000).expect_calls(1000)
    image = _random_image((40, 40))
    astra_sino, _ = _astra_forward_and_back(geometry, "linear", image.numpy(), np.zeros(geometry.sinogram_shape))
    assert _relative_error(A(image).numpy(), astra_sino) < 0.01
    assert not _uses_matrix(A)
    assert A._backend.matrix_size(torch.float64) > 10_000


def test_matrix_cache_keeps_its_byte_budget():
    cache = MatrixCache(max_bytes=100)
    cache.put("a", 1, 60)
    cache.put("b", 2, 30)
    assert cache.get("a") == 1  # now the most recently used
    cache.put("c", 3, 40)  # evicts "b", the least recently used
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (1, None, 3)
    cache.put("d", 4, 500)  # larger than the budget on its own: stored alone
    assert cache.total_bytes() == 500 and cache.get("d") == 4


_PEAK_MEMORY_SCRIPT = """
import sys, torch
from sparsect.operators import ParallelBeam, Radon
def peak_mb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024
announce = sys.argv[1] == "matrix"
x = torch.rand(1, 1, 128, 128)
for calls in (0, 100):  # loads (or on a fresh checkout compiles) every kernel before measuring
    warm = Radon(ParallelBeam.sparse(4, (128, 128))).expect_calls(calls)
    warm.adjoint(warm(x))
with open("/proc/self/clear_refs", "w") as clear:  # a first compile's peak must not hide what follows
    clear.write("5")
peaks = []
for views in (60, 960):
    A = Radon(ParallelBeam.sparse(views, (128, 128)))
    if announce:
        A.expect_calls(100)
    A.adjoint(A(x))
    peaks.append(peak_mb())
print(peaks[1] - peaks[0])
"""


@pytest.mark.parametrize("path", ["compiled", "matrix"])
def test_matrix_free_memory_does_not_grow_with_views(path):
    """Peak resident memory (VmHWM, reset after the kernels are loaded, in a fresh interpreter) from 60 to
    960 views at 128²: the matrix-free path grows only with the sinogram (its rays' setup, ~150 bytes a
    ray: measured 24 MB), the cached matrix by its 453 MB."""
    done = subprocess.run([sys.executable, "-c", _PEAK_MEMORY_SCRIPT, path], capture_output=True, text=True,
                          check=True)
    growth_mb = float(done.stdout.split()[-1])
    if path == "compiled":
        assert growth_mb < 64
    else:
        assert growth_mb > 200  # the measurement does see a matrix


@pytest.mark.parametrize("kwargs, message", [
    ({"chunk_bytes": 10}, "chunk_bytes must be an integer number of bytes >= 65536"),
    ({"chunk_bytes": 1.5e8}, "chunk_bytes"),
    ({"matrix_bytes": -1}, "matrix_bytes"),
    ({"model": "cubic"}, "unknown pixel model"),
])
def test_bad_projector_options_are_rejected_clearly(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Radon(ParallelBeam.sparse(4, (8, 8)), **kwargs)
    with pytest.raises(ValueError, match="calls must be an integer"):
        Radon(ParallelBeam.sparse(4, (8, 8))).expect_calls(-3)


@pytest.mark.gpu
@pytest.mark.parametrize("model", operators.PIXEL_MODELS)
@pytest.mark.parametrize("geometry", [ParallelBeam.sparse(30, (64, 48)), FanBeam.sparse(40, (48, 48))],
                         ids=["parallel", "fan"])
def test_cuda_paths_match_cpu(geometry, model):
    x = _random_image((2, 1, *geometry.image_size))
    y = _random_image((2, 1, *geometry.sinogram_shape), seed=1)
    reference = Radon(geometry, model=model)
    for path in ("compiled", "matrix"):  # on CUDA: the vectorised torch path, then the cached matrix
        A = _radon(geometry, path, model=model)
        for dtype, tolerance in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
            out = A(x.to("cuda", dtype))
            back = A.adjoint(y.to("cuda", dtype))
            assert _relative_error(out.double().cpu().numpy(), reference(x).numpy()) < tolerance
            assert _relative_error(back.double().cpu().numpy(), reference.adjoint(y).numpy()) < tolerance
    sinogram = reference(x)
    torch.testing.assert_close(reference.fbp(sinogram.cuda()).cpu(), reference.fbp(sinogram), rtol=1e-9, atol=1e-9)


@pytest.mark.gpu
def test_cuda_matrix_free_memory_does_not_grow_with_views():
    x = torch.rand(1, 1, 256, 256, device="cuda")
    peaks = []
    for views in (90, 1440):
        A = Radon(ParallelBeam.sparse(views, (256, 256)))
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        A.adjoint(A(x))
        torch.cuda.synchronize()
        sinogram_bytes = 4 * views * A.geometry.det_count
        peaks.append(torch.cuda.max_memory_allocated() - base - 8 * sinogram_bytes)  # rays and the sinogram
    assert peaks[1] < peaks[0] + (16 << 20)


def test_projector_keeps_torch_thread_count():
    """numba's OpenMP layer shares torch's libgomp; starting it must not raise torch's thread count (a
    one-thread network fit beside a projector call ran 30x slower on a busy machine)."""
    if (os.cpu_count() or 1) < 2:
        pytest.skip("needs at least 2 cores for numba to want more threads than torch")
    code = ("import torch; torch.set_num_threads(1)\n"
            "from sparsect.operators import ParallelBeam, Radon\n"
            "A = Radon(ParallelBeam.sparse(8, (32, 32)))\n"
            "A.adjoint(A(torch.rand(1, 1, 32, 32)))\n"
            "print(torch.get_num_threads())\n")
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert done.stdout.split()[-1] == "1"


def test_idle_openmp_threads_sleep_on_a_busy_machine_only():
    from sparsect import busy_machine_wait_policy

    assert busy_machine_wait_policy(load=2.0, cores=2) == "PASSIVE"
    assert busy_machine_wait_policy(load=7.5, cores=2) == "PASSIVE"
    assert busy_machine_wait_policy(load=0.6, cores=2) is None


def test_importing_sparsect_keeps_the_users_openmp_wait_policy():
    env = dict(os.environ, OMP_WAIT_POLICY="ACTIVE")
    code = "import os, sparsect; print(os.environ['OMP_WAIT_POLICY'])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert done.stdout.strip() == "ACTIVE"
