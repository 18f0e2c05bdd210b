"""Tests of the coordinate-network fitting loop (reconstruct.fit) and its high-level entry (reconstruct.neural).
(Over 400 lines on purpose: one module's tests stay together with the fixtures they share.)
"""

from __future__ import annotations

import inspect
import math
import threading

import numpy as np
import pytest
import torch
from skimage.data import shepp_logan_phantom
from skimage.transform import resize
from torch import nn

from sparsect import operators
from sparsect.reconstruct.fit import EarlyStop, FitProgress, fit, lr_at, pixel_grid
from sparsect.reconstruct.regularisers import gradient, smoothed_total_variation, total_generalized_variation
from sparsect.reconstruct.result import Reconstruction

SIZE, VIEWS = 64, 16


class TinySiren(nn.Module):
    """Small sine MLP (N, 2) -> (N, 1), independent of reconstruct.models."""

    def __init__(self, hidden: int = 64, layers: int = 2, w0: float = 30.0) -> None:
        super().__init__()
        self.w0 = w0
        dims = [2] + [hidden] * layers
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:], strict=True))
        self.head = nn.Linear(hidden, 1)
        with torch.no_grad():
            for i, layer in enumerate(self.hidden):
                bound = 1 / layer.in_features if i == 0 else math.sqrt(6 / layer.in_features) / w0
                layer.weight.uniform_(-bound, bound)

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        h = coords
        for layer in self.hidden:
            h = torch.sin(self.w0 * layer(h))
        return self.head(h)


def _tiny(seed: int = 0, **kwargs) -> TinySiren:
    torch.manual_seed(seed)
    return TinySiren(**kwargs)


@pytest.fixture(scope="module")
def problem():
    phantom = resize(shepp_logan_phantom(), (SIZE, SIZE), anti_aliasing=True).astype(np.float32)
    truth = torch.from_numpy(phantom)
    radon = operators.Radon(operators.ParallelBeam.sparse(VIEWS, (SIZE, SIZE)))
    sinogram = radon(truth)
    return truth, radon, sinogram


def psnr(image: torch.Tensor, truth: torch.Tensor) -> float:
    """PSNR in dB with the ground truth's peak as data range (numpy reference)."""
    a, b = np.asarray(image, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    return float(10 * np.log10(b.max() ** 2 / np.mean((a - b) ** 2)))


FIT = dict(iterations=300, lr=1e-3, warmup=15, final_lr_factor=0.1, output_scale=0.5, seed=0, device="cpu")


# ------------------------------------------------------------------------------------ grid and schedule


def test_pixel_grid_matches_geometry_conventions():
    grid = pixel_grid((3, 5))
    assert grid.shape == (15, 2)
    # row 0, col 0 is top-left: x = -1 (longer axis spans [-1, 1]), y = +1/2 (isotropic scaling)
    np.testing.assert_allclose(grid[0].numpy(), [-1.0, 0.5])
    np.testing.assert_allclose(grid[14].numpy(), [1.0, -0.5])  # bottom-right
    np.testing.assert_allclose(grid[1 * 5 + 2].numpy(), [0.0, 0.0])  # centre pixel


def test_lr_schedule_warmup_and_decay():
    lrs = [lr_at(i, 100, 1.0, 10, 0.1, "cosine") for i in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[10] == pytest.approx(1.0) and lrs[-1] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))
    exp = [lr_at(i, 100, 1.0, 0, 0.1, "exponential") for i in range(100)]
    assert exp[0] == pytest.approx(1.0) and exp[-1] == pytest.approx(0.1)


# ------------------------------------------------------------------------------------------ fitting


def test_small_network_beats_fbp(problem):
    truth, radon, sinogram = problem
    # a small TV penalty supplies the prior 16 views lack (without it this net fits the null space: ~20 dB)
    result = fit(_tiny(), radon, sinogram, **FIT, tv_weight=3e-2)
    assert isinstance(result, Reconstruction)
    assert result.iterations == FIT["iterations"] and len(result.curve) == FIT["iterations"]
    assert result.curve[-1] < 0.05 * result.curve[0]
    assert result.image.shape == (SIZE, SIZE) and result.image_hu.shape == (SIZE, SIZE)
    fbp_psnr = psnr(radon.fbp(sinogram), truth)
    assert psnr(result.image, truth) > fbp_psnr + 0.5, (psnr(result.image, truth), fbp_psnr)
    assert result.n_parameters == sum(p.numel() for p in result.model.parameters())
    assert result.seconds > 0 and result.seconds_per_iteration > 0 and result.device == "cpu"


def test_reported_loss_is_sinogram_mse_only(problem):
    """Structural: no ground-truth argument exists; numerical: the reported loss equals an independent
    recomputation of mean((A image - sinogram)^2) from the previewed image."""
    names = set(inspect.signature(fit).parameters)
    assert not names & {"truth", "ground_truth", "target_image", "reference", "phantom"}
    _, radon, sinogram = problem
    seen: list[FitProgress] = []
    fit(_tiny(), radon, sinogram, **{**FIT, "iterations": 20}, callback=seen.append, preview_every=10)
    previews = [p for p in seen if p.image is not None]
    assert [p.iteration for p in previews] == [10, 20]
    for p in previews:
        y = sinogram.double().numpy()
        ax = radon(torch.from_numpy(p.image).double()).numpy()
        assert p.loss == pytest.approx(float(np.mean((ax - y) ** 2)), rel=1e-4)


