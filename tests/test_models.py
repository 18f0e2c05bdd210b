"""Tests for the coordinate networks in reconstruct.models.
(Over 400 lines on purpose: one module's tests stay together with the fixtures they share.)
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys

import pytest
import torch

from sparsect import data
from sparsect.reconstruct.models import (
    MODELS,
    PRESET_NAMES,
    LRNNConfig,
    LRNNLayer,
    SIRENConfig,
    WIREConfig,
    build_model,
    components,
    components_numba,
    count_parameters,
    get_preset,
    lrnn_parameter_count,
    siren_parameter_count,
    wire_parameter_count,
)
from sparsect.reconstruct.models.components import component_functions, component_functions_reference
from sparsect.reconstruct.models.lrnn import _FactorProduct
from sparsect.reconstruct.models.stacked import StackedModels

SMALL = {
    "lrnn": dict(depth=2, rank=8, proj_dim=4, width=3),
    "wire": dict(hidden_features=16),
    "siren": dict(hidden_features=16),
}


def _coords(n: int = 64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 2, generator=g) * 2 - 1


@pytest.mark.parametrize("name", MODELS)
def test_shapes_and_gradients(name):
    torch.manual_seed(0)
    model = build_model(name, "preview", **SMALL[name])
    x = _coords(37)
    y = model(x)
    assert y.shape == (37, 1) and y.dtype == torch.float32 and torch.isfinite(y).all()
    y.square().mean().backward()
    for p in model.parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(torch.view_as_real(p.grad) if p.is_complex() else p.grad).all()


@pytest.mark.parametrize("activation", ["siren", "spder", "spder_atan"])
@pytest.mark.parametrize("shared", [False, True])
def test_lrnn_variants_run(activation, shared):
    torch.manual_seed(0)
    model = build_model("lrnn", SMALL["lrnn"], activation=activation, shared=shared, coord_scale=0.5)
    y = model(_coords(20))
    assert y.shape == (20, 1) and torch.isfinite(y).all()
    assert count_parameters(model) == lrnn_parameter_count(model.config)


def test_parameter_counts():
    assert wire_parameter_count(WIREConfig()) == 181_692
    assert count_parameters(build_model("wire", "paper")) == 181_692
    # frozen w0/s0 scalars (3 layers x 2) are counted, but are not trainable
    assert count_parameters(build_model("wire", "paper"), trainable_only=True) == 181_686
    # hand-computed: first real layer (2+1)*212, 2 complex hidden 2*(212+1)*212, complex head 2*(212+1), 6 scalars
    assert 3 * 212 + 2 * 2 * 213 * 212 + 2 * 213 + 6 == 181_692
    for name, cfg_cls, formula in [
        ("lrnn", LRNNConfig, lrnn_parameter_count),
        ("siren", SIRENConfig, siren_parameter_count),
        ("wire", WIREConfig, wire_parameter_count),
    ]:
        for preset in PRESET_NAMES:
            cfg = get_preset(name, preset).config
            assert isinstance(cfg, cfg_cls)
            assert count_parameters(build_model(name, preset)) == formula(cfg)
    # LRNN by hand: r=8, d=4, width=3, depth=2, in=2
    r, d, w = 8, 4, 3
    layer1 = 2 * r * d + r * d + r * d * (3 * w + 1) + 2 * r
    layer2 = r * r * d + r * d + r * d * (3 * w + 1) + 2 * r
    assert lrnn_parameter_count(LRNNConfig(**SMALL["lrnn"])) == layer1 + layer2 + r + 1
    shared = lrnn_parameter_count(LRNNConfig(**SMALL["lrnn"], shared=True))
    assert shared == layer1 + layer2 + r + 1 - 2 * (r * d - r) * (3 * w + 1)
    # SIREN by hand: 2 -> 16 -> 16 -> 16 -> 1
    assert siren_parameter_count(SIRENConfig(hidden_features=16)) == 3 * 16 + 2 * 17 * 16 + 17
    # paper LRNN is sized like WIRE (~180k)
    assert abs(lrnn_parameter_count(get_preset("lrnn", "paper").config) - 181_692) < 0.01 * 181_692


@pytest.mark.parametrize("activation", ["siren", "spder", "spder_atan"])
def test_lrnn_product_variance_bounded(activation):
    """Lemma 1: Var[prod_j (1 + g_j / sqrt d)] <= exp(sigma^2) - 1 with sigma^2 = E[g^2] at init."""
    x = torch.randn(128, 16)  # unit-variance inputs, as after a LayerNorm
    variances = []
    for d in (4, 16, 64):
        torch.manual_seed(d)
        layer = LRNNLayer(16, rank=512, proj_dim=d, width=4, activation=activation, w0=1.0)
        with torch.no_grad():
            g = layer.components(x)  # (N, r, d)
            phi = torch.prod(1.0 + layer.gamma * g, dim=-1)
        sigma2 = g.square().mean().item()
        assert abs(g.mean().item()) < 0.1 * math.sqrt(sigma2)
        assert 0.3 < sigma2 < 3.0  # init_std = 1 up to the activation-RMS estimate
        var = phi.var().item()
        assert abs(phi.mean().item() - 1.0) < 0.2
        assert var <= 1.15 * (math.exp(sigma2) - 1.0)
        variances.append(var)
    assert max(variances) < 5.0


@pytest.mark.parametrize("activation", ["siren", "spder", "spder_atan"])
@pytest.mark.parametrize("shared", [False, True])
def test_fast_layer_matches_reference(activation, shared, benchmark_module):
    bench = benchmark_module("lrnn_layer")
    torch.manual_seed(0)
    layer = LRNNLayer(5, rank=6, proj_dim=8, width=4, activation=activation, w0=3.0, shared=shared)
    x = torch.randn(300, 5)
    out = layer(x)
    ref = bench.reference_layer_forward(layer, x)
    assert torch.allclose(out, ref, atol=1e-5, rtol=0)
    gy = torch.randn_like(out)
    params = list(layer.parameters())
    g_fast = torch.autograd.grad(out, params, gy)
    g_ref = torch.autograd.grad(ref, params, gy)
    for a, b in zip(g_fast, g_ref, strict=True):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("activation", ["siren", "spder"])
def test_component_kernel_matches_reference_alone_and_under_vmap(activation):
    torch.manual_seed(1)
    z = torch.randn(3, 500, 12, requires_grad=True)  # 3 networks side by side
    a, c, v = (torch.randn(3, 12, 3, requires_grad=True) for _ in range(3))
    e = torch.randn(3, 12, requires_grad=True)
    inputs = (z, a, c, v, e)
    batched = torch.vmap(lambda *t: component_functions(*t, activation))(*inputs)
    gy = torch.randn_like(batched)
    grads = torch.autograd.grad(batched, inputs, gy)
    for i in range(3):
        alone = component_functions(*(t[i] for t in inputs), activation)
        ref = component_functions_reference(*(t[i] for t in inputs), activation)
        assert torch.allclose(alone, ref, atol=1e-5) and torch.allclose(batched[i], ref, atol=1e-5)
        ref_grads = torch.autograd.grad(ref, inputs, gy[i])
        for g, g_ref in zip(grads, ref_grads, strict=True):
            assert torch.allclose(g[i], g_ref[i], atol=1e-4, rtol=1e-4)


def test_lrnn_model_matches_reference(benchmark_module):
    bench = benchmark_module("lrnn_layer")
    torch.manual_seed(0)
    model = build_model("lrnn", "preview")
    x = _coords(200)
    with torch.no_grad():
        assert torch.allclose(model(x), bench.reference_model_forward(model, x), atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_determinism(name):
    outs = []
    for _ in range(2):
        torch.manual_seed(123)
        model = build_model(name, "preview", **SMALL[name])
        outs.append(model(_coords(50)).detach())
    assert torch.equal(outs[0], outs[1])


@pytest.mark.parametrize("name", MODELS)
def test_fits_toy_signal(name):
    torch.manual_seed(0)
    model = build_model(name, "preview", **SMALL[name])
    lin = torch.linspace(-1, 1, 16)
    x = torch.stack(torch.meshgrid(lin, lin, indexing="ij"), -1).reshape(-1, 2)
    target = (torch.sin(3 * x[:, :1]) * torch.cos(2 * x[:, 1:]) + 0.5 * (x.square().sum(1, keepdim=True) < 0.4)).float()
    lr = {"lrnn": 5e-3, "wire": 5e-3, "siren": 1e-3}[name]
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(50):
        opt.zero_grad()
        loss = (model(x) - target).square().mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_build_model_inputs_and_errors():
    cfg = get_preset("siren", "preview").config
    assert build_model("siren", cfg).config == cfg
    assert build_model("SIREN", get_preset("siren", "paper")).config.hidden_features == 256
    assert build_model("lrnn", {"rank": 4, "proj_dim": 2}).config.rank == 4
    assert build_model("lrnn", "preview", activation="spder").config.activation == "spder"
    with pytest.raises(KeyError):
        build_model("nerf")
    with pytest.raises(KeyError):
        build_model("lrnn", "huge")
    with pytest.raises(TypeError):
        build_model("lrnn", WIREConfig())
    with pytest.raises(ValueError):
        build_model("lrnn", "preview", activation="relu")


@pytest.mark.parametrize("name, field, value", [
    ("lrnn", "rank", 0), ("lrnn", "width", "4"), ("lrnn", "depth", True), ("lrnn", "w0", 0.0),
    ("lrnn", "init_std", math.inf), ("lrnn", "shared", 1), ("wire", "hidden_features", 2.5),
    ("wire", "s0", -1.0), ("siren", "hidden_w0", math.nan), ("siren", "hidden_layers", 0),
])
def test_model_configs_reject_bad_fields_in_one_line(name, field, value):
    with pytest.raises(ValueError, match=rf"\.{field} must be") as raised:
        build_model(name, "preview", **{field: value})
    assert "\n" not in str(raised.value)


def test_quality_benchmark_checks_fit_and_model_fields_before_running(benchmark_module):
    quality = benchmark_module("quality")
    for fields, option in (({"bogus": 1}, "--fit"), ({"lr": -1.0}, "--fit")):
        quality.FIT_FIELDS.clear()
        quality.FIT_FIELDS.update(fields)
        with pytest.raises(ValueError, match=option):
            quality.check_network_fields(["tv", "lrnn+fbp_init"])
    quality.FIT_FIELDS.clear()
    quality.MODEL_FIELDS.update(rank=0)
    with pytest.raises(ValueError, match="--model"):
        quality.check_network_fields(["lrnn"])
    quality.check_network_fields(["tv", "fbp"])  # classical methods take no network fields
    quality.MODEL_FIELDS.clear()
    quality.FIT_FIELDS.update(lr=0.05)
    quality.check_network_fields(["lrnn+fbp_init", "wire", "siren"])


def test_quality_benchmark_seed_option_sets_the_networks_first_seed(benchmark_module):
    """``--seed S``: the ensemble's members start from seeds S, S + 1, ...; the table names the seed; a negative
    seed is refused before any work."""
    quality = benchmark_module("quality")
    parser = argparse.ArgumentParser()
    quality.add_network_options(parser)
    with pytest.raises(SystemExit):
        quality.apply_network_options(parser, parser.parse_args(["--seed", "-1"]), ["lrnn"])
    quality.apply_network_options(parser, parser.parse_args(["--seed", "3", "--ensemble-size", "2"]), ["lrnn"])
    quality.NEURAL_BUDGET.update(iterations=2, device="cpu")
    scan = data.simulate(data.load_sample("shepp_logan"), 6, size=16)
    result = quality.lookup("lrnn+ensemble")(scan.sinogram, scan.geometry, pixel_size_mm=scan.pixel_size_mm)
    assert result.settings["ensemble_seeds"] == [3, 4]
    assert quality.method_label("lrnn+ensemble") == "lrnn+ensemble[ensemble_size=2,seed=3]"
    assert quality.method_label("tv") == "tv"


def test_benchmarks_name_the_noise_by_its_photon_count(benchmark_module):
    """One noise label for the tables and the saved reconstructions' file names of every benchmark."""
    quality = benchmark_module("quality")
    assert quality.noise_label(0.0) == "none" and quality.noise_label(1e5) == "1e+05"
    assert quality.noise_label(2.5e4) == "2.5e+04" and float(quality.noise_label(1 / 3)) == 1 / 3


