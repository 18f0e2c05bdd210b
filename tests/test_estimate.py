"""Time estimates before a run: the calibration's arithmetic under a fake clock, its cache, the cost model of every
method, and what the command line, batch jobs and the page show. No test here measures or asserts a real time."""

from __future__ import annotations

import io
import itertools
import json

import pytest
from rich.console import Console
from typer.testing import CliRunner

from sparsect.app import estimates
from sparsect.app.batch import eta
from sparsect.app.cli import cli
from sparsect.app.page import compute as pc
from sparsect.reconstruct import calibration, estimate, registry
from sparsect.reconstruct.calibration import Calibration, Rate
from sparsect.reconstruct.variants import FBP_INIT_STEPS

#: TV's default budget and its operator norm's power iterations (reconstruct/tv_solver.py, solver_common.py).
TV_ITERATIONS, NORM_ITERATIONS = 300, 50


def _fake_clock(step: float):
    """A clock that moves ``step`` seconds each time it is read."""
    ticks = itertools.count()
    return lambda: next(ticks) * step


# ------------------------------------------------------------------------------------------ arithmetic


def test_format_duration():
    cases = {0.2: "<1 s", 0.99: "<1 s", 1.2: "~1 s", 20.4: "~20 s", 59.4: "~59 s", 59.7: "~1 min", 100: "~1 min 40 s",
             104: "~1 min 40 s", 360: "~6 min", 594: "~9 min 50 s", 840: "~14 min", 3600: "~1 h", 4800: "~1 h 20 min"}
    assert {s: estimate.format_duration(s) for s in cases} == cases


def test_a_calibration_measured_with_a_fake_clock_prices_a_fit_as_computed_by_hand():
    """Every operation read 0.5 s on the fake clock, on a 32² grid from 8 views: the rates are 0.5 s per 32² x 8
    pixel-views (0.5 s per 32² pixels for a network step), so on a 64² grid each costs 2 s and on 32² 0.5 s."""
    clock = _fake_clock(0.5)
    base = calibration.measure("cpu", sizes=(32,), views=8, clock=clock)
    networks = calibration.measure_networks([("lrnn", "preview")], "cpu", sizes=(32,), clock=clock)
    assert base.fbp == base.pair == base.matrix == Rate(0.5 / (32 * 32 * 8))
    assert base.tv_image == Rate(0.0)  # a TV iteration (0.5 s) less its pair (0.5 s)
    assert networks == {"lrnn/preview": Rate(0.5 / (32 * 32))}
    rates = Calibration(base.fbp, base.pair, base.matrix, base.tv_image, networks)

    cgls = estimate.estimate_seconds("cgls", 64, 8, iterations=20, calibration=rates)
    assert cgls == pytest.approx(2.0 * (1 + 20))  # the matrix, then a pair per iteration

    lrnn = estimate.estimate_seconds("lrnn", 64, 8, iterations=20, variant=["band_blend", "ensemble", "fbp_init"],
                                     ensemble_size=3, fit_fields={"coarse_grid": 32, "fine_iterations": 5},
                                     calibration=rates)
    by_hand = (3 * 2.0  # the output scales: an FBP of each member's sinogram on 64²
               + 3 * 0.5  # the warm-start FBP on the coarse grid, 32²
               + FBP_INIT_STEPS * 3 * 0.5  # the warm-start steps on 32²
               + 0.5 + 15 * 3 * (0.5 + 0.5)  # 32²'s matrix; 15 steps and pairs of 3 networks
               + 2.0 + 5 * 3 * (2.0 + 2.0)  # 64²'s matrix; the last 5 on 64²
               + 2.0 + (NORM_ITERATIONS + TV_ITERATIONS) * 2.0)  # the blend's TV on 64² (its matrix is built)
    assert lrnn == pytest.approx(by_hand)


