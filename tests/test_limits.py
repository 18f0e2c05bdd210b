"""Size limits from the memory estimate: the estimate against a measured peak, and the one-line refusals of
`sparsect reconstruct`, `sparsect batch` and the page (available memory faked by SPARSECT_AVAILABLE_MEMORY)."""

import io
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from rich.console import Console
from typer.testing import CliRunner

from sparsect import data
from sparsect.app import limits, scans, settings
from sparsect.app.batch import command as batch
from sparsect.app.batch import plan
from sparsect.app.cli import cli
from sparsect.app.page import compute as pc
from sparsect.reconstruct import memory
from sparsect.reconstruct.neural import ENSEMBLE_SIZE

runner = CliRunner()

# Peak resident memory (VmHWM) of one run in a fresh interpreter, reset after a first small run has loaded
# (or compiled) every kernel, minus the resident memory before it: what the run itself added.
_PEAK_SCRIPT = """
import sys
from sparsect.app import run, scans, settings
def status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key)) * 1024
views, size, method, iterations = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
ct = scans.load_input("shepp_logan")
warm = settings.method_settings(iterations=30, device="cpu")
run.run_tasks(scans.simulate(ct, settings.scan_settings(views=8, size=32)), run.tasks_for(("fbp", "sirt"), warm))
with open("/proc/self/clear_refs", "w") as clear:
    clear.write("5")
before = status("VmRSS:")
chosen = settings.method_settings(iterations=iterations, device="cpu")
run.run_tasks(scans.simulate(ct, settings.scan_settings(views=views, size=size)), run.tasks_for((method,), chosen))
print(status("VmHWM:") - before)
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's peak-RSS reset")
@pytest.mark.parametrize("views, size, method, iterations", [(720, 256, "fbp", 1), (360, 128, "sirt", 30)])
def test_estimate_is_within_a_small_factor_of_the_measured_peak(views, size, method, iterations):
    """Measured: fbp 720 views at 256² (honest, 512² grid) grew 115 MB against an estimate of 192 MB; sirt with
    its cached matrix at 360 views, 128² about the same ratio."""
    done = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, str(views), str(size), method, str(iterations)],
                          capture_output=True, text=True, check=True)
    measured = int(done.stdout.split()[-1])
    estimated = memory.estimate(256, size, views, (method,), iterations=iterations).total
    assert 0.5 * measured <= estimated <= 3 * measured, (measured, estimated)


def test_the_matrix_counts_only_when_a_method_announces_enough_products():
    few = memory.estimate(256, 128, 360, ("sirt",), iterations=5)
    many = memory.estimate(256, 128, 360, ("sirt",), iterations=30)
    assert many.projector > few.projector + 100e6  # the 360-view 128² matrix pair is ~150 MB
    assert memory.estimate(256, 128, 360, ("fbp",)).projector == few.projector


def test_network_activations_grow_with_the_preset_and_the_grid():
    preview = memory.estimate(256, 128, 60, ("lrnn",), "preview").networks
    assert memory.estimate(256, 128, 60, ("lrnn",), "paper").networks > 4 * preview
    assert memory.estimate(256, 256, 60, ("lrnn",), "preview").networks == 4 * preview
    assert memory.estimate(256, 128, 60, ("fbp",)).networks == 0


def test_largest_fitting_and_the_available_memory_override(monkeypatch):
    assert limits.largest_fitting(lambda n: n * n <= 50, 1, 100) == 7
    assert limits.largest_fitting(lambda n: False, 1, 100) is None
    monkeypatch.setenv(limits.AVAILABLE_MEMORY_ENV, "3e9")
    assert limits.available_bytes() == 3_000_000_000
    monkeypatch.setenv(limits.AVAILABLE_MEMORY_ENV, "lots")
    with pytest.raises(settings.InputError, match="SPARSECT_AVAILABLE_MEMORY must be a number of bytes"):
        limits.available_bytes()
    monkeypatch.delenv(limits.AVAILABLE_MEMORY_ENV)
    assert limits.available_bytes() > 0


def _refusal(result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("option, value, memory, shown", [("--views", "100000", "1e9", r"1\.0"),
                                                          ("--size", "1024", "1e8", r"0\.1")])
def test_reconstruct_refuses_with_a_setting_that_fits(tmp_path, monkeypatch, option, value, memory, shown):
    """(A --size beyond 4x the slice's own is refused earlier, by the upscale limit: 1024 is shepp_logan's 4x.)"""
    monkeypatch.setenv(limits.AVAILABLE_MEMORY_ENV, memory)
    args = {"--views": "60", "--size": "64", option: value}
    out = tmp_path / "out"
    result = runner.invoke(cli, ["reconstruct", "shepp_logan", "--out", str(out),
                                 *(item for pair in args.items() for item in pair)])
    line = _refusal(result)
    match = re.fullmatch(rf"error: {option} {value} .*needs about [\d.]+ GB; this machine has {shown} GB available; "
                         rf"at most {option} (\d+) fits", line)
    assert match, line
    assert not out.exists()
    # the suggestion is the largest that fits: it passes the check, one more does not
    suggested = int(match.group(1))
    scan = {"--views": "views", "--size": "size"}[option]
    for n, fits in ((suggested, True), (suggested + 1, False)):
        setup = settings.scan_settings(**({"views": 60, "size": 64} | {scan: n}))
        problem = limits.memory_problem(256, setup, ("fbp",), settings.method_settings(device="cpu"))
        assert (problem is None) == fits


def test_batch_refuses_once_before_any_unit(tmp_path, monkeypatch):
    monkeypatch.setenv(limits.AVAILABLE_MEMORY_ENV, "1e9")
    (tmp_path / "in").mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), tmp_path / "in" / "ct.dcm")
    err = io.StringIO()
    code = batch.run_batch(tmp_path / "in", tmp_path / "out", views=["100000"], console=Console(file=err, width=300),
                           stdout=Console(file=io.StringIO()), quiet=True)
    assert code == batch.EXIT_CANNOT_START
    lines = [line for line in err.getvalue().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and re.search(r"--views 100000 on the slice's 128x128 grid needs about .* at most "
                                         r"--views \d+ fits", lines[0]), err.getvalue()
    assert not (tmp_path / "out").exists()


def test_page_check_raises_the_page_error(monkeypatch):
    monkeypatch.setenv(limits.AVAILABLE_MEMORY_ENV, "1e8")
    ct = scans.prepare_slice(data.load_sample("shepp_logan"), 512)
    chosen = {m: pc.method_settings(m, None, None, "paper", "cpu") for m in ("fbp", "siren")}
    with pytest.raises(settings.InputError, match="at most working grid \\d+ fits"):
        pc.check_memory(ct, settings.scan_settings(views=60, size=512), chosen)
    monkeypatch.setenv(limits.AVAILABLE_MEMORY_ENV, "1e12")
    pc.check_memory(ct, settings.scan_settings(views=60, size=512), chosen)


def test_a_huge_size_on_a_non_square_slice_is_refused_before_resampling(tmp_path, monkeypatch):
    """Resampling the 128x96 slice to 512² (its 4x, the upscale limit) with 1 MB available: refused first, in one
    line."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PixelData = ds.pixel_array[:, :96].copy().tobytes()
    ds.Columns = 96
    ds.save_as(tmp_path / "wide.dcm")
    monkeypatch.setenv(limits.AVAILABLE_MEMORY_ENV, "1e6")
    called = []
    monkeypatch.setattr(data, "resample", lambda *args: called.append(args))
    out = tmp_path / "out"
    result = runner.invoke(cli, ["reconstruct", str(tmp_path / "wide.dcm"), "--size", "512", "--out", str(out)])
    line = _refusal(result)
    match = re.fullmatch(r"error: --size 512 needs about [\d.]+ GB to resample the 128x96 slice; this machine "
                         r"has 0\.001 GB available; at most --size (\d+) fits", line)
    assert match, line
    assert called == [] and not out.exists()
    # a float64 result and its float32 copy of the suggested side fit in 1 MB; a float64 side² alone of
    # 10^6 / 8 pixels would not
    suggested = int(match.group(1))
    assert 12 * suggested**2 < 1e6 < 8 * (np.sqrt(1e6 / 8) + 1) ** 2
    assert 200 < suggested < int(np.sqrt(1e6 / 8))
    limits.check_resample((128, 96), suggested)
    with pytest.raises(settings.InputError):
        limits.check_resample((128, 96), suggested + 1)