def test_optim_schedule():
    optim = get_preset("wire", "paper").optim
    assert optim.lr == 5e-3 and optim.final_lr_factor == 0.1


@pytest.mark.parametrize("name", MODELS)
def test_stacked_models_equal_each_network_alone(name):
    models = []
    for seed in range(3):
        torch.manual_seed(seed)
        models.append(build_model(name, "preview", **SMALL[name]))
    stacked = StackedModels(models)
    assert len(stacked) == 3 and stacked.parameters_per_model() == count_parameters(models[0])
    x = _coords(40)
    out = stacked(x)
    assert out.shape == (3, 40, 1)
    gy = torch.randn_like(out)
    trainable = [p for p in stacked.stacked if p.requires_grad]
    grads = torch.autograd.grad(out, trainable, gy)
    for i, model in enumerate(models):
        alone = model(x)
        assert torch.allclose(out[i], alone, atol=1e-5)
        own = torch.autograd.grad(alone, [p for p in model.parameters() if p.requires_grad], gy[i])
        for g, g_own in zip(grads, own, strict=True):
            assert torch.allclose(g[i], g_own, atol=1e-5, rtol=1e-4)
    with torch.no_grad():
        for p in stacked.stacked:
            p.add_(1.0)
    stacked.unstack()
    for i, model in enumerate(models):
        assert torch.allclose(model(x), stacked(x)[i], atol=1e-5)