def test_each_cost_model_with_an_injected_calibration():
    rates = Calibration(fbp=Rate(1e-8, 0.01), pair=Rate(2e-9), matrix=Rate(3e-8), tv_image=Rate(1e-7),
                        networks={"wire/preview": Rate(4e-6)})
    pixels, pixel_views = 100 * 100, 100 * 100 * 30
    fbp = 0.01 + 1e-8 * pixel_views
    assert estimate.estimate_seconds("fbp", 100, 30, calibration=rates) == pytest.approx(fbp)
    assert estimate.estimate_seconds("tv", (100, 100), 30, calibration=rates) == pytest.approx(
        3e-8 * pixel_views + fbp + (NORM_ITERATIONS + TV_ITERATIONS) * 2e-9 * pixel_views
        + TV_ITERATIONS * 1e-7 * pixels)
    sirt = registry.method("sirt").default_iterations
    assert estimate.estimate_seconds("sirt", 100, 30, calibration=rates) == pytest.approx(
        3e-8 * pixel_views + sirt * 2e-9 * pixel_views)
    wire = estimate.estimate_seconds("wire", 100, 30, iterations=40, variant="paper", calibration=rates)
    assert wire == pytest.approx(fbp + 3e-8 * pixel_views + 40 * (4e-6 * pixels + 2e-9 * pixel_views))
    with pytest.raises(KeyError):  # a network the calibration has not measured
        estimate.estimate_seconds("lrnn", 100, 30, calibration=rates)


def test_every_method_in_the_registry_has_a_cost_model():
    for name in registry.METHODS:
        items = estimate.work(name, 64, 30, variant="recommended" if registry.method(name).is_network else None)
        assert items and all(item.count >= 0 and item.units > 0 for item in items), name
    assert registry.method("tv").cost_model == "total_variation"
    assert estimate.networks_in(estimate.work("siren", 64, 30)) == [("siren", "preview")]


def test_a_rate_through_two_grids_has_a_fixed_part():
    assert calibration.fit_rate([(100.0, 2.0)]) == Rate(0.02)
    assert calibration.fit_rate([(100.0, 2.0), (300.0, 3.0)]) == Rate(0.005, 1.5)
    assert calibration.fit_rate([(100.0, 2.0), (300.0, 1.0)]) == Rate(1.0 / 300.0)  # noise: proportional


# ------------------------------------------------------------------------------------------ the cache


@pytest.fixture
def measured(monkeypatch):
    """Stands in for the measurements; counts them."""
    calls = {"base": 0, "networks": []}
    base = Calibration(Rate(1e-8), Rate(2e-9), Rate(3e-8), Rate(1e-7))

    def measure(device, clock=None):
        calls["base"] += 1
        return base

    def measure_networks(networks, device, clock=None):
        calls["networks"] += list(networks)
        return {calibration.network_key(n, p): Rate(5e-6) for n, p in networks}

    monkeypatch.setattr(calibration, "measure", measure)
    monkeypatch.setattr(calibration, "measure_networks", measure_networks)
    return calls


def test_the_calibration_is_cached_reused_and_measured_again_when_damaged(tmp_path, measured):
    path = tmp_path / "cache" / "calibration.json"
    first = calibration.machine_calibration("cpu", [("lrnn", "preview")], path)
    assert measured == {"base": 1, "networks": [("lrnn", "preview")]}
    key = calibration.machine_key("cpu")
    assert key in json.loads(path.read_text())["entries"] and "threads" in key and "torch" in key
    assert calibration.machine_calibration("cpu", [("lrnn", "preview")], path) == first  # reused: nothing measured
    assert measured == {"base": 1, "networks": [("lrnn", "preview")]}
    calibration.machine_calibration("cpu", [("lrnn", "preview"), ("wire", "paper")], path)  # only the new network
    assert measured == {"base": 1, "networks": [("lrnn", "preview"), ("wire", "paper")]}

    path.write_text('{"entries": {')  # damaged: ignored, measured again and rewritten
    calibration.machine_calibration("cpu", [("lrnn", "preview")], path)
    assert measured["base"] == 2 and calibration.cached(path, key) is not None
    path.write_text(json.dumps({"entries": {key: {"fbp": "fast"}}}))  # an entry that does not read
    assert calibration.cached(path, key) is None
    calibration.machine_calibration("cpu", [], path)
    assert measured["base"] == 3 and calibration.cached(path, key) is not None