def test_hu_and_mu_use_pixel_size(problem):
    _, radon, sinogram = problem
    result = fit(_tiny(), radon, sinogram, **{**FIT, "iterations": 5}, pixel_size_mm=0.5)
    mu = result.image.numpy() / 0.5
    np.testing.assert_allclose(result.mu.cpu().numpy(), mu, rtol=1e-6)
    np.testing.assert_allclose(result.image_hu, 1000 * (mu / 0.0192 - 1), rtol=1e-5, atol=1e-2)


def test_deterministic_with_seed(problem):
    _, radon, sinogram = problem
    options = {**FIT, "iterations": 30}
    a = fit(_tiny(seed=3), radon, sinogram, **options)
    b = fit(_tiny(seed=3), radon, sinogram, **options)
    assert a.curve == b.curve
    assert torch.equal(a.image, b.image)
    c = fit(_tiny(seed=4), radon, sinogram, **options)
    assert c.curve != a.curve


def test_chunked_evaluation_matches_full(problem):
    _, radon, sinogram = problem
    options = {**FIT, "iterations": 10}
    full = fit(_tiny(), radon, sinogram, **options)
    chunked = fit(_tiny(), radon, sinogram, **options, chunk_size=1000)
    np.testing.assert_allclose(chunked.curve, full.curve, rtol=1e-4)
    torch.testing.assert_close(chunked.image, full.image, rtol=1e-3, atol=1e-4)


class PoisonOnce(nn.Module):
    """Wraps a network; its ``poison_call``-th training forward returns NaN."""

    def __init__(self, net: nn.Module, poison_call: int) -> None:
        super().__init__()
        self.net, self.poison_call, self.calls = net, poison_call, 0

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        out = self.net(coords)
        if torch.is_grad_enabled():
            self.calls += 1
            if self.calls == self.poison_call:
                return out * float("nan")
        return out


def test_divergence_recovery_restores_and_lowers_lr(problem):
    _, radon, sinogram = problem
    model = PoisonOnce(_tiny(), poison_call=40)
    lrs: list[float] = []
    with pytest.warns(RuntimeWarning, match="non-finite"):
        result = fit(model, radon, sinogram, **{**FIT, "iterations": 60, "warmup": 0},
                     schedule="exponential", snapshot_every=10, callback=lambda p: lrs.append(p.lr),
                     callback_every=1)
    assert math.isnan(result.curve[39])
    assert all(math.isfinite(v) for i, v in enumerate(result.curve) if i != 39)
    assert math.isfinite(result.final_loss) and torch.isfinite(result.image).all()
    assert any("restored the state of iteration 30" in e for e in result.events)
    # after the rollback the schedule runs at half rate
    expected = lr_at(40, 60, FIT["lr"], 0, FIT["final_lr_factor"], "exponential") * 0.5
    assert lrs[39] == pytest.approx(expected)
    assert result.settings["recoveries"] == 1


def test_divergence_from_nan_parameters(problem):
    _, radon, sinogram = problem
    model = _tiny()

    def corrupt(progress: FitProgress) -> None:
        if progress.iteration == 25:
            with torch.no_grad():
                model.head.weight.fill_(float("nan"))

    with pytest.warns(RuntimeWarning):
        result = fit(model, radon, sinogram, **{**FIT, "iterations": 40}, snapshot_every=10, callback=corrupt,
                     callback_every=1)
    assert result.stop_reason == "completed"
    assert math.isfinite(result.curve[-1]) and torch.isfinite(result.image).all()
    assert any("restored" in e for e in result.events)


def test_stop_event_returns_image_so_far(problem):
    _, radon, sinogram = problem
    event = threading.Event()

    def cb(progress: FitProgress) -> None:
        if progress.iteration == 12:
            event.set()

    result = fit(_tiny(), radon, sinogram, **FIT, stop=event, callback=cb, callback_every=1)
    assert result.iterations == 12 and len(result.curve) == 12
    assert result.stop_reason == "stopped" and any("stopped" in e for e in result.events)
    assert result.image.shape == (SIZE, SIZE) and torch.isfinite(result.image).all()
    assert float(result.image.abs().max()) > 0
    calls = iter(range(100))
    result = fit(_tiny(), radon, sinogram, **FIT, stop=lambda: next(calls) >= 5)
    assert result.iterations == 5 and result.stop_reason == "stopped"


def test_early_stop_on_plateau(problem):
    _, radon, sinogram = problem
    result = fit(_tiny(), radon, sinogram, **{**FIT, "iterations": 400, "lr": 1e-9, "warmup": 0},
                 early_stop=EarlyStop(patience=5, tolerance=1e-2))
    assert result.stop_reason == "early_stop" and result.iterations < 20


def test_tv_and_warm_start_run(problem):
    _, radon, sinogram = problem
    fbp = radon.fbp(sinogram)
    result = fit(_tiny(), radon, sinogram, **{**FIT, "iterations": 10}, tv_weight=1e-3, init_image=fbp,
                 warm_start_steps=100)
    assert any("warm start" in e for e in result.events)
    # after pre-fitting to FBP the very first sinogram loss is far below a cold start's
    cold = fit(_tiny(), radon, sinogram, **{**FIT, "iterations": 1})
    assert result.curve[0] < 0.5 * cold.curve[0]