def test_batch_estimate_counts_the_stacked_slices(monkeypatch):
    series = [SimpleNamespace(shape=(8, 256, 256))]
    units = [SimpleNamespace(series_index=0, slices=tuple(range(8)))]
    chosen = plan.BatchSettings(views=(60,), methods=("lrnn",), variant=("fbp_init", "ramp_loss"))  # one network
    one, two = (memory.estimate(256, 256, 60, ("lrnn",), slices=n).total for n in (1, 2))
    monkeypatch.setenv(limits.AVAILABLE_MEMORY_ENV, str((one + two) // 2))
    assert limits.batch_problem(series, units, chosen, "cpu") is None  # the old call: one slice per call
    assert limits.batch_problem(series, units, chosen, "cpu", batch_size=0) is None  # automatic size
    problem = limits.batch_problem(series, units, chosen, "cpu", batch_size=4)
    assert re.fullmatch(r"--batch-size 4 needs about [\d.]+ GB; this machine has [\d.]+ GB available; at most "
                        r"--batch-size 1 fits", problem or ""), problem
    # a unit of 8 slices never stacks more than 8: the estimate (and the line) is that of 8
    eight = memory.estimate(256, 256, 60, ("lrnn",), slices=8).total
    monkeypatch.setenv(limits.AVAILABLE_MEMORY_ENV, str(eight))
    assert limits.batch_problem(series, units, chosen, "cpu", batch_size=16) is None
    monkeypatch.setenv(limits.AVAILABLE_MEMORY_ENV, str(eight - 1))
    assert limits.batch_problem(series, units, chosen, "cpu", batch_size=16).startswith("--batch-size 8 needs")


def test_the_ensemble_variant_counts_its_networks(monkeypatch):
    scan = settings.scan_settings(views=60, size=256)
    plain = settings.method_settings(variant="ramp_loss")
    ensemble = settings.method_settings(variant="ensemble,ramp_loss")
    one = memory.estimate(256, 256, 60, ("lrnn",))
    members = memory.estimate(256, 256, 60, ("lrnn",), ensemble=ENSEMBLE_SIZE)
    assert members.networks == ENSEMBLE_SIZE * one.networks
    assert members.total - one.total == (ENSEMBLE_SIZE - 1) * one.networks
    monkeypatch.setenv(limits.AVAILABLE_MEMORY_ENV, str((one.total + members.total) // 2))
    assert limits.memory_problem(256, scan, ("lrnn",), plain) is None
    assert "needs about" in limits.memory_problem(256, scan, ("lrnn",), ensemble)
