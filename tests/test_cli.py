"""`sparsect reconstruct` end to end: outputs readable by independent tools, clear errors."""

import json
import math
import signal
import subprocess
import sys
import threading
from types import SimpleNamespace

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from typer.testing import CliRunner

from sparsect import data
from sparsect.app import pipeline, settings, stopping
from sparsect.app.cli import cli
from sparsect.reconstruct import metrics
from sparsect.reconstruct.neural import RECOMMENDED_VARIANTS

runner = CliRunner()
JSON_KEYS = {"method", "views", "psnr", "ssim", "rmse_hu", "seconds", "iterations", "warm_start_iterations",
             "parameters", "device", "stop_reason", "variant"}


def _invoke(*args):
    return runner.invoke(cli, ["reconstruct", *args])


def test_reconstruct_sample_writes_readable_outputs(tmp_path):
    out = tmp_path / "out"
    result = _invoke("shepp_logan", "--size", "64", "--views", "16", "--method", "fbp", "--method", "cgls",
                     "--iterations", "10", "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [r["method"] for r in records] == ["fbp", "cgls"]
    assert all(set(r) == JSON_KEYS for r in records)
    assert records[1]["iterations"] == 10 and records[0]["views"] == 16
    assert {r["stop_reason"] for r in records} == {"completed"}
    assert {r["variant"] for r in records} == {None}  # classical methods have no fit variant

    arrays = np.load(out / "results.npz")
    reference = arrays["reference_hu"]
    assert reference.shape == (64, 64) and arrays["sinogram"].shape[0] == 16
    for record in records:
        image = arrays[f"{record['method']}_hu"]
        # The printed numbers are the scikit-image-checked metrics of the saved image.
        assert record["psnr"] == pytest.approx(metrics.psnr(image, reference, mask="circle"), abs=1e-3)
        with Image.open(out / f"{record['method']}.png") as png:
            assert png.size == (64, 64)
        (dicom_file,) = (out / "dicom" / record["method"]).glob("*.dcm")
        ds = pydicom.dcmread(dicom_file)
        assert ds.Modality == "CT" and "DERIVED" in ds.ImageType
        hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        assert np.abs(hu - image).max() < 0.5
    assert json.loads((out / "metrics.json").read_text()) == records


def test_methods_share_one_sinogram_and_comma_lists_work(tmp_path):
    result = _invoke("ct_small", "--views", "20", "--method", "fbp,sirt", "--iterations", "5", "--json")
    assert result.exit_code == 0, result.output
    methods = [json.loads(line)["method"] for line in result.stdout.splitlines() if line.startswith("{")]
    assert methods == ["fbp", "sirt"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["/nonexistent/slice.dcm"], "no such file or folder"),
        ([get_testdata_file("MR_small.dcm", download=False)], "MR"),
        (["shepp_logan", "--views", "1"], "--views must be a whole number of at least 2"),
        (["shepp_logan", "-m", "sirt", "--iterations", "0"], "--iterations must be at least 1"),
        (["shepp_logan", "-m", "fbp,lrnn", "--preset", "bogus"], "unknown preset 'bogus'"),
        (["shepp_logan", "-m", "fbp", "--preset", "bogus"], "unknown preset 'bogus'"),
        (["shepp_logan", "--window", "bogus"], "unknown --window 'bogus'"),
        (["shepp_logan", "--size", "8"], "--size must be at least 16 pixels"),
        ([get_testdata_file("CT_small.dcm", download=False), "--slice", "99"], "--slice 99 is out of range"),
        (["shepp_logan", "--device", "tpu"], "device must be auto, cpu, cuda or cuda:N"),
        (["shepp_logan", "--method", "magic"], "unknown method 'magic'"),
        (["no_such_sample"], "sample name (ct_small"),
        (["shepp_logan", "-m", "lrnn", "--variant", "magic"],
         "unknown variant 'magic'; choose from paper, tv, fbp_init, coarse_to_fine, ramp_loss"),
        (["shepp_logan", "-m", "lrnn", "--variant", "paper,tv"], "variant 'paper' is the published formulation"),
        (["shepp_logan", "--variant", ""], "no variant given"),
    ],
)
def test_bad_input_gives_clear_error(args, message, monkeypatch):
    started = []
    monkeypatch.setattr(pipeline, "run_method", lambda name, *a, **k: started.append(name))
    result = _invoke(*args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert started == []  # found before any reconstruction ran


@pytest.mark.parametrize("layout", ["file", "dicom_is_a_file", "png_is_a_folder"])
def test_bad_out_is_refused_before_any_work_and_leaves_nothing(tmp_path, layout, monkeypatch):
    out = tmp_path / "out"
    if layout == "file":
        out.write_text("keep me")
    elif layout == "dicom_is_a_file":
        out.mkdir()
        (out / "dicom").write_text("keep me")
    else:
        (out / "fbp.png").mkdir(parents=True)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    started = []
    monkeypatch.setattr(pipeline, "run_method", lambda name, *a, **k: started.append(name))
    result = _invoke("shepp_logan", "--size", "32", "--views", "8", "-m", "fbp", "--out", str(out))
    assert result.exit_code == 2 and "--out" in result.output and "Traceback" not in result.output
    assert started == [] and sorted(str(p) for p in tmp_path.rglob("*")) == before


def test_a_failure_after_the_run_leaves_out_untouched(tmp_path, monkeypatch):
    """Outputs are staged beside --out and moved into place only when all were written."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.json").write_text("old")

    def broken(*args, **kwargs):
        raise ValueError("disk full")

    monkeypatch.setattr(data, "write_series", broken)
    result = _invoke("shepp_logan", "--size", "32", "--views", "8", "-m", "fbp", "--out", str(out))
    assert result.exit_code == 2 and "disk full" in result.output
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and (out / "metrics.json").read_text() == "old"
    assert [p.name for p in out.iterdir()] == ["metrics.json"]


def test_records_are_strict_json_with_a_reason_for_null():
    outcome = pipeline.MethodOutcome("fbp", SimpleNamespace(
        parameters={}, seconds=0.1, iterations=0, warm_start_iterations=0, n_parameters=0, device="cpu",
        stop_reason="completed"), {"psnr": math.inf, "ssim": 1.0, "rmse_hu": 0.0})
    record = outcome.record(30)
    assert record["psnr"] is None and "equals the reference" in record["note"]
    json.dumps(record, allow_nan=False)


@pytest.mark.parametrize("args, variant", [
    ([], list(RECOMMENDED_VARIANTS)),
    (["--variant", "paper"], ["paper"]),
    (["--variant", "tv,ramp_loss", "--variant", "ramp_loss"], ["ramp_loss", "tv"]),
])
def test_network_fit_variant_defaults_to_the_recommended_one(monkeypatch, args, variant):
    fitted = []
    run_method = pipeline.run_method

    def recording(name, *a, **kw):
        result = run_method(name, *a, **kw)
        fitted.append((name, a[1].variant, result.parameters.get("variant")))
        return result

    monkeypatch.setattr(pipeline, "run_method", recording)
    result = _invoke("shepp_logan", "--size", "32", "--views", "12", "-m", "fbp,lrnn", "--iterations", "2",
                     "--device", "cpu", "--json", *args)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert all(set(r) == JSON_KEYS for r in records)
    assert [(r["method"], r["variant"]) for r in records] == [("fbp", None), ("lrnn", variant)]
    # what reconstruct_neural was asked for and what it records having fitted
    assert fitted[1] == ("lrnn", tuple(variant), variant)


def test_parse_variants_canonical_form():
    assert settings.parse_variants(None) == settings.recommended_variants() == tuple(sorted(RECOMMENDED_VARIANTS))
    assert settings.MethodSettings().variant == settings.recommended_variants()
    assert settings.parse_variants("paper") == settings.parse_variants([]) == ("paper",)
    assert settings.parse_variants(["TV, ramp_loss", "fbp_init", "tv"]) == ("fbp_init", "ramp_loss", "tv")
    assert settings.parse_variants(("coarse_to_fine",)) == ("coarse_to_fine",)
    with pytest.raises(settings.InputError, match="unknown variant 'ramp'; choose from paper, tv"):
        settings.parse_variants("ramp")
    with pytest.raises(settings.InputError, match="cannot be combined with tv"):
        settings.parse_variants(["paper", "tv"])


def test_console_script_exit_code_and_message():
    completed = subprocess.run([sys.executable, "-m", "sparsect.app.cli", "reconstruct", "shepp_logan", "--views", "0"],
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 2
    assert "error:" in completed.stderr and "Traceback" not in completed.stderr


# ----------------------------------------------------------------------------------------------------
# Ctrl-C: the first stops gracefully, the second aborts
# ----------------------------------------------------------------------------------------------------

def _press_ctrl_c(monkeypatch, method: str, at: int, presses: int = 1) -> list[str]:
    """Make ``method`` "press Ctrl-C" ``presses`` times right after its progress report ``at``, by calling
    the SIGINT handler installed at that moment (the command's own), as the signal would; returns the list
    of methods started."""
    started: list[str] = []
    run_method = pipeline.run_method

    def patched(name, *args, callback=None, **kwargs):
        started.append(name)

        def progress(state):
            if callback is not None:
                callback(state)
            if name == method and state.iteration == at:
                for _ in range(presses):
                    signal.getsignal(signal.SIGINT)(signal.SIGINT, None)

        return run_method(name, *args, callback=progress, **kwargs)

    monkeypatch.setattr(pipeline, "run_method", patched)
    return started


def test_ctrl_c_stops_the_running_method_reports_and_writes_what_was_obtained(tmp_path, monkeypatch):
    before = signal.getsignal(signal.SIGINT)
    started = _press_ctrl_c(monkeypatch, "sirt", at=3)
    out = tmp_path / "out"
    result = _invoke("shepp_logan", "--size", "32", "--views", "12", "-m", "fbp,sirt,cgls", "--iterations", "50",
                     "--out", str(out), "--json")
    assert result.exit_code == 130, result.output
    assert started == ["fbp", "sirt"]  # cgls never started
    assert signal.getsignal(signal.SIGINT) is before  # the command's handler is gone again
    assert "stopping after the current iteration; press Ctrl-C again to abort" in result.stderr
    assert "interrupted: sirt stopped after 3 iterations; not run: cgls" in result.stderr
    assert "Traceback" not in result.output
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [r["method"] for r in records] == ["fbp", "sirt"] and all(set(r) == JSON_KEYS for r in records)
    assert records[0]["stop_reason"] == "completed"
    assert records[1]["stop_reason"] == "stopped" and records[1]["iterations"] == 3  # of 50

    # --out holds complete outputs of the methods that ran, and nothing of the others
    assert json.loads((out / "metrics.json").read_text()) == records
    arrays = np.load(out / "results.npz")
    assert {"reference_hu", "fbp_hu", "sirt_hu"} <= set(arrays.files) and "cgls_hu" not in arrays.files
    for name in ("fbp", "sirt"):
        with Image.open(out / f"{name}.png") as png:
            assert png.size == (32, 32)
        assert len(list((out / "dicom" / name).glob("*.dcm"))) == 1
    assert not (out / "cgls.png").exists() and not (out / "dicom" / "cgls").exists()
    assert not [p for p in out.rglob("*") if p.name.endswith(".part")]
    # the stopped result is SIRT's iterate after 3 iterations
    monkeypatch.undo()
    simulation = pipeline.simulate(pipeline.load_input("shepp_logan", size=32), settings.ScanSettings(views=12))
    three = pipeline.run_method("sirt", simulation, settings.MethodSettings(iterations=3, device="cpu"))
    np.testing.assert_allclose(arrays["sirt_hu"], three.image_hu, atol=1e-3)


def test_ctrl_c_marks_the_stopped_method_in_the_table(monkeypatch):
    started = _press_ctrl_c(monkeypatch, "cgls", at=2)
    result = _invoke("shepp_logan", "--size", "32", "--views", "12", "-m", "cgls,sirt", "--iterations", "50")
    assert result.exit_code == 130, result.output
    assert started == ["cgls"]
    row = next(line for line in result.stdout.splitlines() if "cgls" in line)
    assert "2*" in [cell.strip() for cell in row.split("│")]  # iterations done, marked
    assert "* stopped by Ctrl-C" in result.stdout and "not run: sirt" in result.stderr


def test_second_ctrl_c_aborts_at_once_without_traceback(tmp_path, monkeypatch):
    before = signal.getsignal(signal.SIGINT)
    started = _press_ctrl_c(monkeypatch, "sirt", at=2, presses=2)
    out = tmp_path / "out"
    result = _invoke("shepp_logan", "--size", "32", "--views", "12", "-m", "sirt,cgls", "--iterations", "50",
                     "--out", str(out))
    assert result.exit_code == 130, result.output
    assert started == ["sirt"]
    assert [line for line in result.stderr.splitlines() if "error:" in line] == ["error: aborted by Ctrl-C"]
    assert "Traceback" not in result.output and not out.exists()
    assert signal.getsignal(signal.SIGINT) is before


def test_run_methods_stop_keeps_the_partial_result_and_skips_the_rest():
    ct = pipeline.load_input("shepp_logan", size=32)
    scan, method_settings = settings.ScanSettings(views=12), settings.MethodSettings(iterations=30, device="cpu")
    stop = threading.Event()
    seen = []

    def on_progress(name, state):
        seen.append(name)
        if name == "sirt" and state.iteration == 4:
            stop.set()

    _, outcomes = pipeline.run_methods(ct, ("fbp", "sirt", "cgls"), scan, method_settings, on_progress=on_progress,
                                       stop=stop)
    assert [o.method for o in outcomes] == ["fbp", "sirt"] and "cgls" not in seen
    record = outcomes[1].record(12)
    assert record["iterations"] == 4 and record["stop_reason"] == "stopped"
    assert 0 < record["psnr"] < 100 and 0 < record["ssim"] <= 1
    assert outcomes[0].record(12)["stop_reason"] == "completed"
    # a stop that fired before the run: no method starts; one that never fires changes nothing
    assert pipeline.run_methods(ct, ("fbp", "sirt"), scan, method_settings, stop=lambda: True)[1] == []
    _, unstopped = pipeline.run_methods(ct, ("sirt",), scan, method_settings, stop=threading.Event())
    assert unstopped[0].reconstruction.iterations == 30 and unstopped[0].reconstruction.stop_reason == "completed"


def test_graceful_stop_handler():
    calls = []
    before = signal.getsignal(signal.SIGTERM)
    with stopping.GracefulStop(calls.append, signals=(signal.SIGINT, signal.SIGTERM)) as graceful:
        assert signal.getsignal(signal.SIGTERM) == graceful.handle
        assert graceful.exit_code is None and not graceful.event.is_set()
        graceful.handle(signal.SIGTERM)
        graceful.handle(signal.SIGTERM)  # a repeated SIGTERM only repeats the request
        assert graceful.event.is_set() and calls == [signal.SIGTERM] * 2 and graceful.exit_code == 143
        with pytest.raises(KeyboardInterrupt):
            graceful.handle(signal.SIGINT)  # Ctrl-C once stopping: abort
    assert signal.getsignal(signal.SIGTERM) is before