def test_stacked_models_reject_mixed_architectures():
    with pytest.raises(ValueError, match="one class and one configuration"):
        StackedModels([build_model("lrnn", "preview", **SMALL["lrnn"]), build_model("lrnn", "preview")])
    with pytest.raises(ValueError, match="one class"):
        StackedModels([build_model("wire", "preview", **SMALL["wire"]),
                       build_model("siren", "preview", **SMALL["siren"])])


def test_component_kernel_runs_in_float32_under_autocast():
    """bf16 autocast (fits with amp=True on CUDA; CPU autocast here) must not lower the kernel's precision."""
    torch.manual_seed(2)
    z = torch.randn(400, 6) * 3
    a, c, v = (torch.randn(6, 4) for _ in range(3))
    e = torch.randn(6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = component_functions(z.bfloat16(), a * 30, c * 30, v, e, "siren")
    assert out.dtype == torch.float32
    # the bf16 input z is exact in float32; only the kernel's arithmetic could lose precision
    reference = component_functions_reference(z.bfloat16().double(), a.double() * 30, c.double() * 30, v.double(),
                                              e.double(), "siren")
    assert torch.allclose(out.double(), reference, atol=1e-4)


@pytest.mark.gpu
@pytest.mark.parametrize("activation", ["siren", "spder"])
def test_component_kernel_on_cuda_matches_float64_reference(activation, monkeypatch):
    """The CUDA path (large chunks, bf16 autocast as in fits, vmap over networks) against float64 on CPU;
    a small chunk budget makes the kernel cross several chunk boundaries."""
    from sparsect.reconstruct.models import components

    monkeypatch.setattr(components, "_CHUNK_ELEMENTS_ACCELERATOR", 1 << 12)
    torch.manual_seed(3)
    z = torch.randn(2, 3000, 24, dtype=torch.float64) * 2
    a, c, v = (torch.randn(2, 24, 4, dtype=torch.float64) for _ in range(3))
    e = torch.randn(2, 24, dtype=torch.float64)
    cpu_inputs = [t.clone().requires_grad_() for t in (z, a, c, v, e)]
    cuda_inputs = [t.float().cuda().requires_grad_() for t in (z, a, c, v, e)]
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = torch.vmap(lambda *t: component_functions(*t, activation))(*cuda_inputs)
    assert out.dtype == torch.float32 and out.is_cuda
    reference = torch.stack([component_functions_reference(*(t[i] for t in cpu_inputs), activation) for i in range(2)])
    torch.testing.assert_close(out.double().cpu(), reference.detach(), rtol=1e-4, atol=1e-4)
    gy = torch.randn_like(reference)
    grads = torch.autograd.grad(out, cuda_inputs, gy.float().cuda())
    ref_grads = torch.autograd.grad(reference, cpu_inputs, gy)
    for g, g_ref in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g.double().cpu(), g_ref, rtol=1e-3, atol=1e-3 * float(g_ref.abs().max()))


