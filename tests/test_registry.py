"""One registry (sparsect.reconstruct.run), one FitConfig with variants as functions, settings parsed at the edge."""

import ast
import dataclasses
import inspect
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from sparsect import data, operators
from sparsect.app import settings
from sparsect.reconstruct import classical, fit, neural, registry
from sparsect.reconstruct.models import get_preset, lrnn_parameter_count


@pytest.fixture(scope="module")
def scan():
    return data.simulate(data.load_sample("shepp_logan", 32), 12, seed=0)


@pytest.mark.parametrize("method,iterations", [("fbp", None), ("sirt", 7), ("cgls", 5), ("os_sart", 2), ("tv", 9)])
def test_run_is_the_method_itself(scan, method, iterations):
    via_registry = registry.run(method, scan.sinogram, scan.geometry, pixel_size_mm=scan.pixel_size_mm,
                                iterations=iterations, device="cpu")
    kwargs = {} if iterations is None else {"iterations": iterations}
    direct = getattr(classical, method)(scan.sinogram, scan.geometry, pixel_size_mm=scan.pixel_size_mm, **kwargs)
    np.testing.assert_array_equal(via_registry.image_hu, direct.image_hu)
    assert via_registry.iterations == direct.iterations


def test_default_budgets_and_their_meaning():
    assert [registry.iterations_for(m, None) for m in ("fbp", "sirt", "cgls", "os_sart", "tv")] == \
        [None, 100, 20, 10, 300]
    assert registry.iterations_for("lrnn", None, "preview") == 300
    assert registry.iterations_for("lrnn", None, "paper") == 5000
    assert registry.iterations_for("fbp", 50) is None and registry.iterations_for("sirt", 50) == 50
    assert set(registry.METHODS) == set(registry.CLASSICAL_METHODS) | set(registry.NETWORK_METHODS)
    assert registry.label("os_sart") == "OS-SART"


@pytest.mark.parametrize("kwargs,message", [
    ({"iterations": 0}, "iterations must be a whole number >= 1"),
    ({"iterations": 2.5}, "iterations must be a whole number >= 1"),
    ({"iterations": True}, "iterations must be a whole number >= 1"),
    ({"preset": "bogus"}, "unknown preset 'bogus'"),
    ({"variant": ["paper", "tv"]}, "cannot be combined"),
    ({"variant": "ramp"}, "unknown variant 'ramp'"),
])
def test_check_rejects_before_any_work(kwargs, message):
    with pytest.raises(ValueError, match=message):
        registry.check("fbp", **kwargs)  # checked for every method, also where a network setting is unused


def test_network_run_reports_its_warm_start_separately(scan):
    seen = []
    result = registry.run("lrnn", scan.sinogram, scan.geometry, pixel_size_mm=scan.pixel_size_mm, iterations=3,
                          variant=("fbp_init",), device="cpu", callback=seen.append)
    assert result.iterations == 3 and result.warm_start_iterations == neural.FBP_INIT_STEPS
    phases = [p.phase for p in seen]
    assert phases[0] == "warm_start" and phases[-1] == "fit" and phases.index("fit") > 0
    warm = [p for p in seen if p.phase == "warm_start"]
    assert warm[-1].iteration == warm[-1].iterations == neural.FBP_INIT_STEPS
    assert result.settings["warm_start"] == "fbp" and result.settings["variant"] == ["fbp_init"]


def test_run_passes_fit_fields_to_the_networks_only(scan):
    network = registry.run("lrnn", scan.sinogram, scan.geometry, pixel_size_mm=scan.pixel_size_mm, iterations=2,
                           device="cpu", fit_fields={"tv_weight": 0.25})
    assert network.settings["tv_weight"] == 0.25
    classical_run = registry.run("fbp", scan.sinogram, scan.geometry, pixel_size_mm=scan.pixel_size_mm,
                                 fit_fields={"tv_weight": 0.25})
    assert "tv_weight" not in classical_run.settings


def test_run_passes_the_ensemble_size(scan):
    result = registry.run("lrnn", scan.sinogram, scan.geometry, pixel_size_mm=scan.pixel_size_mm, iterations=2,
                          variant="ensemble", ensemble_size=2, device="cpu")
    assert result.settings["ensemble_size"] == 2 and result.settings["ensemble_seeds"] == [0, 1]
    with pytest.raises(ValueError, match="ensemble_size"):
        registry.run("lrnn", scan.sinogram, scan.geometry, iterations=2, variant="ensemble", ensemble_size=0)


def test_run_takes_a_preset_with_a_changed_network(scan):
    """A :class:`Preset` object (here the preview LRNN at rank 5) is accepted where a preset name is; the fitted
    network has the closed-form parameter count of the changed configuration."""
    spec = get_preset("lrnn", "preview")
    changed = dataclasses.replace(spec, config=dataclasses.replace(spec.config, rank=5))
    registry.check("lrnn", preset=changed)
    result = registry.run("lrnn", scan.sinogram, scan.geometry, pixel_size_mm=scan.pixel_size_mm, iterations=2,
                          preset=changed, variant="ramp_loss", device="cpu")
    assert result.n_parameters == lrnn_parameter_count(changed.config) != lrnn_parameter_count(spec.config)