def test_where_the_calibration_is_cached(monkeypatch, tmp_path):
    monkeypatch.setenv("SPARSECT_CACHE_DIR", str(tmp_path / "mine"))
    assert calibration.cache_file() == tmp_path / "mine" / "calibration.json"
    monkeypatch.delenv("SPARSECT_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert calibration.cache_file() == tmp_path / "xdg" / "sparsect" / "calibration.json"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert calibration.cache_file() == tmp_path / "home" / ".cache" / "sparsect" / "calibration.json"


def test_an_unwritable_cache_still_gives_a_calibration(tmp_path, measured):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert calibration.machine_calibration("cpu", [], blocker / "calibration.json").fbp == Rate(1e-8)


# ------------------------------------------------------------------------------------------ what people see


def test_the_command_line_prints_each_methods_estimate_on_stderr(calibrated):
    calibrated({"fbp": 1e-7, "pair": 1e-8, "matrix": 1e-8, "tv_image": 1e-6, "network": 1e-5})
    result = CliRunner().invoke(cli, ["reconstruct", "shepp_logan", "--size", "64", "--views", "16", "--method",
                                      "fbp,cgls", "--iterations", "3", "--json"])
    assert result.exit_code == 0, result.output
    assert "estimated: fbp <1 s, cgls <1 s" in result.stderr
    assert all(line.startswith("{") for line in result.stdout.splitlines())  # --json's stdout stays JSON


def test_estimate_line():
    assert estimates.estimate_line({"fbp": 0.1, "tv": 8.2, "lrnn": 100.0}) == \
        "estimated: fbp <1 s, tv ~8 s, lrnn ~1 min 40 s"


def test_the_page_ticks_the_missions_comparison_by_default():
    assert registry.PAGE_METHODS == ("fbp", "tv", "wire", "lrnn")


def test_the_pages_first_working_size_from_an_injected_estimate():
    sizes = [64, 128, 256, 512]

    def seconds(per_pixel):
        return lambda shape: per_pixel * shape[0] * shape[1]

    assert pc.default_working_size((256, 256), sizes, seconds(1e-4)) == (None, pytest.approx(6.5536))  # own: fits
    assert pc.default_working_size((512, 512), sizes, seconds(1e-3)) == (128, pytest.approx(16.384))
    assert pc.default_working_size((512, 512), sizes, seconds(1e-1)) == (64, pytest.approx(409.6))  # none fits
    assert pc.default_working_size((64, 64), sizes, seconds(1.0)) == (None, 4096.0)  # nothing smaller offered
    assert pc.default_working_size((300, 200), sizes, seconds(1e-3)) == (128, pytest.approx(16.384))


def test_batch_time_left():
    assert eta.seconds_left(100.0, 0.0, 30.0, 0.0) == 70.0  # before the first unit: the estimate
    assert eta.seconds_left(100.0, 0.0, 130.0, 0.0) == 0.0
    # the first 20 estimated seconds took 40: the other 80 should take 160, 10 of which have passed
    assert eta.seconds_left(100.0, 20.0, 50.0, 40.0) == 150.0
    assert eta.clock_text(3725.4) == "1:02:05"


def test_batch_prints_its_estimated_total_before_starting(tmp_path, calibrated):
    from pydicom.data import get_testdata_file

    from sparsect.app.batch import command as batch

    calibrated({"fbp": 1e-7, "pair": 1e-8, "matrix": 1e-8, "tv_image": 1e-6, "network": 1e-5})
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "ct.dcm").write_bytes(open(get_testdata_file("CT_small.dcm"), "rb").read())
    err = io.StringIO()
    code = batch.run_batch(folder, tmp_path / "out", views=["16"], methods=["cgls"], iterations=2, device="cpu",
                           console=Console(file=err, width=200), stdout=Console(file=io.StringIO()))
    assert code == batch.EXIT_OK, err.getvalue()
    lines = [line for line in err.getvalue().splitlines() if "event=run.estimate" in line]
    assert len(lines) == 1 and "units=1" in lines[0] and "seconds=0 " in lines[0] and 'estimate="<1 s"' in lines[0]


def test_the_estimator_loads_no_torch_until_it_estimates():
    import subprocess
    import sys

    code = ("import sys; import sparsect.reconstruct.estimate, sparsect.reconstruct.calibration, "
            "sparsect.app.estimates; print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