def test_lrnn_state_dict_is_the_same_with_or_without_compile():
    """A checkpoint of a plain model loads into a compiled one (one key per parameter, no aliases)."""
    plain = build_model("lrnn", "preview", **SMALL["lrnn"])
    keys = list(plain.state_dict())
    assert len(keys) == len(set(keys)) == len(list(plain.parameters()))
    compiled = build_model("lrnn", "preview", **SMALL["lrnn"], compile=True)
    assert list(compiled.state_dict()) == keys
    compiled.load_state_dict(plain.state_dict())


def test_lrnn_ignores_autocast():
    """Under bf16 autocast the whole LRNN (projections included) still computes in float32: a bf16
    projection rounds z before sin(w0 z); measured, it moved a paper-size model's image by 1.7 %."""
    torch.manual_seed(0)
    model = build_model("lrnn", "preview")
    x = _coords(300)
    with torch.no_grad():
        plain = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            under_autocast = model(x)
    assert under_autocast.dtype == torch.float32
    torch.testing.assert_close(under_autocast, plain, rtol=0, atol=1e-5 * float(plain.abs().max()))


def _check_triton_kernels(activation: str, device: str) -> None:
    """The Triton kernels against the float64 reference (see :func:`_check_compiled_kernels`)."""
    import sparsect.reconstruct.models.components_triton as kernels

    _check_compiled_kernels(kernels, activation, device)