def test_total_generalized_variation_matches_analytic_values():
    """The penalties on a 12 x 15 grid (means over its 180 pixels; Neumann boundary: the last difference along
    each axis is 0). An affine image 0.3 col - 0.4 row: TV 0.5 inside, 0.3 on the last row, 0.4 on the last column;
    TGV at its own gradient field costs nothing but where that field drops to 0 at the boundary (E w: -0.4 on
    the second-last row, -0.3 on the second-last column). col^2: differences 2 col + 1, so E w = 2 inside,
    -(2 W - 3) on the second-last column. At w = 0 TGV is TV (plus the second term's smoothing)."""
    height, width = 12, 15
    y, x = torch.meshgrid(torch.arange(float(height), dtype=torch.float64),
                          torch.arange(float(width), dtype=torch.float64), indexing="ij")
    pixels = height * width
    affine = 0.3 * x - 0.4 * y + 2.0
    tv = (11 * 14 * 0.5 + 14 * 0.3 + 11 * 0.4) / pixels
    assert float(smoothed_total_variation(affine, eps=1e-20)) == pytest.approx(tv, rel=1e-12)
    boundary = (14 * 0.4 + 11 * 0.3 + 0.5) / pixels
    assert float(total_generalized_variation(affine, gradient(affine), eps=1e-20)) == \
        pytest.approx(2 * boundary, abs=1e-9)
    quadratic = x ** 2
    assert float(total_generalized_variation(quadratic, gradient(quadratic), eps=1e-20)) == \
        pytest.approx(2 * height * (2 * (width - 2) + (2 * width - 3)) / pixels, abs=1e-9)
    rough = torch.rand(2, height, width, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    zero_field = torch.zeros(2, 2, height, width, dtype=torch.float64)
    torch.testing.assert_close(total_generalized_variation(rough, zero_field, eps=1e-20),
                               smoothed_total_variation(rough, eps=1e-20))


def test_network_tv_penalty_is_the_classical_tv_per_pixel():
    """One TV convention: the network penalty at eps = 0 is :func:`classical.total_variation` / (H W)."""
    from sparsect.reconstruct import classical

    image = torch.rand(3, 9, 14, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(smoothed_total_variation(image, eps=0.0), classical.total_variation(image) / (9 * 14),
                               rtol=1e-12, atol=0.0)


def test_tgv_penalty_fit_beats_fbp_chunked_or_not_and_rolls_its_field_back(problem):
    """The TGV field is fitted with the network: the chunked two-pass gradient reaches it too (same curve),
    and a roll-back restores it with the network (the fit goes on from finite values)."""
    truth, radon, sinogram = problem
    options = {**FIT, "tgv_weight": 3e-2}
    full = fit(_tiny(), radon, sinogram, **options)
    assert psnr(full.image, truth) > psnr(radon.fbp(sinogram), truth) + 0.5
    assert full.settings["tgv_weight"] == 3e-2
    short = {**options, "iterations": 30}
    chunked = fit(_tiny(), radon, sinogram, **short, chunk_size=1000)
    np.testing.assert_allclose(chunked.curve, fit(_tiny(), radon, sinogram, **short).curve, rtol=1e-4)
    with pytest.warns(RuntimeWarning, match="non-finite"):
        rolled = fit(PoisonOnce(_tiny(), poison_call=40), radon, sinogram, **{**options, "iterations": 60},
                     snapshot_every=10)
    assert any("restored the state of iteration 30" in e for e in rolled.events)
    assert math.isfinite(rolled.final_loss) and torch.isfinite(rolled.image).all()


def test_rejects_wrong_sinogram_shape(problem):
    _, radon, sinogram = problem
    with pytest.raises(ValueError, match="sinogram"):
        fit(_tiny(), radon, sinogram[:-1], **FIT)


def test_several_networks_fitted_at_once_follow_their_own_paths(problem):
    """Two slices fitted side by side end where each would end alone (Adam is element-wise and the
    objective is a sum), both beat FBP, and the trained networks are written back."""
    truth, radon, sinogram = problem
    flipped = torch.flip(truth, dims=[1]).contiguous()
    truths = [truth, flipped]
    sinograms = torch.stack([radon(t) for t in truths])[:, None]
    options = {**FIT, "tv_weight": 3e-2, "output_scale": [0.5, 0.4], "preview_every": 100}
    seen: list[FitProgress] = []
    together = fit([_tiny(seed=0), _tiny(seed=1)], radon, sinograms, **options, callback=seen.append)
    assert together.image.shape == (2, SIZE, SIZE) and together.image_hu.shape == (2, SIZE, SIZE)
    assert together.mu.shape == (2, 1, SIZE, SIZE) and len(together.curve) == FIT["iterations"]
    assert seen[-1].image.shape == (2, SIZE, SIZE)
    assert together.n_parameters == sum(p.numel() for p in _tiny().parameters())
    for b, seed in enumerate((0, 1)):
        alone = fit(_tiny(seed=seed), radon, sinograms[b, 0], **{**options, "output_scale": [0.5, 0.4][b]})
        torch.testing.assert_close(together.image[b], alone.image, rtol=0, atol=2e-3 * float(truths[b].max()))
        assert psnr(together.image[b], truths[b]) > psnr(radon.fbp(sinograms[b, 0]), truths[b])
    trained = together.model.unstack()
    with torch.no_grad():
        rendered = trained[1](pixel_grid((SIZE, SIZE))).reshape(SIZE, SIZE) * 0.4
    torch.testing.assert_close(rendered, together.image[1], rtol=0, atol=1e-5)


def test_several_networks_need_matching_sinograms(problem):
    _, radon, sinogram = problem
    with pytest.raises(ValueError, match="for 2 model"):
        fit([_tiny(), _tiny()], radon, sinogram, **FIT)
    with pytest.raises(ValueError, match="output_scale"):
        fit([_tiny(), _tiny()], radon, torch.stack([sinogram, sinogram]), **{**FIT, "output_scale": [1, 2, 3]})


# ------------------------------------------------------------------------------------- real models


def _neural(method: str, problem, iterations: int, **kwargs):
    from sparsect.reconstruct.neural import reconstruct_neural

    truth, radon, sinogram = problem
    return truth, radon, reconstruct_neural(method, sinogram, radon.geometry, iterations=iterations,
                                            device="cpu", **kwargs)


def test_reconstruct_neural_siren_runs(problem):
    _, _, result = _neural("siren", problem, 40)
    assert result.method == "siren" and result.settings["variant"] == ["paper"]
    assert result.iterations == 40 and result.curve[-1] < result.curve[0]
    assert result.image_hu.shape == (SIZE, SIZE) and result.n_parameters > 0


def test_reconstruct_neural_variants(problem):
    _, _, result = _neural("siren", problem, 4, variant=["tv", "fbp_init", "coarse_to_fine"])
    from sparsect.reconstruct.models import get_preset
    from sparsect.reconstruct.neural import FBP_INIT_LR_FACTOR, FBP_INIT_STEPS

    assert result.settings["tv_weight"] > 0 and result.settings["warm_start"] == "fbp"
    assert result.settings["warm_start_steps"] == FBP_INIT_STEPS and result.warm_start_iterations == FBP_INIT_STEPS
    assert result.settings["lr"] == pytest.approx(get_preset("siren", "preview").optim.lr * FBP_INIT_LR_FACTOR)
    assert result.settings["coordinate_ramp"] == {"start": 0.25, "until": 0.5}
    assert result.model.config.coord_scale == 1.0  # the ramp scales the coordinates fed in, not the model
    with pytest.raises(ValueError, match="variant"):
        _neural("siren", problem, 2, variant="bogus")


# (method, iterations, variant): LRNN and WIRE with their preview presets as they are; SIREN's plain preview
# reaches 20.0 dB against FBP's 21.4 dB here (measured), so it gets its TV variant and 1000 iterations (~10 s).
BUDGETS = [("lrnn", None, None), ("wire", None, None), ("siren", 1000, "tv")]


@pytest.mark.parametrize(("method", "iterations", "variant"), BUDGETS)
def test_reconstruct_neural_beats_fbp(problem, method, iterations, variant):
    truth, radon, result = _neural(method, problem, iterations, variant=variant)
    assert result.curve[-1] < result.curve[0]
    assert psnr(result.image, truth) > psnr(radon.fbp(radon(truth)), truth)


@pytest.mark.gpu
@pytest.mark.parametrize(("method", "iterations", "variant"), BUDGETS)
def test_reconstruct_neural_on_cuda_beats_fbp(problem, method, iterations, variant):
    """The CUDA path (GPU chunk sizes, sparse projector on the GPU) reaches what CPU does."""
    from sparsect.reconstruct.neural import reconstruct_neural

    truth, radon, sinogram = problem
    result = reconstruct_neural(method, sinogram, radon.geometry, iterations=iterations, variant=variant,
                                device="cuda")
    assert result.device.startswith("cuda") and result.peak_memory_bytes > 0
    assert result.curve[-1] < result.curve[0]
    assert psnr(result.image.cpu(), truth) > psnr(radon.fbp(sinogram), truth)


@pytest.mark.gpu
def test_several_networks_on_cuda_match_each_alone(problem):
    truth, radon, _ = problem
    truths = [truth, torch.flip(truth, dims=[1]).contiguous()]
    sinograms = torch.stack([radon(t) for t in truths])[:, None]
    options = {**FIT, "device": "cuda", "iterations": 150}
    together = fit([_tiny(seed=0), _tiny(seed=1)], radon, sinograms, **{**options, "output_scale": [0.5, 0.5]})
    for b in range(2):
        alone = fit(_tiny(seed=b), radon, sinograms[b, 0], **options)
        torch.testing.assert_close(together.image[b].cpu(), alone.image.cpu(), rtol=0,
                                   atol=2e-3 * float(truths[b].max()))


def test_divergence_from_a_loss_blow_up_without_nan(problem):
    """Parameters knocked far off (finite, but the loss jumps by orders of magnitude) are rolled back."""
    truth, radon, sinogram = problem
    model = _tiny()
    before = []

    def knock(progress: FitProgress) -> None:
        if progress.iteration == 60:
            before.append(progress.loss)
            with torch.no_grad():
                model.head.weight.mul_(1e3)

    with pytest.warns(RuntimeWarning, match="lowest so far"):
        result = fit(model, radon, sinogram, **{**FIT, "iterations": 80}, snapshot_every=10, callback=knock,
                     callback_every=1)
    # the state after 60 steps holds the knock (made after step 60): the good state is the snapshot before it
    assert result.stop_reason == "completed" and any("restored the state of iteration 50" in e
                                                     for e in result.events)
    assert result.curve[-1] < 2 * before[0]


def test_the_largest_loss_ratio_is_recorded_and_the_divergence_factor_applies(problem):
    """``largest_loss_ratio`` is the curve's largest loss over the lowest before it (float64 from the curve);
    a ``divergence_factor`` just below it turns that step into a roll-back, the default leaves the fit alone."""
    _, radon, sinogram = problem
    options = {**FIT, "iterations": 60, "lr": 3e-3, "snapshot_every": 5}
    result = fit(_tiny(), radon, sinogram, **options)
    curve = np.asarray(result.curve, dtype=np.float64)
    ratios = curve[1:] / np.minimum.accumulate(curve)[:-1]
    largest = float(ratios.max())
    assert largest > 1.5  # the fit has a spike to catch
    assert result.settings["largest_loss_ratio"] == pytest.approx(largest, rel=1e-9)
    assert result.settings["recoveries"] == 0 and result.settings["divergence_factor"] == 100.0
    step = int(ratios.argmax()) + 2  # 1-based iteration of the spike
    factor = 1 + (largest - 1) * 0.99
    with pytest.warns(RuntimeWarning, match=f"above {factor:g}x the lowest so far at iteration {step}:"):
        caught = fit(_tiny(), radon, sinogram, **options, divergence_factor=factor)
    assert caught.settings["recoveries"] >= 1
    with pytest.raises(ValueError, match="divergence_factor"):
        fit(_tiny(), radon, sinogram, **options, divergence_factor=1.0)


def _knock_network(stack, network: int, at: int, times: int):
    """A callback that multiplies network ``network``'s output weights by 1e3 on the first ``times`` reported
    iterations from ``at`` on (the loss jumps by orders of magnitude; nothing becomes NaN)."""
    from sparsect.reconstruct.models.stacked import StackedModels

    assert isinstance(stack, StackedModels)
    weight = dict(zip(stack._names, stack.stacked, strict=True))["head.weight"]
    knocked = []

    def knock(progress: FitProgress) -> None:
        if progress.iteration >= at and len(knocked) < times:
            knocked.append(progress.iteration)
            with torch.no_grad():
                weight[network].mul_(1e3)

    return knock


def test_a_network_that_blows_up_is_rolled_back_alone(problem):
    """Of two slices fitted side by side, the one knocked off is rolled back (and its rate halved) alone: the
    other ends where it ends alone, which a roll-back shared by the batch would not give."""
    from sparsect.reconstruct.models.stacked import StackedModels

    truth, radon, sinogram = problem
    sinograms = torch.stack([sinogram, sinogram])[:, None]
    options = {**FIT, "iterations": 120, "snapshot_every": 10, "callback_every": 1}
    stack = StackedModels([_tiny(seed=0), _tiny(seed=1)])
    with pytest.warns(RuntimeWarning, match="network 2 of 2: loss .* lowest so far"):
        together = fit(stack, radon, sinograms, **options, callback=_knock_network(stack, 1, at=60, times=1))
    assert [e for e in together.events if "restored" in e] == [
        next(e for e in together.events if e.startswith("network 2 of 2: loss") and "iteration 50," in e)]
    assert together.settings["recoveries"] == 1 and together.diverged == []
    alone = fit(_tiny(seed=0), radon, sinogram, **options)
    torch.testing.assert_close(together.image[0], alone.image, rtol=0, atol=2e-3 * float(truth.max()))
    # the knocked network went back to its iteration-50 state and went on fitting at half rate: its sinogram
    # residual ends near that of its unknocked fit, orders of magnitude below the knocked state's
    unknocked = fit(_tiny(seed=1), radon, sinogram, **options)
    residual = float((radon(together.image[1]) - sinogram).pow(2).mean())
    assert residual < 2 * unknocked.final_loss


def test_a_network_out_of_roll_backs_is_frozen_and_listed(problem):
    """A network that keeps blowing up uses its roll-backs, then keeps its last good state and is listed in
    ``diverged`` while the other goes on to the end of its budget."""
    from sparsect.reconstruct.models.stacked import StackedModels

    truth, radon, sinogram = problem
    sinograms = torch.stack([sinogram, sinogram])[:, None]
    options = {**FIT, "iterations": 100, "snapshot_every": 10, "callback_every": 1, "max_recoveries": 2}
    stack = StackedModels([_tiny(seed=0), _tiny(seed=1)])
    with pytest.warns(RuntimeWarning, match="network 1 of 2: diverged at iteration"):
        result = fit(stack, radon, sinograms, **options, callback=_knock_network(stack, 0, at=50, times=3))
    assert result.diverged == [0] and result.stop_reason == "completed" and result.iterations == 100
    assert result.settings["recoveries"] == 2
    assert torch.isfinite(result.image).all()
    # frozen at its good state of iteration 40 (the last before the first knock): its residual is that state's
    assert any(e.startswith("network 1 of 2: diverged") and e.endswith("state of iteration 40") for e in result.events)
    residual = float((radon(result.image[0]) - sinogram).pow(2).mean())
    assert residual < 2 * result.curve[40] < 1e-3 * np.nanmax(result.curve)
    alone = fit(_tiny(seed=1), radon, sinogram, **options)
    torch.testing.assert_close(result.image[1], alone.image, rtol=0, atol=2e-3 * float(truth.max()))


def test_every_network_out_of_roll_backs_ends_the_fit_diverged(problem):
    _, radon, sinogram = problem
    model = _tiny()

    def knock(progress: FitProgress) -> None:
        if progress.iteration >= 20:
            with torch.no_grad():
                model.head.weight.mul_(1e3)

    with pytest.warns(RuntimeWarning, match="diverged at iteration .* giving up at the state of iteration 10"):
        result = fit(model, radon, sinogram, **{**FIT, "iterations": 100, "snapshot_every": 10, "max_recoveries": 1},
                     callback=knock, callback_every=1)
    assert result.stop_reason == "diverged" and result.diverged == [0] and result.iterations < 100


def test_ramp_data_norm_matches_float64_weighted_spectrum():
    """The "ramp" data norm against numpy float64: full (two-sided) FFT of each zero-padded projection,
    squared magnitude weighted by |ramp|, floored at the first non-zero frequency, averaged."""
    from sparsect.operators.filters import padded_length, ramp_response
    from sparsect.reconstruct.data_terms import data_norm

    det_count = 37
    residual = torch.randn(3, 1, 5, det_count, generator=torch.Generator().manual_seed(1))
    n = padded_length(det_count)
    one_sided = ramp_response(det_count).numpy()
    ramp = np.concatenate([one_sided, one_sided[1:-1][::-1]])  # the response of frequencies 0..n-1
    weights = np.maximum(ramp, one_sided[1])
    spectrum = np.fft.fft(residual.numpy().astype(np.float64), n=n, axis=-1)
    expected = (np.abs(spectrum) ** 2 * weights).sum(-1).mean(axis=(1, 2)) / (n * det_count)
    got = data_norm("ramp", det_count, torch.device("cpu"))(residual)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5)
    plain = data_norm("uniform", det_count, torch.device("cpu"))(residual)
    np.testing.assert_allclose(plain.numpy(), (residual.numpy().astype(np.float64) ** 2).mean(axis=(1, 2, 3)),
                               rtol=1e-6)
    with pytest.raises(ValueError, match="data_weighting"):
        fit(nn.Linear(2, 1), operators.Radon(operators.ParallelBeam.sparse(4, (8, 8))), torch.zeros(4, 8),
            iterations=1, lr=1e-3, data_weighting="bogus")


def test_ramp_loss_variant_beats_the_plain_fit(problem):
    """Preconditioning the data term with the ramp filter: the same LRNN preview budget gets closer to the
    phantom and beats FBP where the plain fit does not yet (measured here: 33.5 vs 18.7 dB, FBP 21.4 dB)."""
    truth, radon, plain = _neural("lrnn", problem, 60)
    _, _, ramp = _neural("lrnn", problem, 60, variant="ramp_loss")
    assert ramp.settings["data_weighting"] == "ramp" and plain.settings["data_weighting"] == "uniform"
    assert psnr(ramp.image, truth) > psnr(plain.image, truth) + 5.0
    assert psnr(ramp.image, truth) > psnr(radon.fbp(radon(truth)), truth) + 5.0


# ------------------------------------------------------------------------------------ noise-aware fit options


def _poisson_draws(line_integrals: np.ndarray, photons: float, draws: int, seed: int = 0) -> np.ndarray:
    """``draws`` noisy copies of ``line_integrals`` measured with ``photons`` per bin (numpy Poisson counts)."""
    counts = np.random.default_rng(seed).poisson(photons * np.exp(-line_integrals), size=(draws, *line_integrals.shape))
    return -np.log(np.maximum(counts, 1) / photons)


def test_poisson_weights_and_expected_noise_match_monte_carlo():
    from sparsect.reconstruct.data_terms import expected_noise_mse, poisson_weights

    y = np.linspace(0.0, 3.0, 40).reshape(1, 1, 4, 10)
    photons = 2e4
    noise = _poisson_draws(y, photons, 4000) - y
    variance = noise.var(axis=0)  # per bin
    weights = poisson_weights(torch.as_tensor(y, dtype=torch.float64)).numpy()
    inverse = 1 / variance
    np.testing.assert_allclose(weights, inverse / inverse.mean(), rtol=0.08)
    expected = float(expected_noise_mse(torch.as_tensor(y, dtype=torch.float64), photons)[0])
    assert expected == pytest.approx(float(np.mean(noise**2)), rel=0.03)
    assert float(expected_noise_mse(torch.as_tensor(y), math.inf)[0]) == 0.0


def test_discrepancy_stop_ends_the_fit_at_the_noise_level(problem):
    _, radon, sinogram = problem
    photons = 3e3
    noisy = torch.as_tensor(_poisson_draws(sinogram.double().numpy(), photons, 1, seed=1)[0], dtype=torch.float32)
    noise_mse = float(np.mean(np.exp(np.clip(noisy.double().numpy(), 0, None))) / photons)
    result = fit(_tiny(), radon, noisy, **{**FIT, "iterations": 600, "lr": 3e-3}, discrepancy=1.0, photons=photons)
    assert result.stop_reason == "discrepancy" and result.iterations < 600
    assert result.curve[-1] <= noise_mse < result.curve[-2]
    unknown = fit(_tiny(), radon, noisy, **{**FIT, "iterations": 3}, discrepancy=1.0, photons=None)
    assert unknown.stop_reason == "completed" and any("photon count" in e for e in unknown.events)


def test_positive_output_and_weighted_fit(problem):
    truth, radon, sinogram = problem
    result = fit(_tiny(), radon, sinogram, **{**FIT, "iterations": 200}, positive=True, noise_weighting=True)
    assert float(result.image.min()) >= 0
    assert psnr(result.image, truth) > psnr(radon.fbp(sinogram)[0, 0].clamp_min(0), truth)
    # the reported loss stays the plain sinogram MSE, whatever the data term weighs
    with torch.no_grad():
        plain = float((radon(result.image) - sinogram).double().pow(2).mean())
    assert result.final_loss == pytest.approx(plain, rel=0.05)


def test_tv_warm_start_prefits_the_tv_image(problem):
    from sparsect.reconstruct import classical

    truth, radon, sinogram = problem
    result = fit(_tiny(), radon, sinogram, **{**FIT, "iterations": 0, "lr": 1e-3}, warm_start="tv",
                 warm_start_steps=400, photons=math.inf)
    assert result.settings["warm_start"] == "tv" and "warm_start_image_seconds" in result.timings
    tv_image = classical.tv(sinogram, radon, photons=math.inf).mu
    assert psnr(result.image, tv_image) > 25  # the network holds the TV image after the pre-fit


def test_alternative_warm_starts_are_rejected():
    from sparsect.reconstruct.neural import canonical_variants

    with pytest.raises(ValueError, match="alternatives"):
        canonical_variants(["fbp_init", "tv_init"])
    assert canonical_variants(["wls", "tv_init", "discrepancy", "positive"]) == (
        "discrepancy", "positive", "tv_init", "wls")


def test_tv_blend_is_the_weighted_mean_of_the_network_and_tv(problem):
    from sparsect.reconstruct import classical
    from sparsect.reconstruct.neural import TV_BLEND_WEIGHT

    truth, radon, sinogram = problem
    _, _, plain = _neural("lrnn", problem, 20, variant=["ramp_loss"], photons=math.inf)
    phases = []
    _, _, blend = _neural("lrnn", problem, 20, variant=["ramp_loss", "tv_blend"], photons=math.inf,
                          callback=lambda p: phases.append((p.phase, p.iteration)))
    tv = classical.tv(sinogram, radon, photons=math.inf)
    w = TV_BLEND_WEIGHT
    np.testing.assert_allclose(blend.image_hu, w * plain.image_hu + (1 - w) * tv.image_hu, atol=1e-3)
    np.testing.assert_allclose(blend.image.numpy(), w * plain.image.numpy() + (1 - w) * tv.mu.numpy(), atol=1e-6)
    assert blend.settings["tv_blend_weight"] == w and blend.timings["tv_blend_seconds"] > 0
    # TV's iterations are reported after the fit's, as their own phase
    assert phases[-1] == ("tv_blend", tv.iterations) and ("fit", 20) in phases
    _, _, members = _neural("lrnn", problem, 5, variant=["ensemble", "tv_blend"], ensemble_size=2, photons=math.inf)
    _, _, alone = _neural("lrnn", problem, 5, variant=["ensemble"], ensemble_size=2, photons=math.inf)
    np.testing.assert_allclose(members.uncertainty_hu, w * alone.uncertainty_hu, rtol=1e-5, atol=1e-3)


def test_band_blend_blends_the_ensemble_and_its_members_with_tv_by_frequency(problem):
    """The image is TV's plus the band response of (network - TV); the uncertainty map is the spread of the
    members blended one by one (each member as fitted alone from its seed)."""
    from sparsect.reconstruct import blend, classical, neural

    truth, radon, sinogram = problem
    options = dict(ensemble_size=2, photons=math.inf)
    _, _, banded = _neural("lrnn", problem, 5, variant=["ensemble", "band_blend"], **options)
    _, _, mean = _neural("lrnn", problem, 5, variant=["ensemble"], **options)
    tv = np.asarray(classical.tv(sinogram, radon, photons=math.inf).image_hu, dtype=np.float64)
    shares = neural.BAND_BLEND_SHARES["lrnn"]
    response = blend.band_response((2 * SIZE, 2 * SIZE), shares.coarse, shares.fine, shares.cutoff,
                                   shares.transition)
    # two fits agree to the rounding of parallel sums (a few hundredths of a HU on a busy machine), not bitwise;
    # another share would move the image by tens of HU
    np.testing.assert_allclose(banded.image_hu, blend.blend(tv, mean.image_hu, response), atol=0.25)
    assert banded.settings["band_blend"]["cutoff_cycles_per_pixel"] == shares.cutoff
    assert "band_blend" in banded.settings["variant"] and banded.timings["tv_blend_seconds"] > 0
    members = [np.asarray(_neural("lrnn", problem, 5, seed=k, photons=math.inf)[2].image_hu, np.float64)
               for k in (0, 1)]
    spread = np.std([blend.blend(tv, m, response) for m in members], axis=0)
    np.testing.assert_allclose(banded.uncertainty_hu, spread, atol=0.02 * float(spread.max()))
    assert not np.allclose(banded.uncertainty_hu, neural.TV_BLEND_WEIGHT * mean.uncertainty_hu, atol=1e-3)
    with pytest.raises(ValueError, match="alternatives"):
        neural.canonical_variants(["tv_blend", "band_blend"])


class ArmedSiren(TinySiren):
    """TinySiren whose training forwards turn NaN from the ``after``-th one on when its ``armed`` buffer is 1
    (a buffer, so each network of a stack carries its own; evaluation of the final image stays finite)."""

    def __init__(self, armed: bool, after: int) -> None:
        super().__init__()
        self.register_buffer("armed", torch.tensor(float(armed)))
        self.after, self.calls = after, [0]

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        out = super().forward(coords)
        if torch.is_grad_enabled():
            self.calls[0] += 1
            if self.calls[0] > self.after:
                return out + torch.where(self.armed > 0, float("nan"), 0.0)
        return out


def test_an_ensemble_member_out_of_roll_backs_is_left_out(problem, monkeypatch):
    """The member whose fit keeps diverging is left out of the mean and the uncertainty map (with a warning
    and a record), so the image is the mean of the other members, each as fitted alone from its seed."""
    from sparsect.reconstruct import neural

    truth, radon, sinogram = problem
    bad_seed = 1

    def build(method, spec, seed):
        torch.manual_seed(seed)
        return ArmedSiren(armed=seed == bad_seed, after=30)  # 3 members, one forward each per step: step 10 on

    monkeypatch.setattr(neural, "_seeded_model", build)
    options = dict(iterations=40, device="cpu", photons=math.inf, output_scale=0.5, max_recoveries=2)
    with pytest.warns(RuntimeWarning, match=f"member with seed {bad_seed} ran out of roll-backs"):
        ensemble = neural.reconstruct_neural("siren", sinogram, radon.geometry, variant=["ensemble"], **options)
    assert ensemble.settings["ensemble_left_out"] == [{"slice": 0, "seed": bad_seed}]
    assert ensemble.diverged == [] and ensemble.stop_reason == "completed" and ensemble.iterations == 40
    alone = [np.asarray(neural.reconstruct_neural("siren", sinogram, radon.geometry, seed=seed, **options).image_hu,
                        np.float64) for seed in (0, 2)]
    np.testing.assert_allclose(ensemble.image_hu, np.mean(alone, axis=0), atol=0.25)
    np.testing.assert_allclose(ensemble.uncertainty_hu, np.std(alone, axis=0), atol=0.25)
    assert np.isfinite(ensemble.curve[13:]).all()  # NaN at the three steps that diverged, then the others' mean


@pytest.mark.parametrize("name", ["wire", "siren"])
def test_band_blend_takes_each_networks_own_shares(problem, name):
    from sparsect.reconstruct import blend, classical, neural
    from sparsect.reconstruct.registry import NETWORK_METHODS

    truth, radon, sinogram = problem
    assert set(neural.BAND_BLEND_SHARES) == set(NETWORK_METHODS)
    shares = neural.BAND_BLEND_SHARES[name]
    assert shares != neural.BAND_BLEND_SHARES["lrnn"]
    _, _, banded = _neural(name, problem, 3, variant=["band_blend"], photons=math.inf)
    _, _, alone = _neural(name, problem, 3, photons=math.inf)
    tv = np.asarray(classical.tv(sinogram, radon, photons=math.inf).image_hu, dtype=np.float64)
    response = blend.band_response((2 * SIZE, 2 * SIZE), shares.coarse, shares.fine, shares.cutoff,
                                   shares.transition)
    np.testing.assert_allclose(banded.image_hu, blend.blend(tv, alone.image_hu, response), atol=0.25)
    assert banded.settings["band_blend"]["coarse"] == shares.coarse


def test_recommended_stands_for_each_networks_own_set():
    """"recommended" resolves per network (WIRE without the FBP warm start), alone like "paper"."""
    from sparsect.reconstruct.neural import RECOMMENDED_VARIANTS, canonical_variants, fit_config, resolve_variants

    assert canonical_variants("recommended") == ("recommended",)
    with pytest.raises(ValueError, match="cannot be combined"):
        canonical_variants(["recommended", "ramp_loss"])
    for network in ("lrnn", "siren", "wire"):
        assert resolve_variants(network, "recommended") == RECOMMENDED_VARIANTS[network]
        assert resolve_variants(network, ["tv", "ramp_loss"]) == ("ramp_loss", "tv")
    assert fit_config("lrnn", variant="recommended").warm_start == "fbp"
    assert fit_config("siren", variant="recommended").warm_start == "fbp"
    wire = fit_config("wire", variant="recommended")
    assert wire.warm_start is None and wire.data_weighting == "ramp" and wire.lr == fit_config("wire").lr


def test_fit_variants_are_records_in_the_order_of_the_names():
    """Every variant name has one record (label, help, transform); the FitConfig transforms are the ones with a
    transform, "paper" the identity, the ensemble, the blends and "recommended" none."""
    from sparsect.reconstruct import neural
    from sparsect.reconstruct.fit import FitConfig
    from sparsect.reconstruct.variants import FIT_VARIANTS

    assert tuple(FIT_VARIANTS) == neural.VARIANT_NAMES == (
        "paper", "tv", "fbp_init", "tv_init", "coarse_to_fine", "coarse_grid", "ramp_loss", "wls", "discrepancy",
        "positive", "ensemble", "tv_blend", "band_blend", "recommended")
    assert list(neural.VARIANTS) == [name for name, v in FIT_VARIANTS.items() if v.transform is not None]
    assert [name for name, v in FIT_VARIANTS.items() if v.transform is None] == [
        "ensemble", "tv_blend", "band_blend", "recommended"]
    config = FitConfig(lr=0.1)
    assert FIT_VARIANTS["paper"].transform(config) == config
    assert FIT_VARIANTS["tv"].transform(config).tv_weight == neural.TV_WEIGHT
    for name, v in FIT_VARIANTS.items():
        assert v.name == name and v.label and v.help.endswith(".") and len(v.help) < 200


def test_describe_fit_in_words():
    from sparsect.reconstruct.variants import RECOMMENDED_VARIANTS, describe_fit

    assert describe_fit("LRNN", RECOMMENDED_VARIANTS["lrnn"], 3) == (
        "LRNN, 3 seeds, FBP warm start, 128² grid first, ramp-weighted loss, blended with TV by frequency band")
    assert describe_fit("WIRE", RECOMMENDED_VARIANTS["wire"], 5) == (
        "WIRE, 5 seeds, 128² grid first, ramp-weighted loss, blended with TV by frequency band")
    assert describe_fit("LRNN", ("paper",), 3) == describe_fit("LRNN", (), 3) == "LRNN, published fit"
    # a fixed order whatever the order given; labels keep their acronyms and proper names
    assert describe_fit("SIREN", ("wls", "tv_blend", "ensemble", "tv", "coarse_to_fine"), 1) == (
        "SIREN, 1 seed, TV penalty, coarse to fine, Poisson-weighted loss, blended with TV")
    assert describe_fit("LRNN", ("recommended",), 3) == "LRNN, recommended fit"
    with pytest.raises(ValueError, match="bogus"):
        describe_fit("LRNN", ("bogus",), 3)