def test_variants_are_fit_config_transforms():
    base = neural.fit_config("lrnn", "preview")
    assert base.lr == 0.1 and base.iterations == 300 and base.data_weighting == "uniform"
    assert neural.fit_config("lrnn", "preview", variant="paper") == base
    combined = neural.fit_config("lrnn", "preview", variant=["ramp_loss", "fbp_init", "tv", "coarse_to_fine"])
    assert combined == dataclasses.replace(
        base, data_weighting="ramp", warm_start="fbp", warm_start_steps=neural.FBP_INIT_STEPS,
        lr=base.lr * neural.FBP_INIT_LR_FACTOR, tv_weight=neural.TV_WEIGHT,
        coordinate_ramp=fit.CoordinateRamp(neural.COARSE_START, 0.5))
    assert neural.fit_config("lrnn", "preview", iterations=7).iterations == 7
    # a field replaces the preset's recipe, and the warm start's factor still applies to it
    assert neural.fit_config("lrnn", "preview", lr=0.05).lr == 0.05
    assert neural.fit_config("lrnn", "preview", variant="fbp_init", lr=0.05).lr == 0.05 * neural.FBP_INIT_LR_FACTOR


def test_coordinate_ramp_is_linear_then_flat():
    ramp = fit.CoordinateRamp(start=0.25, until=0.5)
    assert [ramp.factor(i, 100) for i in (0, 25, 50, 99)] == [0.25, 0.625, 1.0, 1.0]


def test_coarse_to_fine_scales_the_coordinates_the_network_sees():
    """The ramp multiplies the coordinates fed to the network, for any model (an identity-like probe)."""
    seen = []

    class Probe(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bias = torch.nn.Parameter(torch.zeros(1))

        def forward(self, coords):
            seen.append(float(coords.abs().max()))
            return coords[:, :1] * 0 + self.bias

    radon = operators.Radon(operators.ParallelBeam.sparse(4, (8, 8)))
    fit.fit(Probe(), radon, torch.zeros(4, radon.geometry.det_count), iterations=4, lr=1e-3, device="cpu",
            coordinate_ramp=fit.CoordinateRamp(0.25, 0.5), preview_every=None)
    assert seen[:2] == pytest.approx([0.25, 0.625]) and seen[2:4] == pytest.approx([1.0, 1.0])


def test_fit_config_validates_itself():
    with pytest.raises(ValueError, match="lr"):
        fit.FitConfig(lr=0)
    with pytest.raises(ValueError, match="warm_start"):
        fit.FitConfig(warm_start="sirt")
    with pytest.raises(ValueError, match="discrepancy"):
        fit.FitConfig(discrepancy=0)
    with pytest.raises(ValueError, match="photons"):
        fit.FitConfig(photons=-1)
    for penalty in ("tv_weight", "tgv_weight"):
        for bad in (-0.1, float("nan"), float("inf")):
            with pytest.raises(ValueError, match=f"{penalty} must be a finite number >= 0"):
                fit.FitConfig(**{penalty: bad})
    assert fit.FitConfig(early_stop=5).early_stop == fit.EarlyStop(patience=5)


# ---------------------------------------------------------------------------------------- settings at the edge

def test_settings_parse_once_with_option_names():
    assert settings.parse_methods(["FBP, tv", "tv", "lrnn"]) == ("fbp", "tv", "lrnn")
    with pytest.raises(settings.InputError, match="unknown method 'art'"):
        settings.parse_methods("fbp,art")
    with pytest.raises(settings.InputError, match="--iterations must be at least 1"):
        settings.method_settings(iterations=0)
    with pytest.raises(settings.InputError, match="unknown preset 'bogus'"):
        settings.method_settings(preset="bogus")
    with pytest.raises(settings.InputError, match="device must be auto, cpu, cuda or cuda:N"):
        settings.method_settings(device="tpu")
    with pytest.raises(settings.InputError, match="--views must be a whole number of at least 2"):
        settings.scan_settings(views=1)
    with pytest.raises(settings.InputError, match="--photons must be a positive number"):
        settings.scan_settings(photons=math.nan)
    assert settings.method_settings().device == "cpu" if not torch.cuda.is_available() else True


def test_every_method_and_variant_is_described_as_data():
    """The registry is the one place that knows a method: its label, default budget, the settings its result
    depends on, whether it reads the photon count; each fit variant its label and one help text."""
    method_settings = {f.name for f in dataclasses.fields(settings.MethodSettings)}
    for name, spec in registry.METHODS.items():
        assert spec.name == name and spec.label and spec.kind in ("direct", "iterative", "network"), name
        assert set(spec.depends_on) <= method_settings and "device" in spec.depends_on, name
        assert callable(spec.function)
        if spec.kind == "iterative":  # the budget the registry states is the function's own default
            function = getattr(classical, name)
            assert spec.default_iterations == inspect.signature(function).parameters["iterations"].default, name
            assert "iterations" in spec.depends_on
        if spec.is_network:
            assert {"preset", "seed", "variant", "iterations"} <= set(spec.depends_on) and spec.uses_photons
    assert registry.METHODS["tv"].uses_photons and not registry.METHODS["sirt"].uses_photons
    assert list(registry.VARIANTS) == list(registry.VARIANT_NAMES)
    for name, variant in registry.VARIANTS.items():
        assert variant.name == name and variant.label and len(variant.help) > 20, name
        assert registry.variant_label(name) == variant.label
    for group in (registry.DEFAULT_METHODS, registry.PAGE_METHODS, registry.REFERENCE_METHODS,
                  registry.MEASURED_PAGE_METHODS, (registry.DEFAULT_REFERENCE,)):
        assert set(group) <= set(registry.METHODS)


def _string_constants(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)]


def test_no_method_or_variant_name_is_spelled_outside_the_registry():
    """The app, the data and the operators name no method or fit variant themselves: they ask the registry
    (the modules that implement the methods, in reconstruct/, do spell their own names)."""
    names = set(registry.METHODS) | set(registry.VARIANT_NAMES)
    root = Path(__file__).resolve().parent.parent
    found = [f"{path.relative_to(root)}:{line}: {value!r}" for folder in ("app", "data", "operators")
             for path in sorted((root / folder).rglob("*.py")) for line, value in _string_constants(path)
             if value in names]
    assert found == []