def _check_compiled_kernels(kernels, activation: str, device: str, n: int = 150, frequency: float = 3.0) -> None:
    """Forward and backward of a compiled kernels' module (blocks that straddle both edges, every gradient)
    against autograd of the plain formulation in float64; ``frequency`` scales the hidden weights and biases."""
    torch.manual_seed(4)
    m, width = 70, 3  # n, m: not multiples of the kernels' blocks
    z = torch.randn(n, m, dtype=torch.float64) * 2
    a, c, v = (torch.randn(m, width, dtype=torch.float64) * frequency for _ in range(3))
    e = torch.randn(m, dtype=torch.float64)
    z[0, :4] = 0.0
    c[:4] = 0.0  # u = 0 exactly: spder's derivative must stay finite there
    inputs = [t.clone().requires_grad_() for t in (z, a, c, v, e)]
    reference = component_functions_reference(*inputs, activation)
    gy = torch.randn_like(reference)
    ref_grads = torch.autograd.grad(reference, inputs, gy)

    def f32(t):
        return t.detach().float().to(device)

    out = kernels.forward(f32(z), f32(a.t()), f32(c.t()), f32(v.t()), f32(e), activation)
    assert out is not None, "the Triton forward kernel did not run"
    torch.testing.assert_close(out.double().cpu(), reference.detach(), rtol=1e-5, atol=1e-4)
    grads = kernels.backward(f32(z), f32(a.t()), f32(c.t()), f32(v.t()), f32(gy), activation, True)
    assert grads is not None, "the Triton backward kernel did not run"
    for got, want in zip((grads[0], grads[1].t(), grads[2].t(), grads[3].t()), ref_grads[:4], strict=True):
        assert torch.isfinite(got).all()
        known = torch.isfinite(want)  # autograd of sqrt|u| is NaN at u = 0; the kernels take the limit there
        assert known.float().mean() > 0.9
        torch.testing.assert_close(got.double().cpu()[known], want[known], rtol=1e-4,
                                   atol=1e-4 * float(want[known].abs().max()))
    assert kernels.backward(f32(z), f32(a.t()), f32(c.t()), f32(v.t()), f32(gy), activation, False)[0] is None


@pytest.mark.parametrize("activation", ["siren", "spder"])
@pytest.mark.parametrize("n", [150, 1000])
def test_numba_kernels_match_float64_reference(activation, n):
    """The CPU kernels; 1000 rows make several row blocks in the backward pass."""
    _check_compiled_kernels(components_numba, activation, "cpu", n=n)


@pytest.mark.parametrize("activation", ["siren", "spder"])
def test_numba_kernels_at_large_arguments_are_as_accurate_as_torch(activation, monkeypatch):
    """Pre-activations of up to ~1000 rad (w0 = 30 on wide inputs), where the sine's range reduction matters:
    against float64 math on the same float32 inputs, the kernels' error stays within 1.5x that of torch's own
    float32 sin (the portable loop), which is set by rounding u = a z + c to float32."""
    torch.manual_seed(5)
    z = torch.randn(400, 40) * 3
    a, c, v = torch.randn(40, 4) * 30, torch.randn(40, 4) * 30, torch.randn(40, 4)
    e = torch.randn(40)
    grad = torch.randn(400, 40)
    exact = [t.double().requires_grad_() for t in (z, a, c, v, e)]
    reference = component_functions_reference(*exact, activation)
    ref_grads = torch.autograd.grad(reference, exact, grad.double())

    def errors() -> list[float]:
        inputs = [t.clone().requires_grad_() for t in (z, a, c, v, e)]
        out = component_functions(*inputs, activation)
        grads = torch.autograd.grad(out, inputs, grad)
        return [float((got.detach().double() - want).abs().max()) for got, want in
                zip((out, *grads), (reference, *ref_grads), strict=True)]

    compiled = errors()
    monkeypatch.setattr(components_numba, "enabled", False)
    portable = errors()
    for got, budget in zip(compiled, portable, strict=True):
        assert got <= 1.5 * budget + 1e-6, (compiled, portable)


def test_component_kernel_dispatch_on_cpu(monkeypatch):
    """float32 siren/spder inputs take the numba kernels, everything else (and a switched-off flag) the portable
    loop, and both give the same values."""
    z = torch.randn(40, 6)
    assert components._compiled_for(z, "siren") is components_numba
    assert components._compiled_for(z, "spder") is components_numba
    assert components._compiled_for(z, "spder_atan") is None
    assert components._compiled_for(z.double(), "siren") is None
    a, c, v = (torch.randn(6, 4) for _ in range(3))
    e = torch.randn(6)
    compiled = component_functions(z, a, c, v, e, "siren")
    monkeypatch.setattr(components_numba, "enabled", False)
    assert components._compiled_for(z, "siren") is None
    torch.testing.assert_close(component_functions(z, a, c, v, e, "siren"), compiled, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("d", [1, 2, 4, 7])
def test_factor_product_matches_autograd_of_prod(d):
    """The layer's product and its left/right-running-product backward against torch.prod's autograd in float64,
    with zero factors (one, and two in one product), alone and under vmap."""
    torch.manual_seed(d)
    factors = torch.randn(3, 50, 6, d, dtype=torch.float64)
    factors[0, 0, 0, 0] = 0.0
    factors[1, 1, 1, : min(2, d)] = 0.0
    factors.requires_grad_(True)
    grad = torch.randn(3, 50, 6, dtype=torch.float64)
    for product in (_FactorProduct.apply, torch.vmap(_FactorProduct.apply)):
        out = product(factors)
        torch.testing.assert_close(out, factors.prod(dim=-1), rtol=1e-12, atol=0)
        got = torch.autograd.grad(out, factors, grad)[0]
        want = torch.autograd.grad(factors.prod(dim=-1), factors, grad)[0]
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(_FactorProduct.apply, (factors[0, :3, :2].detach().clone().requires_grad_(),))


@pytest.mark.parametrize("activation", ["siren", "spder"])
def test_triton_kernels_match_float64_reference(activation):
    """On CUDA in this process; without a GPU under Triton's CPU interpreter, which must be switched on
    before triton is first imported, hence a fresh interpreter."""
    pytest.importorskip("triton")
    if torch.cuda.is_available():
        _check_triton_kernels(activation, "cuda")
        return
    code = ("import runpy; "
            f"runpy.run_path({__file__!r})['_check_triton_kernels']({activation!r}, 'cpu')")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
